package client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/smx-mta/smx/log"
)

// loopbackDialer dials only loopback addresses and unix sockets, and fails
// the test on anything else: a bug must not send traffic off the machine.
type loopbackDialer struct {
	t     *testing.T
	mu    sync.Mutex
	dials []string
}

func (d *loopbackDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	d.mu.Lock()
	d.dials = append(d.dials, address)
	d.mu.Unlock()
	if network == "tcp" {
		host, _, err := net.SplitHostPort(address)
		if err != nil {
			return nil, err
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			d.t.Errorf("dial to non-loopback address %s", address)
			return nil, errors.New("test refuses non-loopback address")
		}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, address)
}

func (d *loopbackDialer) Dials() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.dials...)
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// received is one message a test server accepted.
type received struct {
	From  string
	Mail  gosmtp.MailOptions
	Rcpts []string
	Ropts []gosmtp.RcptOptions
	Data  []byte
}

// backend is a go-smtp backend that records messages. rcptErr, when set,
// decides per recipient; lmtpStatus decides per recipient after DATA.
type backend struct {
	mu         sync.Mutex
	msgs       []received
	rcptErr    func(to string) error
	lmtpStatus func(to string) error
}

func (b *backend) NewSession(c *gosmtp.Conn) (gosmtp.Session, error) { return &session{b: b}, nil }

func (b *backend) Messages() []received {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]received(nil), b.msgs...)
}

type session struct {
	b   *backend
	cur received
}

func (s *session) Reset()        { s.cur = received{} }
func (s *session) Logout() error { return nil }
func (s *session) Mail(from string, opts *gosmtp.MailOptions) error {
	s.cur = received{From: from}
	if opts != nil {
		s.cur.Mail = *opts
	}
	return nil
}
func (s *session) Rcpt(to string, opts *gosmtp.RcptOptions) error {
	if s.b.rcptErr != nil {
		if err := s.b.rcptErr(to); err != nil {
			return err
		}
	}
	s.cur.Rcpts = append(s.cur.Rcpts, to)
	if opts != nil {
		s.cur.Ropts = append(s.cur.Ropts, *opts)
	} else {
		s.cur.Ropts = append(s.cur.Ropts, gosmtp.RcptOptions{})
	}
	return nil
}
func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.Data = data
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, s.cur)
	s.b.mu.Unlock()
	return nil
}
func (s *session) LMTPData(r io.Reader, status gosmtp.StatusCollector) error {
	if err := s.Data(r); err != nil {
		return err
	}
	for _, to := range s.cur.Rcpts {
		var err error
		if s.b.lmtpStatus != nil {
			err = s.b.lmtpStatus(to)
		}
		status.SetStatus(to, err)
	}
	return nil
}

// serverConfig tunes a go-smtp test server.
type serverConfig struct {
	lmtp       bool
	unix       bool
	dsn        bool
	smtputf8   bool
	binarymime bool
	tls        *tls.Config
	maxSize    int64
	// strip lists EHLO keywords to hide from the client with a proxy, to
	// test the client against a server without them.
	strip []string
	// domain is the name in the greeting.
	domain string
}

// testServer is a running go-smtp server.
type testServer struct {
	addr       string // host:port, or the socket path
	port       int
	backend    *backend
	transcript *syncBuffer
}

func startServer(t *testing.T, cfg serverConfig) *testServer {
	t.Helper()
	be := &backend{}
	srv := gosmtp.NewServer(be)
	srv.Domain = cfg.domain
	if srv.Domain == "" {
		srv.Domain = "mx.test"
	}
	srv.LMTP = cfg.lmtp
	srv.EnableDSN = cfg.dsn
	srv.EnableSMTPUTF8 = cfg.smtputf8
	srv.EnableBINARYMIME = cfg.binarymime
	srv.TLSConfig = cfg.tls
	srv.MaxMessageBytes = cfg.maxSize
	srv.AllowInsecureAuth = true
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	ts := &testServer{backend: be, transcript: &syncBuffer{}}
	srv.Debug = ts.transcript
	var l net.Listener
	var err error
	if cfg.unix {
		path := filepath.Join(t.TempDir(), "lmtp.sock")
		l, err = net.Listen("unix", path)
		ts.addr = path
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	if cfg.unix {
		return ts
	}
	ts.addr = l.Addr().String()
	if len(cfg.strip) > 0 {
		ts.addr = startStripProxy(t, ts.addr, cfg.strip)
	}
	_, port, _ := net.SplitHostPort(ts.addr)
	ts.port, _ = strconv.Atoi(port)
	return ts
}

// startStripProxy forwards connections to upstream and removes the named
// keywords from the server's EHLO replies. After the client sends STARTTLS
// it copies bytes unchanged.
func startStripProxy(t *testing.T, upstream string, strip []string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	hidden := map[string]bool{}
	for _, k := range strip {
		hidden[k] = true
	}
	go func() {
		for {
			down, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				down.Close()
				continue
			}
			go proxyConn(down, up, hidden)
		}
	}()
	return l.Addr().String()
}

func proxyConn(down, up net.Conn, hidden map[string]bool) {
	defer down.Close()
	defer up.Close()
	var mu sync.Mutex
	raw := false // set once the client asked for STARTTLS
	go func() {
		// client to server: watch for STARTTLS.
		r := bufio.NewReader(down)
		for {
			mu.Lock()
			isRaw := raw
			mu.Unlock()
			if isRaw {
				io.Copy(up, r)
				up.Close()
				return
			}
			line, err := r.ReadString('\n')
			if err != nil {
				up.Close()
				return
			}
			if strings.EqualFold(strings.TrimSpace(line), "STARTTLS") {
				mu.Lock()
				raw = true
				mu.Unlock()
			}
			if _, err := up.Write([]byte(line)); err != nil {
				return
			}
		}
	}()
	r := bufio.NewReader(up)
	var pending []string
	for {
		mu.Lock()
		isRaw := raw
		mu.Unlock()
		if isRaw && len(pending) == 0 && r.Buffered() == 0 {
			// The 220 to STARTTLS has gone through; the rest is TLS.
			io.Copy(down, r)
			return
		}
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if len(line) >= 4 && line[:3] == "250" {
			keyword, _, _ := strings.Cut(strings.TrimSpace(line[4:]), " ")
			if len(pending) > 0 && hidden[strings.ToUpper(keyword)] {
				if line[3] == ' ' {
					// The last line was hidden: end the reply with the
					// one before it.
					last := pending[len(pending)-1]
					pending[len(pending)-1] = last[:3] + " " + last[4:]
					down.Write([]byte(strings.Join(pending, "")))
					pending = nil
				}
				continue
			}
			if line[3] == '-' {
				pending = append(pending, line)
				continue
			}
			if len(pending) > 0 {
				pending = append(pending, line)
				down.Write([]byte(strings.Join(pending, "")))
				pending = nil
				continue
			}
		}
		if _, err := down.Write([]byte(line)); err != nil {
			return
		}
	}
}

// scripted runs handler for each connection to a loopback listener and
// returns its address. The handler gets the connection with a line reader.
func scripted(t *testing.T, handler func(c *scriptConn)) (addr string, port int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(20 * time.Second))
				handler(&scriptConn{conn: conn, r: bufio.NewReader(conn)})
			}()
		}
	}()
	_, p, _ := net.SplitHostPort(l.Addr().String())
	port, _ = strconv.Atoi(p)
	return l.Addr().String(), port
}

// scriptConn is the server side of a scripted session.
type scriptConn struct {
	conn net.Conn
	r    *bufio.Reader
	seen []string
}

// send writes reply lines, each ended with CRLF.
func (c *scriptConn) send(lines ...string) {
	for _, l := range lines {
		fmt.Fprintf(c.conn, "%s\r\n", l)
	}
}

// line reads one command line; "" on error.
func (c *scriptConn) line() string {
	l, err := c.r.ReadString('\n')
	if err != nil {
		return ""
	}
	l = strings.TrimRight(l, "\r\n")
	c.seen = append(c.seen, l)
	return l
}

// expect reads a command and answers it with reply when it starts with
// prefix; it reports whether it did.
func (c *scriptConn) expect(prefix, reply string) bool {
	l := c.line()
	if !strings.HasPrefix(strings.ToUpper(l), prefix) {
		c.send("500 5.5.1 unexpected " + l)
		return false
	}
	if reply != "" {
		c.send(reply)
	}
	return true
}

// readData reads a dot-terminated body.
func (c *scriptConn) readData() (string, bool) {
	var b strings.Builder
	for {
		l, err := c.r.ReadString('\n')
		if err != nil {
			return b.String(), false
		}
		if l == ".\r\n" {
			return b.String(), true
		}
		b.WriteString(l)
	}
}

// hops makes a route's hops on loopback.
func hop(host string, addrs ...string) log.NextHop {
	return log.NextHop{Host: host, Addrs: addrs}
}

// newTestClient returns a client that dials only loopback.
func newTestClient(t *testing.T, opts Options) (*Client, *loopbackDialer) {
	d := &loopbackDialer{t: t}
	opts.Dialer = d
	if opts.HeloName == "" {
		opts.HeloName = "smx.test"
	}
	if opts.IOTimeout == 0 {
		opts.IOTimeout = 10 * time.Second
	}
	return New(opts), d
}

// bodyOf returns an Open function for text.
func bodyOf(text string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(text)), nil }
}

// envelope builds a simple envelope to rcpts.
func envelope(body string, rcpts ...string) *Envelope {
	env := &Envelope{Txn: "S0001", From: "sender@example.org", Size: int64(len(body)), Open: bodyOf(body)}
	for i, r := range rcpts {
		env.Rcpts = append(env.Rcpts, Recipient{Index: int32(i), Addr: r})
	}
	return env
}

// testCert makes a CA and a server certificate for name signed by it.
func testCert(t *testing.T, name string) (server tls.Certificate, roots *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "smx test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(ca)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, roots
}
