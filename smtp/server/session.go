package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/log/maillog"
	"github.com/smx-mta/smx/smtp"
	"github.com/smx-mta/smx/smtp/policy"
)

// authLineLimit is the longest line of an AUTH exchange (RFC 4954 4).
const authLineLimit = 12288

// errQuit ends the command loop after the reply that says why has been
// written.
var errQuit = errors.New("session ends")

// session is one SMTP session: the seed's session context. It is used by
// its own goroutine only.
type session struct {
	srv    *Server
	opts   *Options
	conn   net.Conn // the accepted connection, for Close
	dc     *deadlineConn
	br     *bufio.Reader
	lr     *smtp.LineReader
	bw     *bufio.Writer
	ctx    context.Context
	id     string
	remote netip.AddrPort
	local  netip.AddrPort
	start  time.Time

	pol        PolicySession
	rejected   *smtp.Reply // connect rejected with 5xx: every command but QUIT gets 503
	discardAll bool        // connect said discard

	helo     string
	ehlo     bool
	tlsState *tls.ConnectionState
	tlsInfo  *log.TLSInfo
	auth     *log.AuthInfo
	commands int // commands since the session (re)started, for the HTTP check

	badSession, badTxn         int
	invalidSession, invalidTxn int
	nopBetween, nopIn          int
	rcptSession, transactions  int

	txn *transaction
}

// transaction is the seed's transaction context.
type transaction struct {
	id       string
	args     smtp.MailArgs
	rcpts    []log.Recipient
	accepted int  // recipients answered 250, including discarded ones
	discard  bool // the whole transaction is discarded
	bdat     bool // BDAT has been used
	body     *bodySink
	check    *smtp.LineChecker // BDAT line rules across chunks
	started  time.Time
	// greylisted is the 421 a greylisted recipient earned, held for DATA
	// or BDAT by delay_greylisting_error_until_DATA.
	greylisted *smtp.Reply
}

func newSession(srv *Server, conn net.Conn, remote netip.AddrPort) *session {
	s := &session{
		srv:    srv,
		opts:   &srv.opts,
		conn:   conn,
		ctx:    srv.ctx,
		remote: remote,
		local:  addrPort(conn.LocalAddr()),
		start:  srv.opts.Now(),
	}
	s.setConn(conn)
	return s
}

// setConn (re)builds the reader and writer on c: at the start and after
// STARTTLS, when everything buffered before is dropped.
func (s *session) setConn(c net.Conn) {
	s.dc = &deadlineConn{Conn: c, timeout: s.opts.IOTimeout, now: time.Now}
	s.br = bufio.NewReaderSize(s.dc, 16<<10)
	s.lr = smtp.NewLineReader(s.br, s.opts.MaxCommandLineLength)
	s.bw = bufio.NewWriterSize(s.dc, 4<<10)
}

// run is the session from greeting to close.
func (s *session) run() {
	defer func() {
		if r := recover(); r != nil {
			txn := ""
			if s.txn != nil {
				txn = s.txn.id
			}
			s.opts.Debug.Error("smtp server: panic in session", "ss_sess", s.id, "ss_ta", txn,
				"panic", r, "stack", string(debug.Stack()))
			s.opts.MailLog.Line(maillog.LevelError).SSSess(s.id).Str("ss_ta", txn).
				Where("panic").Str("reason", fmt.Sprint(r)).Write()
		}
		s.abortTxn()
		s.end()
	}()
	id, err := s.opts.IDs.Next()
	if err != nil {
		s.opts.Debug.Error("smtp server: no session id", "err", err)
		s.writeNow("421 4.3.0 %s Temporary failure, try again later", s.opts.Hostname)
		return
	}
	s.id = id.String()
	if s.opts.ImplicitTLS {
		if !s.handshake() {
			return
		}
	}
	if !s.greet() {
		return
	}
	s.loop()
}

// end writes the session's last mail log line.
func (s *session) end() {
	if s.id == "" {
		return
	}
	s.opts.MailLog.ServerSession(s.id).Status("closed").Int("transactions", int64(s.transactions)).
		Seconds("duration", s.opts.Now().Sub(s.start)).Write()
}

// greet runs the connection checks and sends the greeting. It reports
// whether the session goes on.
func (s *session) greet() bool {
	o := s.opts
	client := policy.ClientInfo{Addr: s.remote.Addr().Unmap(), Port: int(s.remote.Port()), Listener: o.Name}
	ctx, cancel := s.policyContext()
	pol, d := o.Policy.Connect(ctx, client)
	cancel()
	s.pol = pol
	name := ""
	if pol != nil {
		name = pol.ClientName()
	}
	ln := o.MailLog.ServerSession(s.id).Client(client.Addr, name).Str("listener", o.Name)
	if s.local.IsValid() {
		ln = ln.Int("local_port", int64(s.local.Port()))
	}
	ln.Write()

	load := LoadNormal
	if o.Load != nil {
		load = o.Load.LoadState()
	}
	if load == LoadRefuse {
		s.writeNow("421 4.3.2 %s System busy, try again later", o.Hostname)
		s.logSession("refused", "load=refuse")
		return false
	}
	pause := o.GreetPause
	if load == LoadSlow {
		pause += o.SlowGreetingDelay
	}
	if !s.waitGreeting(pause) {
		return false
	}
	switch d.Action {
	case policy.Reject:
		r := decisionReply(d, 554, smtp.E(5, 7, 1), "Access denied")
		if r.Temporary() {
			r.Code = 421
			s.write(r)
			s.flush()
			s.logSession("rejected", r.String())
			return false
		}
		s.rejected = &r
		s.write(r)
		s.logSession("rejected", r.String())
		return true
	case policy.Discard:
		s.discardAll = true
	}
	s.writeNow("220 %s ESMTP %s", o.Hostname, o.Version)
	return true
}

// waitGreeting waits pause before the greeting and refuses a client that
// talks in the meantime (or, without a pause, has already talked).
func (s *session) waitGreeting(pause time.Duration) bool {
	o := s.opts
	if o.AllowDataBeforeGreeting || o.ImplicitTLS {
		if pause > 0 {
			t := time.NewTimer(pause)
			defer t.Stop()
			select {
			case <-t.C:
			case <-s.ctx.Done():
				return false
			}
		}
		return true
	}
	early := false
	if pause > 0 {
		s.dc.dataDeadline = time.Now().Add(pause)
		_, err := s.br.Peek(1)
		s.dc.dataDeadline = time.Time{}
		var ne net.Error
		switch {
		case err == nil:
			early = true
		case errors.As(err, &ne) && ne.Timeout():
			// The client waited, as it should. Peek's timeout leaves the
			// reader usable: bufio keeps no sticky error for it... but
			// to be safe start a fresh reader on the same connection.
			s.setConn(s.dc.Conn)
		default:
			return false // the client went away
		}
	} else {
		early = inputWaiting(s.dc.Conn)
	}
	if early {
		s.writeNow("554 5.5.0 %s Data sent before greeting, closing connection", o.Hostname)
		s.logSession("early_talker", "")
		return false
	}
	return true
}

// policyContext bounds one policy call by wait_for_smar: a resolver that
// does not answer in time makes the call fail temporarily instead of
// holding the client.
func (s *session) policyContext() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.opts.WaitForSMAR)
}

// logSession writes a session line with a status and a reply or reason.
func (s *session) logSession(status, reply string) {
	ln := s.opts.MailLog.ServerSession(s.id).Status(status)
	if reply != "" {
		ln = ln.Reply(reply)
	}
	ln.Write()
}

// loop reads and runs commands until the session ends.
func (s *session) loop() {
	for {
		if s.lr.Buffered() == 0 {
			if err := s.flush(); err != nil {
				return
			}
		}
		if s.ctx.Err() != nil {
			s.writeNow("421 4.3.2 %s Server shutting down", s.opts.Hostname)
			return
		}
		line, err := s.lr.ReadLine()
		if err != nil {
			if s.readError(err) {
				continue
			}
			return
		}
		cmd, err := smtp.ParseCommand(line)
		if err != nil {
			if s.bad(replyOf(err)) != nil {
				return
			}
			continue
		}
		if err := s.dispatch(cmd); err != nil {
			s.flush()
			return
		}
	}
}

// readError handles an error reading a command line. It reports whether
// the session goes on.
func (s *session) readError(err error) bool {
	var ne net.Error
	switch {
	case errors.Is(err, smtp.ErrLineTooLong):
		return s.bad(smtp.NewReply(500, smtp.E(5, 5, 2), fmt.Sprintf("Line too long (%d octets max)", s.lr.Limit()))) == nil
	case errors.Is(err, smtp.ErrBareLF), errors.Is(err, smtp.ErrBareCR):
		what := "LF"
		if errors.Is(err, smtp.ErrBareCR) {
			what = "CR"
		}
		s.writeNow("421 4.5.0 %s Bare %s not allowed, lines must end in CRLF, closing connection", s.opts.Hostname, what)
		s.logSession("bare_"+strings.ToLower(what), "")
	case errors.As(err, &ne) && ne.Timeout():
		s.writeNow("421 4.4.2 %s Timeout waiting for input, closing connection", s.opts.Hostname)
		s.logSession("timeout", "")
	default:
		s.logSession("lost", err.Error())
	}
	return false
}

// dispatch runs one command. It returns errQuit when the session ends.
func (s *session) dispatch(cmd smtp.Command) error {
	s.commands++
	if s.commands == 1 {
		switch cmd.Verb {
		case "GET", "POST", "CONNECT", "USER", "HEAD", "PUT":
			s.writeNow("554 5.7.0 %s This is an SMTP server, closing connection", s.opts.Hostname)
			s.logSession("http_command", cmd.Verb)
			return errQuit
		}
	}
	if s.rejected != nil && cmd.Verb != "QUIT" {
		r := *s.rejected
		return s.bad(smtp.NewReply(503, smtp.E(5, 7, 1), "Connection rejected: "+r.Text()))
	}
	switch cmd.Verb {
	case "EHLO":
		return s.cmdHelo(cmd.Arg, true)
	case "HELO":
		return s.cmdHelo(cmd.Arg, false)
	case "MAIL":
		return s.cmdMail(cmd.Arg)
	case "RCPT":
		return s.cmdRcpt(cmd.Arg)
	case "DATA":
		return s.cmdData(cmd.Arg)
	case "BDAT":
		return s.cmdBdat(cmd.Arg)
	case "RSET":
		if cmd.Arg != "" {
			return s.bad(noArgs)
		}
		s.resetTxn()
		return s.nop(smtp.NewReply(250, smtp.E(2, 0, 0), "OK"))
	case "NOOP":
		return s.nop(smtp.NewReply(250, smtp.E(2, 0, 0), "OK"))
	case "HELP":
		return s.nop(smtp.Reply{Code: 214, Enhanced: smtp.E(2, 0, 0), Lines: []string{
			"smx SMTP server; commands:",
			"EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY ETRN STARTTLS AUTH",
			"See RFC 5321",
		}})
	case "VRFY":
		return s.cmdVrfy(cmd.Arg)
	case "EXPN":
		return s.nop(smtp.NewReply(502, smtp.E(5, 5, 1), "EXPN not available"))
	case "ETRN":
		return s.cmdEtrn(cmd.Arg)
	case "STARTTLS":
		return s.cmdStartTLS(cmd.Arg)
	case "AUTH":
		return s.cmdAuth(cmd.Arg)
	case "QUIT":
		s.write(smtp.NewReply(221, smtp.E(2, 0, 0), s.opts.Hostname+" closing connection"))
		return errQuit
	}
	return s.bad(smtp.NewReply(500, smtp.E(5, 5, 1), "Command unrecognized"))
}

var noArgs = smtp.NewReply(501, smtp.E(5, 5, 4), "Syntax error, no parameters allowed")

// write queues a reply; it goes out when the client has nothing more
// pipelined (see loop) or on flush.
func (s *session) write(r smtp.Reply) {
	var buf [256]byte
	s.bw.Write(r.Append(buf[:0]))
}

// writeNow writes a one-line reply given as text and flushes it.
func (s *session) writeNow(format string, args ...any) {
	fmt.Fprintf(s.bw, format+"\r\n", args...)
	s.flush()
}

func (s *session) flush() error { return s.bw.Flush() }

// bad answers a bad command (unknown, syntax error, out of sequence) and
// ends the session with 421 once there have been too many of them
// (max_bad_commands_per_session, max_bad_commands_per_transaction).
func (s *session) bad(r smtp.Reply) error {
	s.badSession++
	if s.txn != nil {
		s.badTxn++
	}
	if s.badSession > s.opts.MaxBadCommandsPerSession || s.badTxn > s.opts.MaxBadCommandsPerTransaction {
		s.writeNow("421 4.7.0 %s Too many bad commands, closing connection", s.opts.Hostname)
		s.logSession("too_many_bad_commands", r.String())
		return errQuit
	}
	s.write(r)
	return nil
}

// nop answers NOOP, RSET, HELP, VRFY and their kind and ends the session
// with 421 once there have been too many of them
// (max_nop_commands_between_transactions, max_nop_commands_in_transaction).
func (s *session) nop(r smtp.Reply) error {
	var exceeded bool
	if s.txn != nil {
		s.nopIn++
		exceeded = s.nopIn > s.opts.MaxNOOPCommandsInTransaction
	} else {
		s.nopBetween++
		exceeded = s.nopBetween > s.opts.MaxNOOPCommandsBetweenTransactions
	}
	if exceeded {
		s.writeNow("421 4.7.0 %s Too many NOOP, RSET or similar commands, closing connection", s.opts.Hostname)
		s.logSession("too_many_nop_commands", "")
		return errQuit
	}
	s.write(r)
	return nil
}

// replyOf returns the reply an error from the smtp package carries, or a
// generic syntax error.
func replyOf(err error) smtp.Reply {
	var e *smtp.Error
	if errors.As(err, &e) {
		return e.Reply
	}
	return smtp.NewReply(501, smtp.E(5, 5, 2), "Syntax error")
}

// soft applies soft_bounce to a rejection: 5xx becomes 4xx.
func (s *session) soft(r smtp.Reply) smtp.Reply {
	if s.opts.SoftBounce && r.Permanent() {
		r.Code -= 100
		if r.Enhanced.Class == 5 {
			r.Enhanced.Class = 4
		}
	}
	return r
}

// decisionReply renders a policy rejection, with defaults for a decision
// that carries no code.
func decisionReply(d policy.Decision, code int, enh smtp.EnhancedCode, text string) smtp.Reply {
	r := smtp.NewReply(code, enh, text)
	if d.Code >= 400 && d.Code < 600 {
		r.Code = d.Code
		if e, err := smtp.ParseEnhancedCode(d.Enhanced); err == nil && e.Class == d.Code/100 {
			r.Enhanced = e
		} else {
			r.Enhanced = smtp.E(d.Code/100, enh.Subject, enh.Detail)
		}
	}
	if d.Text != "" {
		r.Lines = []string{d.Text}
	}
	return r
}

// extensions returns the ESMTP extensions in effect for MAIL and RCPT:
// none after HELO.
func (s *session) extensions() smtp.Extensions {
	if !s.ehlo {
		return 0
	}
	ext := smtp.ExtSize | smtp.ExtDSN
	if s.opts.EightBitMIME {
		ext |= smtp.Ext8BitMIME
		if !s.opts.NoSMTPUTF8 {
			ext |= smtp.ExtSMTPUTF8
		}
	}
	if s.authOffered() {
		ext |= smtp.ExtAuth
	}
	return ext
}

// authOffered reports whether AUTH is available now.
func (s *session) authOffered() bool {
	return s.opts.Auth != nil && (s.tlsState != nil || s.opts.AllowPlaintextAuth)
}

// stuffed reports whether the client sent more input right behind a
// command it must wait on (EHLO, HELO, DATA), and if so answers 554 and
// ends the session: sendmail's transaction stuffing protection.
func (s *session) stuffed(verb string) bool {
	if s.opts.AllowPipeliningAbuse || s.lr.Buffered() == 0 {
		return false
	}
	s.writeNow("554 5.5.0 %s Improper use of SMTP command pipelining after %s, closing connection", s.opts.Hostname, verb)
	s.logSession("pipelining_abuse", verb)
	return true
}

func (s *session) cmdHelo(arg string, ehlo bool) error {
	verb := "HELO"
	if ehlo {
		verb = "EHLO"
	}
	if arg == "" {
		return s.bad(smtp.NewReply(501, smtp.E(5, 5, 4), verb+" requires a domain name"))
	}
	if len(arg) > smtp.MaxDomainLength || strings.ContainsAny(arg, " \t") ||
		(s.opts.StrictEHLOChecks && !smtp.IsDomain(arg, false) && !smtp.IsAddressLiteral(arg)) {
		return s.bad(smtp.NewReply(501, smtp.E(5, 5, 2), "Invalid domain name in "+verb))
	}
	if s.opts.CheckEHLO && s.impersonates(arg) {
		s.opts.MailLog.ServerSession(s.id).Str("helo", arg).Status("Identity Theft").Write()
		return s.bad(s.soft(smtp.NewReply(550, smtp.E(5, 7, 1), "Identity theft: "+arg+" is this host, not you")))
	}
	s.resetTxn()
	s.helo, s.ehlo = arg, ehlo
	if s.stuffed(verb) {
		return errQuit
	}
	if !ehlo {
		s.write(smtp.NewReply(250, smtp.EnhancedCode{}, s.opts.Hostname+" Hello "+arg))
		return nil
	}
	ext := s.extensions()
	lines := []string{s.opts.Hostname + " Hello " + arg + " [" + s.remote.Addr().Unmap().String() + "]"}
	if !s.opts.NoPipelining {
		lines = append(lines, "PIPELINING")
	}
	lines = append(lines, "SIZE "+strconv.FormatInt(s.opts.MaxMessageSize, 10))
	if ext&smtp.Ext8BitMIME != 0 {
		lines = append(lines, "8BITMIME")
	}
	if ext&smtp.ExtSMTPUTF8 != 0 {
		lines = append(lines, "SMTPUTF8")
	}
	lines = append(lines, "ENHANCEDSTATUSCODES", "DSN")
	if !s.opts.NoChunking {
		lines = append(lines, "CHUNKING")
	}
	if s.opts.Flush != nil {
		lines = append(lines, "ETRN")
	}
	if s.opts.TLS != nil && s.tlsState == nil {
		lines = append(lines, "STARTTLS")
	}
	if s.authOffered() && s.auth == nil {
		lines = append(lines, "AUTH PLAIN LOGIN")
	}
	lines = append(lines, "HELP")
	s.write(smtp.Reply{Code: 250, Lines: lines})
	return nil
}

// impersonates reports whether an EHLO name claims to be this host, for a
// client that is not localhost (127.0.0.1 or ::1, as the seed says) and was
// not let through with quick:ok or quick:relay.
func (s *session) impersonates(name string) bool {
	if a := s.remote.Addr().Unmap(); a == netip.IPv6Loopback() || a == netip.AddrFrom4([4]byte{127, 0, 0, 1}) || (s.pol != nil && s.pol.Quick()) {
		return false
	}
	if strings.EqualFold(strings.TrimSuffix(name, "."), s.opts.Hostname) {
		return true
	}
	if strings.HasPrefix(name, "[") && strings.HasSuffix(name, "]") {
		lit := strings.TrimPrefix(strings.TrimPrefix(name[1:len(name)-1], "IPv6:"), "ipv6:")
		if a, err := netip.ParseAddr(lit); err == nil && s.local.IsValid() && a.Unmap() == s.local.Addr().Unmap() {
			return true
		}
	}
	return false
}

func (s *session) cmdMail(arg string) error {
	o := s.opts
	switch {
	case s.txn != nil:
		return s.bad(smtp.NewReply(503, smtp.E(5, 5, 1), "Sender already specified"))
	case o.RequireEHLOBeforeMAIL && s.helo == "":
		return s.bad(smtp.NewReply(503, smtp.E(5, 5, 1), "Polite people say EHLO first"))
	case o.RequireAuth && s.auth == nil:
		return s.bad(smtp.NewReply(530, smtp.E(5, 7, 0), "Authentication required"))
	}
	if s.transactions >= o.MaxTransactions {
		s.writeNow("421 4.7.0 %s Too many transactions in one session, closing connection", o.Hostname)
		s.logSession("too_many_transactions", "")
		return errQuit
	}
	if o.Load != nil && o.Load.LoadState() == LoadRefuse {
		r := smtp.NewReply(452, smtp.E(4, 3, 1), "Insufficient system resources, try again later")
		s.write(r)
		s.opts.MailLog.ServerSession(s.id).Where("mail").Stat(r.Code).Reply(r.String()).Write()
		return nil
	}
	if !o.Content.Accepting() {
		r := smtp.NewReply(452, smtp.E(4, 3, 1), "Insufficient system storage, try again later")
		s.write(r)
		s.opts.MailLog.ServerSession(s.id).Where("mail").Stat(r.Code).Reply(r.String()).Write()
		return nil
	}
	args, err := smtp.ParseMail(arg, s.extensions())
	if err != nil {
		return s.bad(replyOf(err))
	}
	if args.Size > o.MaxMessageSize {
		r := s.soft(smtp.NewReply(552, smtp.E(5, 3, 4), fmt.Sprintf("Message size exceeds fixed maximum message size (%d)", o.MaxMessageSize)))
		s.write(r)
		s.opts.MailLog.ServerSession(s.id).Mail(args.From.String()).Stat(r.Code).Reply(r.String()).Write()
		return nil
	}
	if s.auth == nil {
		// RFC 4954 5: AUTH= from an unauthenticated client is not trusted.
		args.Auth = ""
	}
	sender := args.From.String()
	ctx, cancel := s.policyContext()
	d := s.pol.Mail(ctx, sender, args)
	cancel()
	discard := s.discardAll
	switch d.Action {
	case policy.Reject:
		r := s.soft(decisionReply(d, 550, smtp.E(5, 7, 1), "Sender rejected"))
		s.write(r)
		s.opts.MailLog.ServerSession(s.id).Mail(sender).Stat(r.Code).Reply(r.String()).Write()
		return nil
	case policy.Discard:
		discard = true
	}
	id, err := o.IDs.Next()
	if err != nil {
		o.Debug.Error("smtp server: no transaction id", "ss_sess", s.id, "err", err)
		s.write(smtp.NewReply(451, smtp.E(4, 3, 0), "Temporary failure, try again later"))
		return nil
	}
	s.txn = &transaction{id: id.String(), args: args, discard: discard, started: o.Now()}
	s.nopIn, s.badTxn, s.invalidTxn = 0, 0, 0
	o.MailLog.ServerTxn(s.id, s.txn.id).Mail(sender).Stat(250).Write()
	s.write(smtp.NewReply(250, smtp.E(2, 1, 0), "Sender <"+sender+"> OK"))
	return nil
}

func (s *session) cmdRcpt(arg string) error {
	o := s.opts
	t := s.txn
	if t == nil {
		return s.bad(smtp.NewReply(503, smtp.E(5, 5, 1), "Need MAIL before RCPT"))
	}
	if t.bdat {
		return s.bad(smtp.NewReply(503, smtp.E(5, 5, 1), "RCPT not allowed after BDAT"))
	}
	if s.rcptSession >= o.MaxRecipientsPerSession {
		s.write(smtp.NewReply(452, smtp.E(4, 5, 3), "Too many recipients in this session"))
		return nil
	}
	if t.accepted >= o.MaxRecipientsPerTransaction {
		s.write(smtp.NewReply(452, smtp.E(4, 5, 3), "Too many recipients"))
		return nil
	}
	args, err := smtp.ParseRcpt(arg, s.extensions(), t.args.SMTPUTF8)
	if err != nil {
		r := replyOf(err)
		if r.Enhanced.Subject == 1 || r.Enhanced == smtp.E(5, 6, 7) {
			return s.invalid(r, "")
		}
		return s.bad(r)
	}
	rcpt := args.To.String()
	ctx, cancel := s.policyContext()
	d := s.pol.Rcpt(ctx, rcpt, args)
	cancel()
	switch {
	case d.Action == policy.Reject && d.Greylisted:
		return s.greylisted(d, rcpt)
	case d.Action == policy.Reject:
		return s.invalid(s.soft(decisionReply(d, 550, smtp.E(5, 1, 1), "Recipient rejected")), rcpt)
	case d.Action == policy.Discard:
		if d.Quick {
			t.discard = true
		}
		t.accepted++
		s.rcptSession++
		o.MailLog.ServerTxn(s.id, t.id).Rcpt(rcpt).Stat(250).Status("discarded").Write()
		s.write(smtp.NewReply(250, smtp.E(2, 1, 5), "Recipient <"+rcpt+"> OK"))
		return nil
	}
	idx := len(t.rcpts)
	t.rcpts = append(t.rcpts, log.Recipient{Addr: rcpt, ORCPT: args.ORCPT, Notify: log.Notify(args.Notify)})
	t.accepted++
	s.rcptSession++
	o.MailLog.ServerTxn(s.id, t.id).Rcpt(rcpt).Idx(idx).Stat(0).Write()
	s.write(smtp.NewReply(250, smtp.E(2, 1, 5), "Recipient <"+rcpt+"> OK"))
	return nil
}

// greylisted answers a recipient the policy greylisted. The seed aborts
// the session with the 421; with delay_greylisting_error_until_DATA the
// recipient gets 250 and the 421 waits for DATA or BDAT, so that a sender
// callback (RCPT then QUIT) is not delayed.
func (s *session) greylisted(d policy.Decision, rcpt string) error {
	t := s.txn
	r := decisionReply(d, 421, smtp.E(4, 7, 0), "Greylisted, try again later")
	if !r.Temporary() {
		r.Code, r.Enhanced.Class = 421, 4
	}
	s.opts.MailLog.ServerTxn(s.id, t.id).Rcpt(rcpt).Stat(r.Code).Reply(r.String()).Status("greylisted").Write()
	if s.opts.DelayGreylistingErrorUntilDATA {
		if t.greylisted == nil {
			t.greylisted = &r
		}
		t.accepted++
		s.rcptSession++
		s.write(smtp.NewReply(250, smtp.E(2, 1, 5), "Recipient <"+rcpt+"> OK"))
		return nil
	}
	s.write(r)
	s.logSession("greylisted", r.String())
	return errQuit
}

// greylistedAtData gives the 421 that delay_greylisting_error_until_DATA
// held back, at DATA or the first BDAT, and ends the session.
func (s *session) greylistedAtData() error {
	t := s.txn
	r := *t.greylisted
	s.write(r)
	s.opts.MailLog.ServerTxn(s.id, t.id).Where("data").Stat(r.Code).Reply(r.String()).Status("greylisted").Write()
	s.logSession("greylisted", r.String())
	return errQuit
}

// invalid answers a refused recipient and ends the session with 421 once
// there have been too many (max_invalid_addresses_per_session,
// max_invalid_addresses_per_transaction).
func (s *session) invalid(r smtp.Reply, rcpt string) error {
	s.invalidSession++
	s.invalidTxn++
	s.opts.MailLog.ServerTxn(s.id, s.txn.id).Rcpt(rcpt).Stat(r.Code).Reply(r.String()).Write()
	if s.invalidSession > s.opts.MaxInvalidAddressesPerSession || s.invalidTxn > s.opts.MaxInvalidAddressesPerTransaction {
		s.writeNow("421 4.7.0 %s Too many invalid recipients, closing connection", s.opts.Hostname)
		s.logSession("too_many_invalid_addresses", r.String())
		return errQuit
	}
	s.write(r)
	return nil
}

func (s *session) cmdVrfy(arg string) error {
	if arg == "" {
		return s.bad(smtp.NewReply(501, smtp.E(5, 5, 4), "VRFY requires an address"))
	}
	if v, ok := s.pol.(Verifier); ok && s.opts.VRFY {
		addr := strings.TrimSuffix(strings.TrimPrefix(arg, "<"), ">")
		ctx, cancel := s.policyContext()
		d := v.Verify(ctx, addr)
		cancel()
		switch d.Action {
		case policy.Reject:
			r := decisionReply(d, 550, smtp.E(5, 1, 1), "User unknown")
			if r.Code != 501 {
				r = s.soft(r) // a syntax error stays 5xx
			}
			return s.nop(r)
		case policy.Accept, policy.Relay:
			return s.nop(smtp.NewReply(250, smtp.E(2, 1, 5), "<"+addr+">"))
		}
	}
	return s.nop(smtp.NewReply(252, smtp.E(2, 5, 2), "Cannot VRFY user, but will accept message and attempt delivery"))
}

func (s *session) cmdEtrn(arg string) error {
	switch {
	case s.opts.Flush == nil:
		return s.bad(smtp.NewReply(502, smtp.E(5, 5, 1), "ETRN not available"))
	case s.txn != nil:
		return s.bad(smtp.NewReply(503, smtp.E(5, 5, 1), "ETRN not allowed during a mail transaction"))
	case arg == "" || strings.ContainsAny(arg, " \t"):
		return s.bad(smtp.NewReply(501, smtp.E(5, 5, 4), "Syntax error, ETRN node expected"))
	}
	node := strings.TrimLeft(arg, "@#")
	if !smtp.IsDomain(node, false) && !smtp.IsAddressLiteral(node) && !strings.HasPrefix(arg, "#") {
		return s.bad(smtp.NewReply(501, smtp.E(5, 5, 4), "Syntax error, ETRN node expected"))
	}
	s.opts.MailLog.ServerSession(s.id).Str("etrn", arg).Write()
	if err := s.opts.Flush.Flush(s.ctx, arg); err != nil {
		s.opts.Debug.Warn("smtp server: ETRN", "ss_sess", s.id, "arg", arg, "err", err)
		return s.nop(smtp.NewReply(458, smtp.E(4, 0, 0), "Unable to queue messages for node "+arg))
	}
	return s.nop(smtp.NewReply(250, smtp.E(2, 0, 0), "Queuing for node "+arg+" started"))
}

// resetTxn ends the current transaction without a message: RSET, EHLO,
// STARTTLS, or a failed one.
func (s *session) resetTxn() {
	if s.txn == nil {
		return
	}
	s.abortTxn()
	s.txn = nil
	if s.pol != nil {
		s.pol.Reset()
	}
}

// abortTxn discards the body of the current transaction, if any.
func (s *session) abortTxn() {
	if s.txn != nil && s.txn.body != nil {
		s.txn.body.abort()
		s.txn.body = nil
	}
}
