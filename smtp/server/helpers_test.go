package server

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/smx-mta/smx/content"
	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/log/ids"
	"github.com/smx-mta/smx/log/maillog"
	"github.com/smx-mta/smx/smtp"
	"github.com/smx-mta/smx/smtp/policy"
)

// stores are the real durable stores a test server writes to.
type stores struct {
	dir string
	cdb *content.Store
	log *log.Log
	seq *ids.ServerSequence
}

func openStores(t testing.TB, dir string) *stores {
	t.Helper()
	cdb, err := content.Open(filepath.Join(dir, "cdb"), content.Options{CompactInterval: -1, FreeSpace: func(string) (int64, error) { return 1 << 40, nil }})
	if err != nil {
		t.Fatal(err)
	}
	lg, err := log.Open(filepath.Join(dir, "log"), log.Options{})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := ids.OpenServerSequence(filepath.Join(dir, ids.FileName), ids.SequenceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return &stores{dir: dir, cdb: cdb, log: lg, seq: seq}
}

func (st *stores) close() {
	st.log.Close()
	st.cdb.Close()
}

// received returns every TxnReceived in the log.
func (st *stores) received(t testing.TB) map[string]*log.TxnReceived {
	t.Helper()
	out := map[string]*log.TxnReceived{}
	it := st.log.Iter(1)
	defer it.Close()
	for it.Next() {
		ev := it.Event()
		if tr, ok := ev.Payload.(*log.TxnReceived); ok {
			out[ev.Txn] = tr
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// body returns a stored body.
func (st *stores) body(t testing.TB, ref string) string {
	t.Helper()
	r, err := st.cdb.Open(ref)
	if err != nil {
		t.Fatalf("open body %s: %v", ref, err)
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lineSink collects mail log lines.
type lineSink struct {
	mu    sync.Mutex
	lines []string
}

func (s *lineSink) WriteLine(e maillog.Entry) error {
	s.mu.Lock()
	s.lines = append(s.lines, string(e.Fields))
	s.mu.Unlock()
	return nil
}

func (s *lineSink) all() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// testPolicy is a small policy: it rejects recipients in rejectRcpt,
// discards those in discardRcpt, rejects senders in rejectMail, and
// panics on a recipient named "panic@...".
type testPolicy struct {
	rejectConnect policy.Decision
	rejectMail    map[string]policy.Decision
	rejectRcpt    map[string]policy.Decision
	mu            sync.Mutex
	tlsCerts      []*policy.CertInfo
	auths         []string
}

// set changes the policy while sessions may be reading it.
func (p *testPolicy) set(f func(p *testPolicy)) {
	p.mu.Lock()
	f(p)
	p.mu.Unlock()
}

func (p *testPolicy) Connect(ctx context.Context, c policy.ClientInfo) (PolicySession, policy.Decision) {
	p.mu.Lock()
	d := p.rejectConnect
	p.mu.Unlock()
	if d.Action == policy.Continue {
		d.Action = policy.Accept
	}
	return &testPolicySession{p: p}, d
}

type testPolicySession struct{ p *testPolicy }

func (s *testPolicySession) ClientName() string    { return "" }
func (s *testPolicySession) ClientResolve() string { return "" }
func (s *testPolicySession) Quick() bool           { return false }
func (s *testPolicySession) Reset()                {}
func (s *testPolicySession) TLS(ctx context.Context, cert *policy.CertInfo) {
	s.p.mu.Lock()
	s.p.tlsCerts = append(s.p.tlsCerts, cert)
	s.p.mu.Unlock()
}
func (s *testPolicySession) Authenticated(ctx context.Context, mech, user string) {
	s.p.mu.Lock()
	s.p.auths = append(s.p.auths, mech+":"+user)
	s.p.mu.Unlock()
}
func (s *testPolicySession) Mail(ctx context.Context, sender string, args smtp.MailArgs) policy.Decision {
	s.p.mu.Lock()
	d, ok := s.p.rejectMail[sender]
	s.p.mu.Unlock()
	if ok {
		return d
	}
	return policy.Decision{Action: policy.Accept}
}
func (s *testPolicySession) Rcpt(ctx context.Context, rcpt string, args smtp.RcptArgs) policy.Decision {
	if strings.HasPrefix(rcpt, "panic@") {
		panic("test policy panics on " + rcpt)
	}
	s.p.mu.Lock()
	d, ok := s.p.rejectRcpt[rcpt]
	s.p.mu.Unlock()
	if ok {
		return d
	}
	return policy.Decision{Action: policy.Accept}
}

var unknownUser = policy.Decision{Action: policy.Reject, Code: 550, Enhanced: "5.1.1", Text: "User unknown"}

// testServer is a running server on loopback with real stores.
type testServer struct {
	t     testing.TB
	srv   *Server
	st    *stores
	addr  string
	log   *lineSink
	pol   *testPolicy
	done  chan error
	ln    net.Listener
	clock *clock
}

// clock is a clock tests can move; it starts at the real time so that
// the stores accept its times.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func startServer(t testing.TB, configure func(*Options)) *testServer {
	t.Helper()
	st := openStores(t, t.TempDir())
	return startServerOn(t, st, configure)
}

func startServerOn(t testing.TB, st *stores, configure func(*Options)) *testServer {
	t.Helper()
	ts := &testServer{t: t, st: st, log: &lineSink{}, pol: &testPolicy{}, done: make(chan error, 1)}
	opts := Options{
		Hostname:  "mx.test.example",
		IDs:       st.seq.Generator(0),
		Content:   NewContentStore(st.cdb),
		Log:       st.log,
		Policy:    ts.pol,
		MailLog:   maillog.New(maillog.Options{Sink: ts.log, Level: maillog.LevelDebug}),
		IOTimeout: 10 * time.Second,
	}
	if configure != nil {
		configure(&opts)
	}
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.srv, ts.ln, ts.addr = srv, ln, ln.Addr().String()
	go func() { ts.done <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-ts.done
		st.close()
	})
	return ts
}

// raw is a scripted SMTP conversation over a plain connection.
type raw struct {
	t    testing.TB
	conn net.Conn
	br   *bufio.Reader
	lr   *smtp.LineReader
}

func dialRaw(t testing.TB, addr string) *raw {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return newRaw(t, conn)
}

func newRaw(t testing.TB, conn net.Conn) *raw {
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	br := bufio.NewReader(conn)
	return &raw{t: t, conn: conn, br: br, lr: smtp.NewLineReader(br, 1<<16)}
}

// send writes s as it is (the caller writes the CRLFs).
func (r *raw) send(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.conn, s); err != nil {
		r.t.Fatalf("send %q: %v", s, err)
	}
}

// reply reads one reply.
func (r *raw) reply() smtp.Reply {
	r.t.Helper()
	rep, err := smtp.ReadReply(r.lr)
	if err != nil {
		r.t.Fatalf("read reply: %v", err)
	}
	return rep
}

// expect reads one reply and checks that it starts with prefix (code and
// maybe enhanced code and text).
func (r *raw) expect(prefix string) smtp.Reply {
	r.t.Helper()
	rep := r.reply()
	if !strings.HasPrefix(rep.String(), prefix) {
		r.t.Fatalf("got %q, want %q...", rep.String(), prefix)
	}
	return rep
}

// cmd sends one command line and expects a reply.
func (r *raw) cmd(line, prefix string) smtp.Reply {
	r.t.Helper()
	r.send(line + "\r\n")
	return r.expect(prefix)
}

// closed checks that the server closed the connection.
func (r *raw) closed() {
	r.t.Helper()
	if _, err := smtp.ReadReply(r.lr); err == nil {
		r.t.Fatal("connection still open")
	}
}

// hello dials, reads the greeting and says EHLO.
func (ts *testServer) hello() *raw {
	ts.t.Helper()
	r := dialRaw(ts.t, ts.addr)
	r.expect("220 ")
	r.cmd("EHLO client.example", "250")
	return r
}

// testCert makes a self-signed CA and a certificate it signed for
// name, written as PEM files in dir.
type testCA struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
}

func newTestCA(t testing.TB, cn string) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn, Organization: []string{"smx test"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return &testCA{cert: cert, key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue returns PEM certificate and key for cn, for a server or a client.
func (ca *testCA) issue(t testing.TB, cn string, client bool) (certPEM, keyPEM []byte) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	usage := x509.ExtKeyUsageServerAuth
	if client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn, Country: []string{"US"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{cn}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// serverTLS writes a server certificate (and optionally the CA for client
// certificates) and loads them with LoadTLSConfig.
func serverTLS(t testing.TB, ca *testCA, withClientCA bool) *tls.Config {
	t.Helper()
	dir := t.TempDir()
	c, k := ca.issue(t, "mx.test.example", false)
	files := TLSFiles{CertFile: filepath.Join(dir, "cert.pem"), KeyFile: filepath.Join(dir, "key.pem")}
	os.WriteFile(files.CertFile, c, 0o600)
	os.WriteFile(files.KeyFile, k, 0o600)
	if withClientCA {
		files.CACertFile = filepath.Join(dir, "ca.pem")
		os.WriteFile(files.CACertFile, ca.certPEM, 0o600)
	}
	cfg, err := LoadTLSConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func (ca *testCA) pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.cert)
	return p
}

func writeFile(t testing.TB, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
