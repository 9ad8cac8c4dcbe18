package client

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net"
	"time"
)

// Dialer opens network connections. *net.Dialer satisfies it; tests pass
// their own to watch or refuse connections.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Timeouts bounds each step of a session. A zero field takes
// Options.IOTimeout when that is set, and otherwise the default named on the
// field (RFC 5321 4.5.3.2 minimums, and sendmail's Timeout.* for the steps
// RFC 5321 leaves open).
type Timeouts struct {
	Connect   time.Duration // TCP or unix connect [30s]
	Greeting  time.Duration // the 220 greeting (Timeout.initial) [5m]
	Helo      time.Duration // EHLO, HELO and LHLO (Timeout.helo) [5m]
	StartTLS  time.Duration // STARTTLS and the handshake (Timeout.starttls) [1m]
	Mail      time.Duration // MAIL (Timeout.mail) [5m]
	Rcpt      time.Duration // each RCPT (Timeout.rcpt) [5m]
	DataInit  time.Duration // DATA up to 354 (Timeout.datainit) [2m]
	DataBlock time.Duration // writing each block of the body (Timeout.datablock) [3m]
	DataFinal time.Duration // the reply to the final dot or BDAT LAST (Timeout.datafinal) [10m]
	Rset      time.Duration // RSET (Timeout.rset) [1m]
	Quit      time.Duration // QUIT (Timeout.quit) [10s]
}

// Options configures a Client. The zero value of every field means the
// documented default.
type Options struct {
	// HeloName is the name sent with EHLO, HELO and LHLO. It is also the
	// name the talk_to_myself check looks for in a server's greeting.
	// Default: os.Hostname().
	HeloName string
	// MyNames are further names of this host for the talk_to_myself check.
	MyNames []string
	// TalkToMyself is the smtpc flag talk_to_myself: when set, a server
	// that greets with one of our names is not taken for ourselves.
	TalkToMyself bool

	// IOTimeout is the smtpc io_timeout: the timeout of every step whose
	// field in Timeouts is zero. Zero leaves the per-step defaults.
	IOTimeout time.Duration
	// Timeouts overrides single steps.
	Timeouts Timeouts

	// TLS is the template for STARTTLS: client certificate (tls cert_file,
	// key_file) and trusted roots (CAcert_file, CAcert_directory) for the
	// verification result. The client sets ServerName per host and always
	// completes the handshake whatever the verification result is: the
	// result is recorded, not enforced. Nil uses the system roots and no
	// client certificate.
	TLS *tls.Config
	// DisableSTARTTLS turns STARTTLS off (it is used whenever offered
	// otherwise, as the seed requires). Tests and broken peers only.
	DisableSTARTTLS bool

	// ConnectOnlyTo is the smtpc connect_only_to: when set, every ESMTP
	// connection goes to this IP address instead of the addresses the
	// resolver found. The host names are kept for logs and EHLO checks.
	ConnectOnlyTo string
	// RemotePort is the smtpc remote_port: the ESMTP port when the route
	// names none. Default 25.
	RemotePort int
	// LMTPSocket is the smtpc LMTP_socket: the unix socket for LMTP routes
	// that name neither a socket nor a host. Default "lmtpsock".
	LMTPSocket string

	// ReadQUITReply is the smtpc flag read_QUIT_reply: wait for the reply to
	// QUIT before closing instead of closing right after sending it.
	ReadQUITReply bool

	// ChunkSize is the largest BDAT chunk sent when the server offers
	// CHUNKING. Default 256 KiB.
	ChunkSize int

	// Dialer opens connections. Default: a net.Dialer.
	Dialer Dialer
	// Now is the clock for durations in results. Default time.Now.
	Now func() time.Time
	// Logger receives debug logs. Default: discard.
	Logger *slog.Logger
}

// Default values of Options.
const (
	DefaultRemotePort = 25
	DefaultLMTPSocket = "lmtpsock"
	DefaultChunkSize  = 256 << 10
)

// withDefaults returns a copy of o with every zero field set to its default.
func (o Options) withDefaults() Options {
	if o.HeloName == "" {
		o.HeloName = hostname()
	}
	pick := func(d *time.Duration, def time.Duration) {
		if *d > 0 {
			return
		}
		if o.IOTimeout > 0 {
			*d = o.IOTimeout
			return
		}
		*d = def
	}
	t := &o.Timeouts
	pick(&t.Connect, 30*time.Second)
	pick(&t.Greeting, 5*time.Minute)
	pick(&t.Helo, 5*time.Minute)
	pick(&t.StartTLS, time.Minute)
	pick(&t.Mail, 5*time.Minute)
	pick(&t.Rcpt, 5*time.Minute)
	pick(&t.DataInit, 2*time.Minute)
	pick(&t.DataBlock, 3*time.Minute)
	pick(&t.DataFinal, 10*time.Minute)
	pick(&t.Rset, time.Minute)
	pick(&t.Quit, 10*time.Second)
	if o.RemotePort == 0 {
		o.RemotePort = DefaultRemotePort
	}
	if o.LMTPSocket == "" {
		o.LMTPSocket = DefaultLMTPSocket
	}
	if o.ChunkSize <= 0 {
		o.ChunkSize = DefaultChunkSize
	}
	if o.Dialer == nil {
		o.Dialer = &net.Dialer{}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}
