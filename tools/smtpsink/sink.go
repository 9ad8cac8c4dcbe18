package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gosmtp "github.com/emersion/go-smtp"
)

// config is the command line.
type config struct {
	listen      string // "127.0.0.1:2526" or "unix:/path"
	lmtp        bool
	record      string // directory; "" records nothing
	countHeader string // header whose values are counted; "" counts none
	// The replies to MAIL, RCPT and DATA; nil accepts.
	mailReply, rcptReply, dataReply *gosmtp.SMTPError
	expect                          int64
	timeout, report, grace          time.Duration
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var mailReply, rcptReply, dataReply string
	fs := flag.NewFlagSet("smtpsink", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.listen, "listen", "127.0.0.1:2526", "loopback address:port, or unix:PATH, to listen on (port 0 picks one)")
	fs.BoolVar(&c.lmtp, "lmtp", false, "speak LMTP (RFC 2033): one DATA reply per recipient")
	fs.StringVar(&c.record, "record", "", "write each message to a file in this directory, with its envelope in X-Envelope-From: and X-Envelope-To: fields")
	fs.StringVar(&c.countHeader, "count-header", "X-Loadgen-Seq", "count the distinct (value of this header field, recipient) pairs and their duplicates (\"\" for none)")
	fs.StringVar(&mailReply, "mail-reply", "", `reply to MAIL, e.g. "451 4.3.0 try later" (default: accept)`)
	fs.StringVar(&rcptReply, "rcpt-reply", "", "reply to each RCPT (default: accept)")
	fs.StringVar(&dataReply, "data-reply", "", "reply to DATA, per recipient with -lmtp (default: accept)")
	fs.Int64Var(&c.expect, "expect", 0, "stop once the accepted messages had this many recipients (0: run until signalled)")
	fs.DurationVar(&c.timeout, "timeout", 0, "stop with exit status 1 if -expect is not reached in this time (0: no limit)")
	fs.DurationVar(&c.report, "report", 0, "print a report line this often (0: only at the end)")
	fs.DurationVar(&c.grace, "grace", time.Second, "how long sessions in progress may go on when the sink stops")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	for _, r := range []struct {
		flag, value string
		dst         **gosmtp.SMTPError
	}{{"-mail-reply", mailReply, &c.mailReply}, {"-rcpt-reply", rcptReply, &c.rcptReply}, {"-data-reply", dataReply, &c.dataReply}} {
		if *r.dst, err = parseReply(r.value); err != nil {
			return c, fmt.Errorf("%s: %w", r.flag, err)
		}
	}
	if _, err := listenAddr(c.listen); err != nil {
		return c, fmt.Errorf("-listen: %w", err)
	}
	return c, nil
}

// parseReply reads "CODE [X.Y.Z] [text]". A 2xx reply (or "") accepts and
// gives nil; a 4xx or 5xx gives the error the server answers with.
func parseReply(s string) (*gosmtp.SMTPError, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	codeText, rest, _ := strings.Cut(s, " ")
	code, err := strconv.Atoi(codeText)
	if err != nil || code < 200 || code > 599 || len(codeText) != 3 {
		return nil, fmt.Errorf("%q: a reply starts with a code from 200 to 599", s)
	}
	if code < 400 {
		return nil, nil
	}
	e := &gosmtp.SMTPError{Code: code, EnhancedCode: gosmtp.EnhancedCodeNotSet, Message: strings.TrimSpace(rest)}
	if enh, text, _ := strings.Cut(e.Message, " "); strings.Count(enh, ".") == 2 {
		var parts [3]int
		for i, p := range strings.Split(enh, ".") {
			n, err := strconv.Atoi(p)
			if err != nil || n < 0 || n > 999 {
				return nil, fmt.Errorf("%q: bad enhanced status code %q", s, enh)
			}
			parts[i] = n
		}
		if parts[0] != code/100 {
			return nil, fmt.Errorf("%q: enhanced status code %s does not match reply code %d", s, enh, code)
		}
		e.EnhancedCode = gosmtp.EnhancedCode(parts)
		e.Message = strings.TrimSpace(text)
	}
	if e.Message == "" {
		e.Message = "smtpsink says so"
	}
	return e, nil
}

// listenAddr checks -listen: a unix socket path, or an address on a
// loopback interface (the tools never listen elsewhere).
func listenAddr(s string) (network string, err error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if path == "" {
			return "", errors.New("unix: needs a path")
		}
		return "unix", nil
	}
	host, _, err := net.SplitHostPort(s)
	if err != nil {
		return "", err
	}
	if host == "localhost" {
		return "tcp", nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return "", fmt.Errorf("%q: smtpsink listens on loopback addresses only", s)
	}
	return "tcp", nil
}

// sink is the running server and its counters.
type sink struct {
	cfg config
	srv *gosmtp.Server
	ln  net.Listener

	messages, recipients, bytes atomic.Int64
	recorded                    atomic.Int64 // file names
	reached                     chan struct{}
	reachedOnce                 sync.Once

	mu          sync.Mutex
	first, last time.Time
	seen        map[string]int // count-header value and recipient -> times seen
	duplicates  int64
}

func listen(cfg config) (*sink, error) {
	network, err := listenAddr(cfg.listen)
	if err != nil {
		return nil, err
	}
	if cfg.record != "" {
		if err := os.MkdirAll(cfg.record, 0o755); err != nil {
			return nil, err
		}
	}
	addr := strings.TrimPrefix(cfg.listen, "unix:")
	if network == "unix" {
		os.Remove(addr) // a socket left by an earlier run
	}
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	s := &sink{cfg: cfg, ln: ln, reached: make(chan struct{}), seen: map[string]int{}}
	s.srv = gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) {
		return &session{s: s}, nil
	}))
	s.srv.Domain = "smtpsink.test"
	s.srv.LMTP = cfg.lmtp
	s.srv.MaxRecipients = 0 // no limit
	s.srv.MaxMessageBytes = 0
	s.srv.ReadTimeout = 5 * time.Minute
	s.srv.WriteTimeout = 5 * time.Minute
	s.srv.EnableSMTPUTF8 = true
	s.srv.EnableDSN = true
	return s, nil
}

// Addr returns the address the sink listens on.
func (s *sink) Addr() string {
	if s.ln.Addr().Network() == "unix" {
		return "unix:" + s.ln.Addr().String()
	}
	return s.ln.Addr().String()
}

// serve accepts mail until ctx is done, -expect is reached or -timeout
// passes, then prints the final report.
func (s *sink) serve(ctx context.Context, out io.Writer) error {
	served := make(chan error, 1)
	go func() { served <- s.srv.Serve(s.ln) }()
	var timeout <-chan time.Time
	if s.cfg.timeout > 0 {
		t := time.NewTimer(s.cfg.timeout)
		defer t.Stop()
		timeout = t.C
	}
	var report <-chan time.Time
	if s.cfg.report > 0 {
		t := time.NewTicker(s.cfg.report)
		defer t.Stop()
		report = t.C
	}
	var err error
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-s.reached:
			fmt.Fprintf(out, "smtpsink: reached %d recipients\n", s.cfg.expect)
			done = true
		case <-timeout:
			err = fmt.Errorf("timed out after %v with %d of %d recipients", s.cfg.timeout, s.recipients.Load(), s.cfg.expect)
			done = true
		case e := <-served:
			return fmt.Errorf("serve: %w", e)
		case <-report:
			fmt.Fprintln(out, s.reportLine())
		}
	}
	// Sessions in progress get a moment to finish, so that the client of
	// the last message expected reads its 250; then idle connections
	// (a relay's connection cache) are closed.
	grace, cancel := context.WithTimeout(context.Background(), s.cfg.grace)
	if s.srv.Shutdown(grace) != nil {
		s.srv.Close()
	}
	cancel()
	<-served
	fmt.Fprintln(out, s.reportLine())
	return err
}

// reportLine renders the counters.
func (s *sink) reportLine() string {
	s.mu.Lock()
	first, last, distinct, dups := s.first, s.last, len(s.seen), s.duplicates
	s.mu.Unlock()
	elapsed := last.Sub(first)
	rate := 0.0
	if n := s.messages.Load(); n > 1 && elapsed > 0 {
		rate = float64(n-1) / elapsed.Seconds()
	}
	line := fmt.Sprintf("smtpsink: messages=%d recipients=%d bytes=%d", s.messages.Load(), s.recipients.Load(), s.bytes.Load())
	if s.cfg.countHeader != "" {
		line += fmt.Sprintf(" distinct=%d duplicates=%d", distinct, dups)
	}
	return line + fmt.Sprintf(" elapsed=%.3fs rate=%.1f/s", elapsed.Seconds(), rate)
}

// accepted counts one message with its recipients and its count-header
// value.
func (s *sink) accepted(rcpts []string, size int64, value string) {
	now := time.Now()
	s.mu.Lock()
	if s.first.IsZero() {
		s.first = now
	}
	s.last = now
	if value != "" {
		for _, to := range rcpts {
			key := value + "\x00" + strings.ToLower(to)
			s.seen[key]++
			if s.seen[key] > 1 {
				s.duplicates++
			}
		}
	}
	s.mu.Unlock()
	s.messages.Add(1)
	s.bytes.Add(size)
	if n := s.recipients.Add(int64(len(rcpts))); s.cfg.expect > 0 && n >= s.cfg.expect {
		s.reachedOnce.Do(func() { close(s.reached) })
	}
}

// session is one SMTP or LMTP session.
type session struct {
	s    *sink
	from string
	to   []string
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }

func (ss *session) Mail(from string, _ *gosmtp.MailOptions) error {
	if r := ss.s.cfg.mailReply; r != nil {
		return r
	}
	ss.from, ss.to = from, nil
	return nil
}

func (ss *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if r := ss.s.cfg.rcptReply; r != nil {
		return r
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *session) Data(r io.Reader) error {
	if err := ss.take(r); err != nil {
		return err
	}
	if r := ss.s.cfg.dataReply; r != nil {
		return r
	}
	return nil
}

// LMTPData answers each recipient with the -data-reply.
func (ss *session) LMTPData(r io.Reader, status gosmtp.StatusCollector) error {
	if err := ss.take(r); err != nil {
		return err
	}
	for _, to := range ss.to {
		if r := ss.s.cfg.dataReply; r != nil {
			status.SetStatus(to, r)
		} else {
			status.SetStatus(to, nil)
		}
	}
	return nil
}

// take reads the message, records it when asked to, and counts it unless
// DATA is to be refused.
func (ss *session) take(r io.Reader) error {
	s := ss.s
	var file *os.File
	var w io.Writer = io.Discard
	if s.cfg.record != "" && s.cfg.dataReply == nil {
		name := filepath.Join(s.cfg.record, fmt.Sprintf("%09d.eml", s.recorded.Add(1)))
		f, err := os.Create(name)
		if err != nil {
			return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "cannot record: " + err.Error()}
		}
		file = f
		defer f.Close()
		bw := bufio.NewWriter(f)
		fmt.Fprintf(bw, "X-Envelope-From: <%s>\r\n", ss.from)
		for _, to := range ss.to {
			fmt.Fprintf(bw, "X-Envelope-To: <%s>\r\n", to)
		}
		if err := bw.Flush(); err != nil {
			return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "cannot record: " + err.Error()}
		}
		w = f
	}
	hs := headerScan{name: s.cfg.countHeader}
	n, err := io.Copy(io.MultiWriter(w, &hs), r)
	if err != nil {
		return err
	}
	if file != nil {
		if err := file.Close(); err != nil {
			return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "cannot record: " + err.Error()}
		}
	}
	if s.cfg.dataReply == nil {
		s.accepted(ss.to, n, hs.value)
	}
	return nil
}

// headerScan finds the value of one header field in the header of a
// message written to it, and ignores everything after the header.
type headerScan struct {
	name  string
	value string
	buf   []byte
	done  bool
}

func (h *headerScan) Write(p []byte) (int, error) {
	if h.done || h.name == "" {
		return len(p), nil
	}
	h.buf = append(h.buf, p...)
	for {
		i := bytes.IndexByte(h.buf, '\n')
		if i < 0 {
			if len(h.buf) > 64<<10 {
				h.done = true // a header line this long is not ours
			}
			return len(p), nil
		}
		line := bytes.TrimRight(h.buf[:i], "\r")
		h.buf = h.buf[i+1:]
		if len(line) == 0 {
			h.done = true
			return len(p), nil
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(k), h.name) {
			h.value = strings.TrimSpace(string(v))
			h.done = true
			return len(p), nil
		}
	}
}
