package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	gosasl "github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"
	"golang.org/x/crypto/bcrypt"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/smtp"
	"github.com/smx-mta/smx/smtp/policy"
)

// TestGoSMTPClient sends mail with the go-smtp client and checks what the
// event log and the CDB hold afterwards.
func TestGoSMTPClient(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.EightBitMIME = true })
	c, err := gosmtp.Dial(ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.example"); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{"PIPELINING", "SIZE", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN", "SMTPUTF8", "CHUNKING"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("extension %s not offered", ext)
		}
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Error("STARTTLS offered without TLS configured")
	}
	err = c.Mail("sender@client.example", &gosmtp.MailOptions{Body: gosmtp.Body8BitMIME, Size: 100, Return: gosmtp.DSNReturnHeaders, EnvelopeID: "env 1"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("a@dest.example", &gosmtp.RcptOptions{Notify: []gosmtp.DSNNotify{gosmtp.DSNNotifySuccess, gosmtp.DSNNotifyFailure},
		OriginalRecipientType: gosmtp.DSNAddressTypeRFC822, OriginalRecipient: "orig@dest.example"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@dest.example", nil); err != nil {
		t.Fatal(err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatal(err)
	}
	msg := "Subject: hello\r\nMessage-ID: <m1@client.example>\r\n\r\n.leading dot\r\nbody\r\n"
	fmt.Fprint(w, msg)
	resp, err := w.CloseWithResponse()
	if err != nil {
		t.Fatal(err)
	}
	c.Quit()
	_, id, _ := strings.Cut(resp.StatusText, "id=")
	if !strings.HasPrefix(id, "S") || len(id) != 19 {
		t.Fatalf("250 reply %q carries no ss_ta", resp.StatusText)
	}
	got := ts.st.received(t)
	tr := got[id]
	if tr == nil {
		t.Fatalf("no TxnReceived for %s in %v", id, got)
	}
	if tr.Sender != "sender@client.example" || len(tr.Rcpts) != 2 || tr.RET != "HDRS" || tr.ENVID != "env 1" ||
		tr.Body != "8BITMIME" || tr.Size != 100 || tr.HELO != "client.example" || tr.Protocol != "ESMTP" ||
		tr.MessageID != "<m1@client.example>" || tr.Hops != 0 || tr.ClientIP != "127.0.0.1" || tr.Listener != "MTA" {
		t.Errorf("TxnReceived = %+v", tr)
	}
	if r := tr.Rcpts[0]; r.Addr != "a@dest.example" || r.Notify != log.NotifySuccess|log.NotifyFailure || !strings.EqualFold(r.ORCPT, "rfc822;orig@dest.example") {
		t.Errorf("recipient 0 = %+v", r)
	}
	body := ts.st.body(t, tr.Content)
	if !strings.HasPrefix(body, "Received: from client.example ([127.0.0.1])\r\n\tby mx.test.example (smx) with ESMTP\r\n\tid "+id+"; ") {
		t.Errorf("body starts %q", body[:min(len(body), 200)])
	}
	if !strings.HasSuffix(body, "\r\n"+msg) || int64(len(body)) != tr.ContentSize {
		t.Errorf("body %q (size %d, event says %d)", body, len(body), tr.ContentSize)
	}
	logged := ts.log.all()
	for _, want := range []string{"ss_sess=S", "client_ipv4=127.0.0.1", "ss_ta=" + id + ", mail=<sender@client.example>",
		"rcpt=<a@dest.example>, idx=0, stat=0", "rcpt=<b@dest.example>, idx=1, stat=0", "msgid=<m1@client.example>, size="} {
		if !strings.Contains(logged, want) {
			t.Errorf("mail log lacks %q:\n%s", want, logged)
		}
	}
}

// TestHeaderlessMessage checks the blank line after the Received: header
// for a message that does not start with a header field (seed 004).
func TestHeaderlessMessage(t *testing.T) {
	ts := startServer(t, nil)
	for _, tt := range []struct{ data, stored string }{
		{"just a body\r\n", "\r\njust a body\r\n"},
		{" indented: x\r\n", "\r\n indented: x\r\n"},
		{"From me\r\nx\r\n", "\r\nFrom me\r\nx\r\n"},
		{"\r\nbody after empty header\r\n", "\r\nbody after empty header\r\n"},
		{"Subject: s\r\n\r\nb\r\n", "Subject: s\r\n\r\nb\r\n"},
		{"", ""},
	} {
		r := ts.hello()
		r.cmd("MAIL FROM:<s@x.example>", "250")
		r.cmd("RCPT TO:<r@y.example>", "250")
		r.cmd("DATA", "354")
		rep := r.cmd(tt.data+".", "250 2.0.0")
		_, id, _ := strings.Cut(rep.Text(), "id=")
		tr := ts.st.received(t)[id]
		body := ts.st.body(t, tr.Content)
		_, after, _ := strings.Cut(body, "; ")
		_, after, _ = strings.Cut(after, "\r\n")
		if after != tt.stored {
			t.Errorf("data %q stored after Received: as %q, want %q", tt.data, after, tt.stored)
		}
	}
}

func TestPipelining(t *testing.T) {
	ts := startServer(t, func(o *Options) { ts := o; _ = ts })
	ts.pol.rejectRcpt = map[string]policy.Decision{"bad@y.example": unknownUser}
	r := ts.hello()
	r.send("MAIL FROM:<s@x.example>\r\nRCPT TO:<a@y.example>\r\nRCPT TO:<bad@y.example>\r\nRCPT TO:<b@y.example>\r\nDATA\r\n")
	r.expect("250 2.1.0")
	r.expect("250 2.1.5")
	r.expect("550 5.1.1 User unknown")
	r.expect("250 2.1.5")
	r.expect("354")
	r.send("Subject: p\r\n\r\nx\r\n.\r\nMAIL FROM:<s2@x.example>\r\nRCPT TO:<c@y.example>\r\nBDAT 5 LAST\r\nabc\r\nQUIT\r\n")
	r.expect("250 2.0.0")
	r.expect("250 2.1.0")
	r.expect("250 2.1.5")
	r.expect("250 2.0.0")
	r.expect("221")
	got := ts.st.received(t)
	if len(got) != 2 {
		t.Fatalf("%d messages, want 2", len(got))
	}
	for _, tr := range got {
		if tr.Sender == "s@x.example" && len(tr.Rcpts) != 2 {
			t.Errorf("first message has recipients %v", tr.Rcpts)
		}
	}
}

// TestSmuggling sends the SMTP smuggling patterns: none may end the data,
// every one ends the session with 421, and nothing is stored.
func TestSmuggling(t *testing.T) {
	ts := startServer(t, nil)
	for _, data := range []string{
		"a\n.\nMAIL FROM:<evil@x.example>\r\nRCPT TO:<v@y.example>\r\nDATA\r\nsmuggled\r\n.\r\n",
		"a\r\n.\nMAIL FROM:<evil@x.example>\r\n.\r\n",
		"a\n.\r\nMAIL FROM:<evil@x.example>\r\n.\r\n",
		"a\r\n.\rMAIL FROM:<evil@x.example>\r\n.\r\n",
		"a\rb\r\n.\r\n",
	} {
		r := ts.hello()
		r.cmd("MAIL FROM:<s@x.example>", "250")
		r.cmd("RCPT TO:<r@y.example>", "250")
		r.cmd("DATA", "354")
		r.send(data)
		r.expect("421 4.5.0")
		r.closed()
	}
	if n := len(ts.st.received(t)); n != 0 {
		t.Errorf("%d messages stored", n)
	}
	// Bare LF in a command line ends the session too.
	r := dialRaw(t, ts.addr)
	r.expect("220")
	r.send("EHLO x\n")
	r.expect("421 4.5.0")
	r.closed()
	// And in BDAT.
	r = ts.hello()
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<r@y.example>", "250")
	r.send("BDAT 4 LAST\r\na\nb.")
	r.expect("421 4.5.0")
	r.closed()
}

// TestStartTLSInjection pipelines a command behind STARTTLS in plaintext:
// it must be dropped, not run inside the TLS session.
func TestStartTLSInjection(t *testing.T) {
	ca := newTestCA(t, "test CA")
	ts := startServer(t, func(o *Options) { o.TLS = serverTLS(t, ca, false) })
	r := ts.hello()
	r.send("STARTTLS\r\nMAIL FROM:<injected@x.example>\r\n")
	r.expect("220 2.0.0")
	tc := tls.Client(r.conn, &tls.Config{RootCAs: ca.pool(), ServerName: "mx.test.example"})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	r = newRaw(t, tc)
	// The session starts over: no EHLO yet, no transaction.
	r.cmd("RCPT TO:<x@y.example>", "503 5.5.1")
	rep := r.cmd("EHLO client.example", "250")
	if strings.Contains(rep.Text(), "STARTTLS") {
		t.Error("STARTTLS offered again inside TLS")
	}
	r.cmd("MAIL FROM:<s@x.example>", "250 2.1.0")
	r.cmd("RCPT TO:<r@y.example>", "250")
	r.cmd("DATA", "354")
	rep = r.cmd("Subject: t\r\n\r\nx\r\n.", "250")
	_, id, _ := strings.Cut(rep.Text(), "id=")
	tr := ts.st.received(t)[id]
	if tr.Protocol != "ESMTPS" || tr.TLS == nil || tr.TLS.Version != "TLSv1.3" || tr.TLS.Verify != "NOT" || tr.TLS.Bits == 0 {
		t.Errorf("TLS facts %+v %+v", tr.Protocol, tr.TLS)
	}
	body := ts.st.body(t, tr.Content)
	if !strings.Contains(body, "with ESMTPS\r\n\t(TLS=TLSv1.3, cipher=TLS_") || !strings.Contains(body, "verify=NOT)\r\n\tid "+id) {
		t.Errorf("Received: header %q", body[:strings.Index(body, "Subject")])
	}
	if !strings.Contains(ts.log.all(), "where=starttls, discarded=") {
		t.Error("discarded plaintext not logged")
	}
}

// TestClientCertificates checks the seed's verify results OK and FAIL,
// and NO for a client without certificate.
func TestClientCertificates(t *testing.T) {
	ca := newTestCA(t, "test CA")
	other := newTestCA(t, "other CA")
	ts := startServer(t, func(o *Options) { o.TLS = serverTLS(t, ca, true) })
	for _, tt := range []struct {
		issuer *testCA
		verify string
	}{{ca, "OK"}, {other, "FAIL"}, {nil, "NO"}} {
		cfg := &tls.Config{RootCAs: ca.pool(), ServerName: "mx.test.example"}
		if tt.issuer != nil {
			c, k := tt.issuer.issue(t, "client.example", true)
			pair, err := tls.X509KeyPair(c, k)
			if err != nil {
				t.Fatal(err)
			}
			// Send it whatever CAs the server names.
			cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }
		}
		c, err := gosmtp.DialStartTLS(ts.addr, cfg)
		if err != nil {
			t.Fatalf("%s: %v", tt.verify, err)
		}
		if err := c.SendMail("s@x.example", []string{"r@y.example"}, strings.NewReader("Subject: c\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
		c.Quit()
		found := false
		for _, tr := range ts.st.received(t) {
			if tr.TLS != nil && tr.TLS.Verify == tt.verify {
				found = true
				if tt.issuer != nil && !strings.Contains(tr.TLS.PeerSubject, "/CN=client.example") {
					t.Errorf("peer subject %q", tr.TLS.PeerSubject)
				}
			}
		}
		if !found {
			t.Errorf("no message with verify=%s", tt.verify)
		}
	}
	ts.pol.mu.Lock()
	defer ts.pol.mu.Unlock()
	if len(ts.pol.tlsCerts) != 3 || ts.pol.tlsCerts[0] == nil || !ts.pol.tlsCerts[0].Verified || ts.pol.tlsCerts[1].Verified || ts.pol.tlsCerts[2] != nil {
		t.Errorf("policy saw certificates %+v", ts.pol.tlsCerts)
	}
}

func TestImplicitTLS(t *testing.T) {
	ca := newTestCA(t, "test CA")
	ts := startServer(t, func(o *Options) { o.TLS = serverTLS(t, ca, false); o.ImplicitTLS = true; o.Name = "SMTPS" })
	c, err := gosmtp.DialTLS(ts.addr, &tls.Config{RootCAs: ca.pool(), ServerName: "mx.test.example"})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendMail("s@x.example", []string{"r@y.example"}, strings.NewReader("Subject: i\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	c.Quit()
	for _, tr := range ts.st.received(t) {
		if tr.Protocol != "ESMTPS" || tr.Listener != "SMTPS" {
			t.Errorf("protocol %s listener %s", tr.Protocol, tr.Listener)
		}
	}
}

type fixedCreds map[string]string

func (f fixedCreds) Authenticate(u, p string) bool { pw, ok := f[u]; return ok && pw == p }

// TestAuth runs AUTH PLAIN and LOGIN after STARTTLS on an MSA that
// requires AUTH, and checks the refusals.
func TestAuth(t *testing.T) {
	ca := newTestCA(t, "test CA")
	ts := startServer(t, func(o *Options) {
		o.TLS = serverTLS(t, ca, false)
		o.Auth = fixedCreds{"alice": "secret"}
		o.RequireAuth = true
		o.Name = "MSA"
	})
	// Without TLS AUTH is not offered and MAIL needs AUTH.
	r := ts.hello()
	r.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==", "538 5.7.11")
	r.cmd("MAIL FROM:<alice@x.example>", "530 5.7.0")

	cfg := &tls.Config{RootCAs: ca.pool(), ServerName: "mx.test.example"}
	for _, mech := range []gosasl.Client{gosasl.NewPlainClient("", "alice", "secret"), gosasl.NewLoginClient("alice", "secret")} {
		c, err := gosmtp.DialStartTLS(ts.addr, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if ok, params := c.Extension("AUTH"); !ok || params != "PLAIN LOGIN" {
			t.Errorf("AUTH extension %v %q", ok, params)
		}
		if err := c.Auth(mech); err != nil {
			t.Fatal(err)
		}
		if err := c.SendMail("alice@x.example", []string{"r@y.example"}, strings.NewReader("Subject: a\r\n\r\nx\r\n")); err != nil {
			t.Fatal(err)
		}
		c.Quit()
	}
	c, err := gosmtp.DialStartTLS(ts.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Auth(gosasl.NewPlainClient("", "alice", "wrong"))
	var se *gosmtp.SMTPError
	if !errors.As(err, &se) || se.Code != 535 {
		t.Errorf("wrong password: %v", err)
	}
	c.Close()
	n := 0
	for _, tr := range ts.st.received(t) {
		if tr.Auth == nil || tr.Auth.User != "alice" || tr.Protocol != "ESMTPSA" {
			t.Errorf("auth facts %+v %s", tr.Auth, tr.Protocol)
		}
		n++
	}
	if n != 2 {
		t.Errorf("%d messages", n)
	}
	// LOGIN by hand with a cancel.
	r = dialRaw(t, ts.addr)
	r.expect("220")
	r.cmd("EHLO c", "250")
	r.cmd("STARTTLS", "220")
	tc := tls.Client(r.conn, cfg)
	r = newRaw(t, tc)
	r.cmd("EHLO c", "250")
	r.cmd("AUTH LOGIN", "334 VXNlcm5hbWU6")
	r.cmd("*", "501 5.0.0")
	r.cmd("AUTH CRAM-MD5", "504 5.5.4")
	r.cmd("AUTH LOGIN YWxpY2U=", "334 UGFzc3dvcmQ6")
	r.cmd("c2VjcmV0", "235 2.7.0")
	r.cmd("AUTH PLAIN", "503 5.5.1")
}

// TestCredentialMap checks the bcrypt map file.
func TestCredentialMap(t *testing.T) {
	dir := t.TempDir()
	good := dir + "/auth"
	hash, err := bcrypt.GenerateFromPassword([]byte("secret"), bcrypt.MinCost+1)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, good, "# users\nalice "+string(hash)+"\n\n")
	m, err := LoadCredentialMap(good)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Authenticate("alice", "secret") || m.Authenticate("alice", "Secret") || m.Authenticate("bob", "secret") {
		t.Error("Authenticate")
	}
	// An unknown user is checked against a hash as costly as the users'.
	if cost, _ := bcrypt.Cost(m.dummy); cost != bcrypt.MinCost+1 {
		t.Errorf("unknown users cost %d, the users %d", cost, bcrypt.MinCost+1)
	}
	bad := dir + "/bad"
	writeFile(t, bad, "alice "+string(hash)+"\n  bob plaintext\n")
	if _, err := LoadCredentialMap(bad); err == nil || !strings.Contains(err.Error(), bad+":2:7:") {
		t.Errorf("error %v does not name file:line:column", err)
	}
}

func TestSMTPUTF8(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.EightBitMIME = true })
	r := ts.hello()
	r.cmd("MAIL FROM:<jöe@bücher.example>", "553 5.6.7")
	r.cmd("MAIL FROM:<jöe@bücher.example> SMTPUTF8 BODY=8BITMIME", "250 2.1.0")
	r.cmd("RCPT TO:<ünï@例え.example>", "250 2.1.5")
	r.cmd("DATA", "354")
	rep := r.cmd("Subject: ü\r\n\r\nñ\r\n.", "250")
	_, id, _ := strings.Cut(rep.Text(), "id=")
	tr := ts.st.received(t)[id]
	if !tr.SMTPUTF8 || tr.Sender != "jöe@bücher.example" || tr.Rcpts[0].Addr != "ünï@例え.example" {
		t.Errorf("%+v", tr)
	}
	// Without 8BITMIME there is no SMTPUTF8.
	ts2 := startServer(t, nil)
	r = ts2.hello()
	r.cmd("MAIL FROM:<a@b.example> SMTPUTF8", "555 5.5.4")
}

func TestBDAT(t *testing.T) {
	ts := startServer(t, nil)
	r := ts.hello()
	r.send("BDAT 3\r\nabc")
	r.expect("503 5.5.1") // no transaction: chunk skipped
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<r@y.example>", "250")
	r.send("BDAT 12\r\nSubject: b\r\n")
	r.expect("250 2.0.0 12 octets")
	r.cmd("BDAT 0", "250 2.0.0 0 octets")
	r.cmd("DATA", "503 5.5.1")
	r.send("BDAT 7 LAST\r\n\r\nbody\r")
	r.expect("421 4.5.0") // ends in a bare CR
	r.closed()
	r = ts.hello()
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<r@y.example>", "250")
	r.send("BDAT 12\r\nSubject: b\r\nBDAT 8 LAST\r\n\r\nbody\r\n")
	r.expect("250 2.0.0 12")
	rep := r.expect("250 2.0.0 Message accepted")
	_, id, _ := strings.Cut(rep.Text(), "id=")
	tr := ts.st.received(t)[id]
	if body := ts.st.body(t, tr.Content); !strings.HasSuffix(body, "\r\nSubject: b\r\n\r\nbody\r\n") {
		t.Errorf("body %q", body)
	}
	r.cmd("BDAT x", "421 4.5.0")
}

// TestLimits drives every limit to its end.
func TestLimits(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.MaxBadCommandsPerSession = 3
		o.MaxBadCommandsPerTransaction = 2
		o.MaxNOOPCommandsBetweenTransactions = 2
		o.MaxNOOPCommandsInTransaction = 3
		o.MaxInvalidAddressesPerSession = 3
		o.MaxInvalidAddressesPerTransaction = 2
		o.MaxRecipientsPerTransaction = 2
		o.MaxRecipientsPerSession = 3
		o.MaxTransactions = 2
		o.MaxMessageSize = 200
		o.MaxHops = 2
		o.MaxLineLength = 100
		o.MaxCommandLineLength = 100
		o.MaxHeaderSize = 150
	})
	ts.pol.rejectRcpt = map[string]policy.Decision{"u@y.example": unknownUser}

	t.Run("bad commands per session", func(t *testing.T) {
		r := ts.hello()
		r.cmd("FOO", "500 5.5.1")
		r.cmd("MAIL FROM: <x@y.example>", "501 5.5.2")
		r.cmd("RCPT TO:<x@y.example>", "503 5.5.1")
		r.cmd("BAR", "421 4.7.0")
		r.closed()
	})
	t.Run("bad commands per transaction", func(t *testing.T) {
		r := ts.hello()
		r.cmd("MAIL FROM:<s@x.example>", "250")
		r.cmd("FOO", "500")
		r.cmd("MAIL FROM:<s@x.example>", "503")
		r.cmd("FOO", "421 4.7.0")
		r.closed()
	})
	t.Run("nop between transactions", func(t *testing.T) {
		r := ts.hello()
		r.cmd("NOOP", "250 2.0.0")
		r.cmd("RSET", "250 2.0.0")
		r.cmd("HELP", "421 4.7.0")
		r.closed()
	})
	t.Run("nop in transaction", func(t *testing.T) {
		r := ts.hello()
		r.cmd("MAIL FROM:<s@x.example>", "250")
		r.cmd("NOOP", "250")
		r.cmd("VRFY x", "252 2.5.2")
		r.cmd("NOOP", "250")
		r.cmd("NOOP", "421 4.7.0")
		r.closed()
	})
	t.Run("invalid addresses", func(t *testing.T) {
		r := ts.hello()
		r.cmd("MAIL FROM:<s@x.example>", "250")
		r.cmd("RCPT TO:<u@y.example>", "550 5.1.1")
		r.cmd("RCPT TO:<not an address>", "501 5.1.3")
		r.cmd("RCPT TO:<u@y.example>", "421 4.7.0")
		r.closed()
	})
	t.Run("recipients", func(t *testing.T) {
		r := ts.hello()
		r.cmd("MAIL FROM:<s@x.example>", "250")
		r.cmd("RCPT TO:<a@y.example>", "250")
		r.cmd("RCPT TO:<b@y.example>", "250")
		r.cmd("RCPT TO:<c@y.example>", "452 4.5.3")
		r.cmd("DATA", "354")
		r.cmd("x\r\n.", "250")
		r.cmd("MAIL FROM:<s@x.example>", "250")
		r.cmd("RCPT TO:<d@y.example>", "250")
		r.cmd("RCPT TO:<e@y.example>", "452 4.5.3 Too many recipients in this session")
		r.cmd("DATA", "354")
		r.cmd("x\r\n.", "250")
		r.cmd("MAIL FROM:<s@x.example>", "421 4.7.0") // max_transactions
		r.closed()
	})
	t.Run("size", func(t *testing.T) {
		r := ts.hello()
		r.cmd("MAIL FROM:<s@x.example> SIZE=201", "552 5.3.4")
		r.cmd("MAIL FROM:<s@x.example> SIZE=100", "250")
		r.cmd("RCPT TO:<a@y.example>", "250")
		r.cmd("DATA", "354")
		r.cmd(strings.Repeat("0123456789abcdefghi\r\n", 11)+".", "552 5.3.4")
		// The session goes on.
		r.cmd("MAIL FROM:<s@x.example>", "250")
	})
	t.Run("hops", func(t *testing.T) {
		r := ts.hello()
		r.cmd("MAIL FROM:<s@x.example>", "250")
		r.cmd("RCPT TO:<a@y.example>", "250")
		r.cmd("DATA", "354")
		r.cmd("Received: a\r\nReceived: b\r\nReceived: c\r\n\r\nx\r\n.", "554 5.4.6")
	})
	t.Run("header size", func(t *testing.T) {
		r := ts.hello()
		r.cmd("MAIL FROM:<s@x.example>", "250")
		r.cmd("RCPT TO:<a@y.example>", "250")
		r.cmd("DATA", "354")
		r.cmd(strings.Repeat("X-A: 0123456789\r\n", 10)+"\r\nx\r\n.", "552 5.6.0")
	})
	t.Run("line length", func(t *testing.T) {
		r := ts.hello()
		r.cmd("NOOP "+strings.Repeat("x", 100), "500 5.5.2 Line too long")
		r.cmd("MAIL FROM:<s@x.example>", "250")
		r.cmd("RCPT TO:<a@y.example>", "250")
		r.cmd("DATA", "354")
		r.cmd("Subject: x\r\n\r\n"+strings.Repeat("y", 99)+"\r\n.", "554 5.6.0")
	})
	if n := len(ts.st.received(t)); n != 2 {
		t.Errorf("%d messages stored, want 2", n)
	}
}

func TestTimeoutAndEarlyTalker(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.IOTimeout = 300 * time.Millisecond })
	r := ts.hello()
	r.expect("421 4.4.2") // nothing sent: the server gives up
	r.closed()

	ts = startServer(t, func(o *Options) { o.GreetPause = 10 * time.Second })
	r = dialRaw(t, ts.addr)
	r.send("EHLO early.example\r\n")
	r.expect("554 5.5.0")
	r.closed()

	ts = startServer(t, func(o *Options) {
		o.GreetPause = 10 * time.Second
		o.AllowDataBeforeGreeting = true
		o.GreetPause = time.Millisecond
	})
	r = dialRaw(t, ts.addr)
	r.send("EHLO early.example\r\n")
	r.expect("220")
	r.expect("250")
}

func TestTransactionStuffing(t *testing.T) {
	ts := startServer(t, nil)
	r := dialRaw(t, ts.addr)
	r.expect("220")
	r.send("EHLO c.example\r\nMAIL FROM:<s@x.example>\r\n")
	r.expect("554 5.5.0")
	r.closed()
	r = ts.hello()
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<r@y.example>", "250")
	r.send("DATA\r\nSubject: x\r\n")
	r.expect("554 5.5.0")
	r.closed()
}

func TestHELOAndEHLOChecks(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.StrictEHLOChecks = true; o.CheckEHLO = true; o.RequireEHLOBeforeMAIL = true })
	r := dialRaw(t, ts.addr)
	r.expect("220")
	r.cmd("MAIL FROM:<s@x.example>", "503 5.5.1")
	r.cmd("EHLO", "501 5.5.4")
	r.cmd("EHLO bad_name!", "501 5.5.2")
	r.cmd("EHLO mx.test.example", "250") // from 127.0.0.1: exempt
	r.cmd("HELO [127.0.0.1]", "250 mx.test.example")
	r.cmd("MAIL FROM:<s@x.example> SIZE=10", "555 5.5.4") // no extensions after HELO
	// From another loopback address the self-impersonation check applies.
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
	conn, err := d.Dial("tcp", ts.addr)
	if err != nil {
		t.Skipf("cannot bind 127.0.0.2: %v", err)
	}
	r = newRaw(t, conn)
	defer conn.Close()
	r.expect("220")
	r.cmd("EHLO MX.TEST.EXAMPLE", "550 5.7.1 Identity theft")
	r.cmd("EHLO ["+strings.Split(ts.addr, ":")[0]+"]", "550 5.7.1")
	r.cmd("EHLO c.example", "250")
	if !strings.Contains(ts.log.all(), "status=Identity Theft") {
		t.Error("identity theft not logged")
	}
}

func TestPolicyAnswers(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.SoftBounce = true })
	ts.pol.rejectMail = map[string]policy.Decision{"spam@x.example": {Action: policy.Reject, Code: 550, Enhanced: "5.7.1", Text: "Go away"}}
	ts.pol.rejectRcpt = map[string]policy.Decision{
		"u@y.example":    unknownUser,
		"drop@y.example": {Action: policy.Discard},
	}
	r := ts.hello()
	r.cmd("MAIL FROM:<spam@x.example>", "450 4.7.1 Go away") // soft_bounce
	r.cmd("MAIL FROM:<s@x.example> SIZE=99999999999", "452 4.3.4 Message size exceeds")
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<u@y.example>", "450 4.1.1 User unknown")
	r.cmd("RCPT TO:<drop@y.example>", "250 2.1.5")
	r.cmd("DATA", "354")
	r.cmd("x\r\n.", "250 2.0.0") // discarded: accepted, not stored
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<drop@y.example>", "250")
	r.cmd("RCPT TO:<keep@y.example>", "250")
	r.cmd("DATA", "354")
	r.cmd("x\r\n.", "250 2.0.0")
	got := ts.st.received(t)
	if len(got) != 1 {
		t.Fatalf("%d messages", len(got))
	}
	for _, tr := range got {
		if len(tr.Rcpts) != 1 || tr.Rcpts[0].Addr != "keep@y.example" {
			t.Errorf("recipients %+v", tr.Rcpts)
		}
	}
	// A connection rejected with 5xx answers 503 until QUIT.
	ts.pol.set(func(p *testPolicy) {
		p.rejectConnect = policy.Decision{Action: policy.Reject, Code: 554, Enhanced: "5.7.1", Text: "You are blocked"}
	})
	r = dialRaw(t, ts.addr)
	r.expect("554 5.7.1 You are blocked")
	r.cmd("EHLO c", "503 5.7.1")
	r.cmd("QUIT", "221")
	ts.pol.set(func(p *testPolicy) {
		p.rejectConnect = policy.Decision{Action: policy.Reject, Code: 451, Enhanced: "4.7.1", Text: "Later"}
	})
	r = dialRaw(t, ts.addr)
	r.expect("421 4.7.1 Later")
	r.closed()
}

type flushRecorder struct {
	mu   sync.Mutex
	args []string
}

func (f *flushRecorder) Flush(_ context.Context, arg string) error {
	f.mu.Lock()
	f.args = append(f.args, arg)
	f.mu.Unlock()
	return nil
}

func TestETRNVRFYHelp(t *testing.T) {
	fr := &flushRecorder{}
	ts := startServer(t, func(o *Options) { o.Flush = fr })
	r := ts.hello()
	r.cmd("ETRN example.org", "250 2.0.0 Queuing for node example.org started")
	r.cmd("ETRN @example.org", "250 2.0.0")
	r.cmd("ETRN", "501 5.5.4")
	r.cmd("VRFY postmaster", "252 2.5.2")
	r.cmd("EXPN list", "502 5.5.1")
	r.cmd("HELP", "214 2.0.0")
	r.cmd("QUIT", "221 2.0.0")
	if strings.Join(fr.args, ",") != "example.org,@example.org" {
		t.Errorf("flush got %v", fr.args)
	}
	ts2 := startServer(t, nil)
	r = ts2.hello()
	r.cmd("ETRN example.org", "502 5.5.1")
}

func TestPanicEndsOnlyItsSession(t *testing.T) {
	ts := startServer(t, nil)
	other := ts.hello()
	other.cmd("MAIL FROM:<s@x.example>", "250")
	r := ts.hello()
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.send("RCPT TO:<panic@y.example>\r\n")
	r.closed()
	other.cmd("RCPT TO:<r@y.example>", "250")
	other.cmd("DATA", "354")
	other.cmd("x\r\n.", "250")
	ts.hello().cmd("QUIT", "221")
	if !strings.Contains(ts.log.all(), "where=panic") {
		t.Error("panic not in the mail log")
	}
}

func TestLoadFeedback(t *testing.T) {
	var mu sync.Mutex
	level := LoadNormal
	set := func(l Load) { mu.Lock(); level = l; mu.Unlock() }
	ts := startServer(t, func(o *Options) {
		o.Load = LoadFunc(func() Load { mu.Lock(); defer mu.Unlock(); return level })
		o.SlowGreetingDelay = time.Millisecond
	})
	r := ts.hello()
	set(LoadSlow)
	ts.hello().cmd("QUIT", "221") // slowed, still served
	set(LoadRefuse)
	r.cmd("MAIL FROM:<s@x.example>", "452 4.3.1")
	r2 := dialRaw(t, ts.addr)
	r2.expect("421 4.3.2")
	r2.closed()
	set(LoadNormal)
	r.cmd("MAIL FROM:<s@x.example>", "250")
}

func TestConnectionControl(t *testing.T) {
	clk := &clock{t: time.Now()}
	cl := NewConnLimiter(ConnLimiterOptions{
		Default:   ConnLimits{Rate: 3, Max: 2},
		Overrides: []ConnOverride{{Net: netip.MustParsePrefix("127.0.0.0/8"), Rate: 5}, {Net: netip.MustParsePrefix("127.0.0.9/32"), Max: 1}},
		Now:       clk.now,
	})
	a := netip.MustParseAddr("127.0.0.1")
	if l := cl.Limits(a); l.Rate != 5 || l.Max != 2 {
		t.Errorf("limits %+v", l)
	}
	if l := cl.Limits(netip.MustParseAddr("127.0.0.9")); l.Rate != 5 || l.Max != 1 {
		t.Errorf("limits %+v", l)
	}
	if l := cl.Limits(netip.MustParseAddr("192.0.2.1")); l.Rate != 3 || l.Max != 2 {
		t.Errorf("limits %+v", l)
	}
	ts := startServer(t, func(o *Options) { o.Conns = cl })
	var open []*raw
	for range 2 {
		r := dialRaw(t, ts.addr)
		r.expect("220")
		open = append(open, r)
	}
	r := dialRaw(t, ts.addr)
	r.expect("421 4.7.0")
	r.closed()
	for _, o := range open {
		o.cmd("QUIT", "221")
		o.closed()
	}
	// Two connections admitted so far; the rate of 5 per 60s allows
	// three more.
	waitOpen(t, cl, a, 0)
	for range 3 {
		r := dialRaw(t, ts.addr)
		r.expect("220")
		r.cmd("QUIT", "221")
		r.closed()
		waitOpen(t, cl, a, 0)
	}
	r = dialRaw(t, ts.addr)
	r.expect("421 4.7.0 mx.test.example Too many connections")
	r.closed()
	clk.advance(12 * time.Second) // one token back
	r = dialRaw(t, ts.addr)
	r.expect("220")
}

// waitOpen waits until the limiter counts n open connections from a.
func waitOpen(t *testing.T, cl *ConnLimiter, a netip.Addr, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if got, _ := cl.Open(a); got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("open connections from %s never reached %d", a, n)
		}
		runtime.Gosched()
	}
}

func TestMaxSessions(t *testing.T) {
	ts := startServer(t, func(o *Options) { o.MaxSessions = 1 })
	r := dialRaw(t, ts.addr)
	r.expect("220")
	r2 := dialRaw(t, ts.addr)
	r2.expect("421 4.3.2")
}

var greylisted = policy.Decision{Action: policy.Reject, Code: 421, Enhanced: "4.7.0", Text: "Greylisted, try again later", Greylisted: true}

// TestGreylistedSessionEnds checks the seed's greylisting replies: the
// session ends with the 421 at RCPT, or with
// DelayGreylistingErrorUntilDATA at DATA or the first BDAT.
func TestGreylistedSessionEnds(t *testing.T) {
	ts := startServer(t, nil)
	ts.pol.rejectRcpt = map[string]policy.Decision{"grey@y.example": greylisted}
	r := ts.hello()
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<ok@y.example>", "250")
	r.cmd("RCPT TO:<grey@y.example>", "421 4.7.0 Greylisted, try again later")
	r.closed()

	ts = startServer(t, func(o *Options) { o.DelayGreylistingErrorUntilDATA = true })
	ts.pol.rejectRcpt = map[string]policy.Decision{"grey@y.example": greylisted}
	r = ts.hello()
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<grey@y.example>", "250 2.1.5")
	r.cmd("RCPT TO:<ok@y.example>", "250 2.1.5")
	r.cmd("DATA", "421 4.7.0 Greylisted")
	r.closed()
	r = ts.hello()
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<grey@y.example>", "250 2.1.5")
	r.send("BDAT 3 LAST\r\nabc")
	r.expect("421 4.7.0 Greylisted")
	r.closed()
	// RSET forgets the greylisted recipient with its transaction.
	r = ts.hello()
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<grey@y.example>", "250 2.1.5")
	r.cmd("RSET", "250")
	sendOne(r, "250 2.0.0")
	if n := len(ts.st.received(t)); n != 1 {
		t.Errorf("%d messages stored, want 1", n)
	}
}

// TestExtensionsOffered checks the EHLO keywords against the options that
// withhold them, and that a withheld extension's command and parameters
// are refused.
func TestExtensionsOffered(t *testing.T) {
	keywords := func(rep smtp.Reply) string { return strings.Join(rep.Lines[1:], " ") }
	ts := startServer(t, func(o *Options) { o.EightBitMIME = true })
	r := dialRaw(t, ts.addr)
	r.expect("220")
	if got := keywords(r.cmd("EHLO c.example", "250")); got != "PIPELINING SIZE 10485760 8BITMIME SMTPUTF8 ENHANCEDSTATUSCODES DSN CHUNKING HELP" {
		t.Errorf("EHLO offers %q", got)
	}
	ts = startServer(t, func(o *Options) {
		o.NoPipelining = true
		o.NoChunking = true
		o.NoSMTPUTF8 = true
		o.EightBitMIME = true
	})
	r = dialRaw(t, ts.addr)
	r.expect("220")
	if got := keywords(r.cmd("EHLO c.example", "250")); got != "SIZE 10485760 8BITMIME ENHANCEDSTATUSCODES DSN HELP" {
		t.Errorf("EHLO offers %q", got)
	}
	r.cmd("MAIL FROM:<s@x.example> SMTPUTF8", "555 5.5.4")
	r.cmd("MAIL FROM:<s@x.example> BODY=8BITMIME", "250")
	r.cmd("RCPT TO:<r@y.example>", "250")
	r.send("BDAT 5 LAST\r\nQUIT\r")
	r.expect("502 5.5.1 BDAT not available") // the chunk was read, not run
	r.cmd("NOOP", "250")
	// Without 8BITMIME there is no SMTPUTF8 (RFC 6531 3.1).
	ts = startServer(t, nil)
	r = dialRaw(t, ts.addr)
	r.expect("220")
	if got := keywords(r.cmd("EHLO c.example", "250")); strings.Contains(got, "8BITMIME") || strings.Contains(got, "SMTPUTF8") {
		t.Errorf("EHLO offers %q", got)
	}
}

// TestMoreLimits drives the limits TestLimits leaves shared:
// max_invalid_addresses_per_session on its own, across transactions; a
// BDAT message over max_message_size; the DATA transfer timeout; and the
// global connection cap.
func TestMoreLimits(t *testing.T) {
	ts := startServer(t, func(o *Options) {
		o.MaxInvalidAddressesPerSession = 2
		o.MaxInvalidAddressesPerTransaction = 5
		o.MaxMessageSize = 100
	})
	ts.pol.rejectRcpt = map[string]policy.Decision{"u@y.example": unknownUser}
	r := ts.hello()
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<u@y.example>", "550 5.1.1")
	r.cmd("RSET", "250")
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<u@y.example>", "550 5.1.1")
	r.cmd("RCPT TO:<u@y.example>", "421 4.7.0 mx.test.example Too many invalid recipients")
	r.closed()

	r = ts.hello()
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<a@y.example>", "250")
	chunk := strings.Repeat("0123456789abcdefghi\r\n", 4)
	r.send(fmt.Sprintf("BDAT %d\r\n%s", len(chunk), chunk))
	r.expect("250 2.0.0")
	r.send(fmt.Sprintf("BDAT %d LAST\r\n%s", len(chunk), chunk))
	r.expect("552 5.3.4")
	r.cmd("MAIL FROM:<s@x.example>", "250") // the session goes on

	ts = startServer(t, func(o *Options) { o.DataTimeout = 200 * time.Millisecond })
	r = ts.hello()
	r.cmd("MAIL FROM:<s@x.example>", "250")
	r.cmd("RCPT TO:<a@y.example>", "250")
	r.cmd("DATA", "354")
	r.send("Subject: slow\r\n") // and nothing more
	r.expect("421 4.4.2 mx.test.example Timeout reading message data")
	r.closed()

	cl := NewConnLimiter(ConnLimiterOptions{MaxTotal: 1})
	ts = startServer(t, func(o *Options) { o.Conns = cl })
	r = dialRaw(t, ts.addr)
	r.expect("220")
	r2 := dialRaw(t, ts.addr)
	r2.expect("421 4.3.2 mx.test.example Too many sessions")
	r2.closed()
	if n := len(ts.st.received(t)); n != 0 {
		t.Errorf("%d messages stored", n)
	}
}

// TestLoadTLSConfig reads the tls section's files: CA certificates from
// CAcert_directory (PEM files, other files skipped) make the server ask for
// client certificates; broken files are errors that name them.
func TestLoadTLSConfig(t *testing.T) {
	ca := newTestCA(t, "dir CA")
	dir := t.TempDir()
	c, k := ca.issue(t, "mx.test.example", false)
	files := TLSFiles{CertFile: dir + "/cert.pem", KeyFile: dir + "/key.pem"}
	writeFile(t, files.CertFile, string(c))
	writeFile(t, files.KeyFile, string(k))
	cfg, err := LoadTLSConfig(files)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.NoClientCert || cfg.ClientCAs != nil {
		t.Error("client certificates requested without CA certificates")
	}
	cadir := t.TempDir()
	writeFile(t, cadir+"/1a2b3c4d.0", string(ca.certPEM))
	writeFile(t, cadir+"/README", "not a certificate\n")
	files.CACertDirectory = cadir
	if cfg, err = LoadTLSConfig(files); err != nil {
		t.Fatal(err)
	}
	if cfg.ClientAuth != tls.RequestClientCert || cfg.ClientCAs == nil {
		t.Fatalf("CAcert_directory: client auth %v", cfg.ClientAuth)
	}
	// A client certificate of that CA verifies: verify=OK.
	ts := startServer(t, func(o *Options) { o.TLS = cfg })
	cc, ck := ca.issue(t, "client.example", true)
	pair, err := tls.X509KeyPair(cc, ck)
	if err != nil {
		t.Fatal(err)
	}
	client, err := gosmtp.DialStartTLS(ts.addr, &tls.Config{RootCAs: ca.pool(), ServerName: "mx.test.example",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil }})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.SendMail("s@x.example", []string{"r@y.example"}, strings.NewReader("Subject: d\r\n\r\nx\r\n")); err != nil {
		t.Fatal(err)
	}
	client.Quit()
	for _, tr := range ts.st.received(t) {
		if tr.TLS == nil || tr.TLS.Verify != "OK" {
			t.Errorf("TLS facts %+v", tr.TLS)
		}
	}

	files.CACertFile = dir + "/cert.pem.missing"
	if _, err := LoadTLSConfig(files); err == nil || !strings.Contains(err.Error(), "cert.pem.missing") {
		t.Errorf("missing CAcert_file: %v", err)
	}
	files.CACertFile = cadir + "/README"
	if _, err := LoadTLSConfig(files); err == nil || !strings.Contains(err.Error(), "README: no PEM certificate") {
		t.Errorf("CAcert_file without PEM: %v", err)
	}
	if _, err := LoadTLSConfig(TLSFiles{CertFile: files.CertFile}); err == nil {
		t.Error("no key_file accepted")
	}
}
