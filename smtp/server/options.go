package server

import (
	"crypto/tls"
	"log/slog"
	"time"

	"github.com/smx-mta/smx/log/maillog"
	"github.com/smx-mta/smx/smtp"
)

// Options configure a Server: one `smtps NAME` section of smx.conf. A zero
// field means the documented default; a negative limit means no limit.
// docs/smtp-server.md lists every option with the replies it causes.
type Options struct {
	// Name is the section name (smtps NAME), recorded in TxnReceived and
	// the mail log. Default "MTA".
	Name string
	// Hostname is this host's name for the greeting, the EHLO reply, the
	// Received: header and the EHLO self-impersonation check (global
	// hostname). Default os.Hostname.
	Hostname string
	// Version is the software version in the Received: header. Default
	// "smx".
	Version string

	// IDs makes ss_sess and ss_ta (required). The section's id option is
	// the process id of the generator.
	IDs IDGenerator
	// Content is the CDB (required).
	Content ContentStore
	// Log is the event log (required).
	Log EventLog
	// Policy is SMAR's policy (required).
	Policy Policy
	// MailLog receives the postmaster's lines; nil writes none.
	MailLog *maillog.Logger
	// Debug receives debug logging; nil discards it.
	Debug *slog.Logger
	// Load is the queue manager's load feedback; nil is always normal.
	Load LoadMonitor
	// Flush receives ETRN; nil means ETRN is not offered (502).
	Flush FlushHook
	// Auth checks AUTH PLAIN and LOGIN credentials; nil means AUTH is
	// not offered.
	Auth Authenticator
	// Conns is the connection control shared by all SMTP servers (the
	// qmgr smtps options max_connection_rate and max_connections, and the
	// icr:/icm: entries); nil gives this server one of its own with the
	// defaults.
	Conns *ConnLimiter
	// Now is the clock of event times, the Received: date and the mail
	// log; default time.Now. Network deadlines always use the real time.
	Now func() time.Time

	// TLS enables STARTTLS (the tls subsection, see LoadTLSConfig); nil
	// disables it.
	TLS *tls.Config
	// ImplicitTLS makes the listener speak TLS from the first byte
	// (port 465, RFC 8314). It requires TLS.
	ImplicitTLS bool

	// EightBitMIME offers 8BITMIME (flags 8bitmime), and with it
	// SMTPUTF8 unless NoSMTPUTF8 is set: RFC 6531 requires a server that
	// offers SMTPUTF8 to offer 8BITMIME too.
	EightBitMIME bool
	// NoSMTPUTF8 withholds SMTPUTF8 even with 8BITMIME (flags
	// -smtputf8).
	NoSMTPUTF8 bool
	// NoPipelining withholds PIPELINING (flags -pipelining). Commands a
	// client pipelines anyway are still answered in order.
	NoPipelining bool
	// NoChunking withholds CHUNKING (flags -chunking): BDAT then gets 502
	// 5.5.1 after its chunk has been read and dropped.
	NoChunking bool
	// SoftBounce turns 5xx policy and content rejections into 4xx
	// (flags soft_bounce). Syntax and sequence errors stay 5xx.
	SoftBounce bool
	// StrictEHLOChecks requires the EHLO/HELO argument to be a domain or
	// an address literal (flags strict_EHLO_checks).
	StrictEHLOChecks bool
	// CheckEHLO refuses an EHLO/HELO that names this host (the seed's
	// "Identity Theft" check) unless the client is on loopback or connect
	// returned quick:ok or quick:relay (flags check_EHLO).
	CheckEHLO bool
	// RequireEHLOBeforeMAIL refuses MAIL before EHLO/HELO (flags
	// require_EHLO_before_MAIL).
	RequireEHLOBeforeMAIL bool
	// AllowDataBeforeGreeting accepts clients that talk before the
	// greeting (flags allow_data_before_greeting).
	AllowDataBeforeGreeting bool
	// AllowPipeliningAbuse turns off transaction stuffing protection
	// (sendmail's srv_features 'F'): by default a client that sends more
	// input right behind EHLO, HELO or DATA without waiting for the reply
	// gets 554 5.5.0 and is disconnected.
	AllowPipeliningAbuse bool
	// RequireAuth refuses MAIL with 530 5.7.0 until the client has
	// authenticated: the MSA on port 587.
	RequireAuth bool
	// AllowPlaintextAuth offers AUTH without TLS (the opposite of the
	// auth flag noplaintext, which is the default here).
	AllowPlaintextAuth bool
	// VRFY answers VRFY from local recipient validation when the policy
	// session is a Verifier (flags VRFY); by default, and for addresses
	// that are not local, VRFY gets 252.
	VRFY bool
	// DelayGreylistingErrorUntilDATA accepts a recipient the policy
	// greylists and gives the 421 at DATA or BDAT instead (flags
	// delay_greylisting_error_until_DATA). Either way the session ends
	// with the 421, as the seed says.
	DelayGreylistingErrorUntilDATA bool
	// GreetPause delays the greeting; a client that talks during the
	// pause is refused as an early talker. Default 0: only input already
	// waiting when the greeting is sent is refused.
	GreetPause time.Duration
	// SlowGreetingDelay is the greeting delay under LoadSlow. Default 1s.
	SlowGreetingDelay time.Duration

	// IOTimeout bounds every read and write (io_timeout). Default 5m.
	IOTimeout time.Duration
	// DataTimeout bounds the whole DATA or BDAT transfer of one message.
	// Default 30m.
	DataTimeout time.Duration
	// WaitForSMAR bounds each policy call (connect, MAIL, RCPT, VRFY,
	// STARTTLS, AUTH): the resolver's DNS and map lookups that take
	// longer fail temporarily (wait_for_smar). Default 1m.
	WaitForSMAR time.Duration
	// MaxSessions is the number of concurrent sessions (max_threads);
	// further connections get 421 4.3.2. Default 500.
	MaxSessions int
	// MaxBadCommandsPerSession (max_bad_commands_per_session), default 25.
	MaxBadCommandsPerSession int
	// MaxBadCommandsPerTransaction (max_bad_commands_per_transaction),
	// default 10.
	MaxBadCommandsPerTransaction int
	// MaxInvalidAddressesPerSession (max_invalid_addresses_per_session),
	// default 25.
	MaxInvalidAddressesPerSession int
	// MaxInvalidAddressesPerTransaction
	// (max_invalid_addresses_per_transaction), default 10.
	MaxInvalidAddressesPerTransaction int
	// MaxNOOPCommandsBetweenTransactions
	// (max_nop_commands_between_transactions), default 20.
	MaxNOOPCommandsBetweenTransactions int
	// MaxNOOPCommandsInTransaction (max_nop_commands_in_transaction),
	// default 20.
	MaxNOOPCommandsInTransaction int
	// MaxRecipientsPerSession (max_recipients_per_session), default 1000.
	MaxRecipientsPerSession int
	// MaxRecipientsPerTransaction (max_recipients_per_transaction),
	// default 100 (RFC 5321's minimum).
	MaxRecipientsPerTransaction int
	// MaxTransactions per session (max_transactions), default 100.
	MaxTransactions int
	// MaxMessageSize in bytes (max_message_size, which the seed gives in
	// KB), advertised with SIZE. Default 10 MiB.
	MaxMessageSize int64
	// MaxHops is the largest number of Received: fields a message may
	// carry (max_hops). Default 25.
	MaxHops int
	// MaxLineLength bounds a line of message data, in octets with CRLF
	// (RFC 5321 4.5.3.1.6). Default 1000.
	MaxLineLength int
	// MaxCommandLineLength bounds a command line, in octets with CRLF.
	// Default smtp.DefaultCommandLineLimit (2048).
	MaxCommandLineLength int
	// MaxHeaderSize bounds the header section of a message (sendmail's
	// MaxHeadersLength). Default 32 KiB.
	MaxHeaderSize int64

	// AfterDurable, when set, is called after a message's body and event
	// are durable and before the 250 is sent. It is for crash tests only.
	AfterDurable func(txn string)
}

// withDefaults returns o with every zero field set to its default and
// negative limits turned into "no limit".
func (o Options) withDefaults() Options {
	if o.Name == "" {
		o.Name = "MTA"
	}
	if o.Version == "" {
		o.Version = "smx"
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Debug == nil {
		o.Debug = slog.New(slog.DiscardHandler)
	}
	if o.MailLog == nil {
		o.MailLog = maillog.Discard()
	}
	if o.SlowGreetingDelay == 0 {
		o.SlowGreetingDelay = time.Second
	}
	dur := func(d *time.Duration, def time.Duration) {
		if *d == 0 {
			*d = def
		}
	}
	dur(&o.IOTimeout, 5*time.Minute)
	dur(&o.DataTimeout, 30*time.Minute)
	dur(&o.WaitForSMAR, time.Minute)
	limit := func(n *int, def int) {
		switch {
		case *n == 0:
			*n = def
		case *n < 0:
			*n = int(^uint(0) >> 1)
		}
	}
	limit(&o.MaxSessions, 500)
	limit(&o.MaxBadCommandsPerSession, 25)
	limit(&o.MaxBadCommandsPerTransaction, 10)
	limit(&o.MaxInvalidAddressesPerSession, 25)
	limit(&o.MaxInvalidAddressesPerTransaction, 10)
	limit(&o.MaxNOOPCommandsBetweenTransactions, 20)
	limit(&o.MaxNOOPCommandsInTransaction, 20)
	limit(&o.MaxRecipientsPerSession, 1000)
	limit(&o.MaxRecipientsPerTransaction, 100)
	limit(&o.MaxTransactions, 100)
	limit(&o.MaxHops, 25)
	limit(&o.MaxLineLength, 1000)
	limit(&o.MaxCommandLineLength, smtp.DefaultCommandLineLimit)
	limit64 := func(n *int64, def int64) {
		switch {
		case *n == 0:
			*n = def
		case *n < 0:
			*n = 1<<63 - 1
		}
	}
	limit64(&o.MaxMessageSize, 10<<20)
	limit64(&o.MaxHeaderSize, 32<<10)
	return o
}
