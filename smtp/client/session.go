package client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/smx-mta/smx/log"
)

// Session is an open SMTP or LMTP session with one server, ready for a
// transaction. A Session is used by one goroutine at a time.
type Session struct {
	opts *Options

	conn net.Conn
	// raw is the network connection under conn (conn becomes a TLS
	// connection after STARTTLS); interrupt sets its deadline, which
	// never changes, so it is safe from another goroutine.
	raw net.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	dw  *deadlineWriter // under w: bounds every write to the connection

	// Host is the name of the server as the route named it, IP the address
	// connected to (or the socket path) and Port the port (0 for unix).
	Host string
	IP   string
	Port int
	// LMTP is true for an LMTP session.
	LMTP bool
	// ESMTP is false when the server answered EHLO with an error and the
	// session fell back to HELO.
	ESMTP bool
	// Greeting is the server's 220 greeting.
	Greeting Reply
	// Ext are the extensions the server announced (after STARTTLS, the
	// second EHLO's).
	Ext Extensions
	// TLS describes the TLS session, nil when STARTTLS was not used.
	TLS *log.TLSInfo

	// broken is set once the session cannot carry another command: a
	// network error, a timeout, a 421 or a body that could not be read.
	broken bool
	// dirty is set while the server may hold an unfinished transaction
	// (MAIL accepted, no final reply): the next Send starts with RSET.
	dirty bool
	// interrupted is set when the context of a call was cancelled: every
	// deadline set from then on is in the past, so that a deadline set
	// after the interruption cannot undo it.
	interrupted atomic.Bool
	// transactions counts transactions started on this session.
	transactions int

	// body, chunkRaw and chunk are the buffers a transaction reads the
	// message through and builds its BDAT chunks in, kept for the next
	// transaction on the session. Made afresh for each message they were
	// the largest cost of a delivery: 800 KiB zeroed for a 5 KB message
	// took about a fifth of smxd's CPU time in the relay benchmark
	// (docs/performance.md).
	body            *bufio.Reader
	chunkRaw, chunk []byte
}

// Usable reports whether the session can carry another transaction.
func (s *Session) Usable() bool { return !s.broken }

// Transactions returns how many transactions were started on s.
func (s *Session) Transactions() int { return s.transactions }

// peer names the server for texts: "host[ip]".
func (s *Session) peer() string {
	if s.Port == 0 {
		return s.IP
	}
	return s.Host + "[" + s.IP + "]"
}

// errSessionBroken is returned by commands on a broken session.
var errSessionBroken = errors.New("session is no longer usable")

// cmd writes one command line (without CRLF) into the write buffer.
func (s *Session) cmd(format string, args ...any) {
	fmt.Fprintf(s.w, format, args...)
	s.w.WriteString("\r\n")
}

// flush sends the buffered commands within timeout.
func (s *Session) flush(timeout time.Duration) error {
	if s.broken {
		return errSessionBroken
	}
	s.dw.timeout = timeout
	if err := s.w.Flush(); err != nil {
		s.broken = true
		return err
	}
	return nil
}

// read reads one reply within timeout. A 421 reply marks the session
// broken: the server is closing it.
func (s *Session) read(timeout time.Duration) (Reply, error) {
	if s.broken {
		return Reply{}, errSessionBroken
	}
	s.conn.SetReadDeadline(s.deadline(timeout))
	rep, err := readReply(s.r)
	if err != nil {
		s.broken = true
		return Reply{}, err
	}
	if rep.Code == 421 {
		s.broken = true
	}
	return rep, nil
}

// roundTrip sends one command and reads its reply.
func (s *Session) roundTrip(timeout time.Duration, format string, args ...any) (Reply, error) {
	s.cmd(format, args...)
	if err := s.flush(timeout); err != nil {
		return Reply{}, err
	}
	return s.read(timeout)
}

// failure turns a network or protocol error during stage into a reply
// that stands for it.
func (s *Session) failure(err error, stage string) Reply {
	what := map[string]string{
		StageGreeting: "receiving the initial server greeting",
		StageEHLO:     "sending EHLO",
		StageStartTLS: "performing the TLS handshake",
		StageMail:     "sending MAIL FROM",
		StageRcpt:     "sending RCPT TO",
		StageData:     "sending message content",
		StageDot:      "sending end of data",
	}[stage]
	var netErr net.Error
	switch {
	case errors.Is(err, ErrMalformedReply):
		return localReply(451, "4.5.0", "protocol error with %s while %s: %v", s.peer(), what, err)
	case errors.As(err, &netErr) && netErr.Timeout():
		return localReply(451, "4.4.2", "conversation with %s timed out while %s", s.peer(), what)
	default:
		return localReply(451, "4.4.2", "lost connection with %s while %s", s.peer(), what)
	}
}

// close shuts the connection without QUIT.
func (s *Session) close() {
	s.broken = true
	s.conn.Close()
}

// Close ends the session: QUIT, and with read_QUIT_reply its reply, then
// the connection is closed. It is safe on a broken session.
func (s *Session) Close() error {
	if s.broken {
		return s.conn.Close()
	}
	s.cmd("QUIT")
	err := s.flush(s.opts.Timeouts.Quit)
	if err == nil && s.opts.ReadQUITReply {
		_, err = s.read(s.opts.Timeouts.Quit)
	}
	s.broken = true
	if cerr := s.conn.Close(); err == nil {
		err = cerr
	}
	return err
}

// Reset sends RSET, as the seed does before reusing a session for another
// transaction; it also tells whether the session is still alive. On
// failure the session is closed.
func (s *Session) Reset(ctx context.Context) error {
	if s.broken {
		return errSessionBroken
	}
	stop := context.AfterFunc(ctx, s.interrupt)
	defer stop()
	rep, err := s.roundTrip(s.opts.Timeouts.Rset, "RSET")
	if err == nil && rep.Code != 250 {
		err = fmt.Errorf("client: RSET to %s: %s", s.peer(), rep)
	}
	if err != nil {
		s.close()
		return fmt.Errorf("client: reset %s: %w", s.peer(), err)
	}
	s.dirty = false
	return nil
}

// interrupt makes the blocked read or write fail at once; it runs when the
// context of a call is cancelled.
func (s *Session) interrupt() {
	s.interrupted.Store(true)
	s.raw.SetDeadline(time.Unix(1, 0))
}

// deadline returns the deadline for a step of timeout: in the past once
// the session was interrupted.
func (s *Session) deadline(timeout time.Duration) time.Time {
	if s.interrupted.Load() {
		return time.Unix(1, 0)
	}
	return time.Now().Add(timeout)
}

// hello sends EHLO or LHLO (HELO after an EHLO that failed permanently) and
// records the extensions.
func (s *Session) hello() (Reply, error) {
	verb := "EHLO"
	if s.LMTP {
		verb = "LHLO"
	}
	rep, err := s.roundTrip(s.opts.Timeouts.Helo, "%s %s", verb, s.opts.HeloName)
	if err != nil {
		return rep, err
	}
	if rep.Code == 250 {
		s.ESMTP = true
		s.Ext = parseExtensions(rep)
		return rep, nil
	}
	if s.LMTP || !rep.Permanent() {
		return rep, nil
	}
	rep, err = s.roundTrip(s.opts.Timeouts.Helo, "HELO %s", s.opts.HeloName)
	s.ESMTP = false
	s.Ext = Extensions{}
	return rep, err
}

// startTLS runs STARTTLS and the handshake, then EHLO again. A reply other
// than 220 leaves the session in plain text (ok is false, err nil). A
// failed handshake returns an error: the connection is gone.
func (s *Session) startTLS() (ok bool, rep Reply, err error) {
	rep, err = s.roundTrip(s.opts.Timeouts.StartTLS, "STARTTLS")
	if err != nil || rep.Code != 220 {
		return false, rep, err
	}
	cfg := tlsConfig(s.opts.TLS, s.Host)
	info := &log.TLSInfo{Verify: "NO"}
	cfg.VerifyConnection = verifier(s.opts.TLS, s.Host, info)
	tconn := tls.Client(s.conn, cfg)
	tconn.SetDeadline(s.deadline(s.opts.Timeouts.StartTLS))
	if err := tconn.Handshake(); err != nil {
		s.close()
		return false, rep, fmt.Errorf("TLS handshake: %w", err)
	}
	describeTLS(info, tconn.ConnectionState())
	s.TLS = info
	s.conn = tconn
	s.dw.conn = tconn
	s.r.Reset(tconn)
	s.w.Reset(s.dw)
	rep, err = s.hello()
	if err == nil && rep.Code != 250 {
		err = fmt.Errorf("EHLO after STARTTLS: %s", rep)
	}
	return true, rep, err
}

// myself reports whether name is one of ours.
func (s *Session) myself(name string) bool {
	if s.LMTP || s.opts.TalkToMyself || name == "" {
		return false
	}
	if strings.EqualFold(name, s.opts.HeloName) {
		return true
	}
	for _, n := range s.opts.MyNames {
		if strings.EqualFold(name, n) {
			return true
		}
	}
	return false
}

// deadlineWriter sets a fresh write deadline before each write, so that
// the body is bounded per block (Timeout.datablock), not as a whole.
type deadlineWriter struct {
	conn    net.Conn
	timeout time.Duration
	s       *Session
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	d.conn.SetWriteDeadline(d.s.deadline(d.timeout))
	return d.conn.Write(p)
}

var _ io.Writer = (*deadlineWriter)(nil)
