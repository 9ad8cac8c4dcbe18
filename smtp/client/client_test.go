package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/smx-mta/smx/log"
	"github.com/stretchr/testify/require"
)

const sampleBody = "From: sender@example.org\r\nTo: a@example.com\r\nSubject: test\r\n\r\nline one\r\n.leading dot\r\n..two dots\r\nlast line\r\n"

func routeTo(ts *testServer) Route {
	return Route{Mailer: log.MailerESMTP, Hops: []log.NextHop{hop("mx.test", "127.0.0.1")}, Port: ts.port}
}

// TestDeliverGoSMTP delivers to the go-smtp server with and without each
// extension and checks what the server received.
func TestDeliverGoSMTP(t *testing.T) {
	cases := []struct {
		name      string
		cfg       serverConfig
		wantCmd   []string // commands the transcript must show
		wantNoCmd []string // and must not
	}{
		{name: "all", cfg: serverConfig{}, wantCmd: []string{"BDAT", "BODY=8BITMIME"}, wantNoCmd: []string{"DATA\r\n"}},
		{name: "no-pipelining", cfg: serverConfig{strip: []string{"PIPELINING"}}, wantCmd: []string{"BDAT"}},
		{name: "no-chunking", cfg: serverConfig{strip: []string{"CHUNKING"}}, wantCmd: []string{"DATA\r\n"}, wantNoCmd: []string{"BDAT"}},
		{name: "no-chunking-no-pipelining", cfg: serverConfig{strip: []string{"CHUNKING", "PIPELINING"}}, wantCmd: []string{"DATA\r\n"}},
		{name: "no-8bitmime", cfg: serverConfig{strip: []string{"8BITMIME"}}, wantNoCmd: []string{"BODY="}},
		{name: "no-size", cfg: serverConfig{strip: []string{"SIZE"}}, wantNoCmd: []string{"SIZE="}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts := startServer(t, tc.cfg)
			c, _ := newTestClient(t, Options{})
			env := envelope(sampleBody, "a@example.com", "b@example.com")
			env.Body = "8BITMIME"
			res := c.Deliver(context.Background(), routeTo(ts), env)
			require.Equal(t, StageDone, res.Stage, "reply %s", res.Reply)
			require.Len(t, res.Rcpts, 2)
			for _, r := range res.Rcpts {
				require.True(t, r.Delivered(), "%s: %s", r.Rcpt.Addr, r.Reply)
			}
			msgs := ts.backend.Messages()
			require.Len(t, msgs, 1)
			require.Equal(t, "sender@example.org", msgs[0].From)
			require.Equal(t, []string{"a@example.com", "b@example.com"}, msgs[0].Rcpts)
			require.Equal(t, sampleBody, string(msgs[0].Data))
			tr := ts.transcript.String()
			for _, w := range tc.wantCmd {
				require.Contains(t, tr, w)
			}
			for _, w := range tc.wantNoCmd {
				require.NotContains(t, tr, w)
			}
			require.Equal(t, "127.0.0.1", res.IP)
			require.Equal(t, ts.port, res.Port)
		})
	}
}

// TestPipeliningSendsOneBatch checks that with PIPELINING the server sees
// MAIL, the RCPTs and DATA before it answers any of them.
func TestPipeliningSendsOneBatch(t *testing.T) {
	got := make(chan []string, 1)
	_, port := scripted(t, func(c *scriptConn) {
		c.send("220 mx.test ESMTP")
		c.expect("EHLO", "250-mx.test\r\n250 PIPELINING")
		// Read four commands before answering any.
		var cmds []string
		for i := 0; i < 4; i++ {
			cmds = append(cmds, c.line())
		}
		got <- cmds
		c.send("250 2.1.0 ok", "250 2.1.5 ok", "550 5.1.1 no such user", "354 go ahead")
		if _, ok := c.readData(); ok {
			c.send("250 2.0.0 queued")
		}
		c.expect("QUIT", "221 bye")
	})
	c, _ := newTestClient(t, Options{})
	env := envelope("Subject: x\r\n\r\nhi\r\n", "a@example.com", "b@example.com")
	res := c.Deliver(context.Background(), Route{Mailer: log.MailerESMTP, Hops: []log.NextHop{hop("mx.test", "127.0.0.1")}, Port: port}, env)
	cmds := <-got
	require.Equal(t, []string{"MAIL FROM:<sender@example.org>", "RCPT TO:<a@example.com>", "RCPT TO:<b@example.com>", "DATA"}, cmds)
	require.True(t, res.Rcpts[0].Delivered())
	require.Equal(t, StageDot, res.Rcpts[0].Stage)
	require.Equal(t, 550, res.Rcpts[1].Reply.Code)
	require.Equal(t, "5.1.1", res.Rcpts[1].Reply.Enhanced)
	require.Equal(t, StageRcpt, res.Rcpts[1].Stage)
	require.True(t, res.Rcpts[1].Permanent())
}

// TestDSNParameters checks that NOTIFY, ORCPT, RET and ENVID reach a server
// that offers DSN, and are left out for one that does not.
func TestDSNParameters(t *testing.T) {
	env := func() *Envelope {
		e := envelope(sampleBody, "a@example.com", "b@example.com")
		e.RET = "HDRS"
		e.ENVID = "id+1=x"
		e.Rcpts[0].Notify = log.NotifySuccess | log.NotifyFailure
		e.Rcpts[0].ORCPT = "rfc822;Orig+A@example.com"
		e.Rcpts[1].Notify = log.NotifyNever
		return e
	}
	t.Run("offered", func(t *testing.T) {
		ts := startServer(t, serverConfig{dsn: true})
		c, _ := newTestClient(t, Options{})
		res := c.Deliver(context.Background(), routeTo(ts), env())
		require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
		require.True(t, res.DSN)
		m := ts.backend.Messages()[0]
		require.Equal(t, gosmtp.DSNReturnHeaders, m.Mail.Return)
		require.Equal(t, "id+1=x", m.Mail.EnvelopeID)
		require.ElementsMatch(t, []gosmtp.DSNNotify{gosmtp.DSNNotifySuccess, gosmtp.DSNNotifyFailure}, m.Ropts[0].Notify)
		require.Equal(t, gosmtp.DSNAddressTypeRFC822, m.Ropts[0].OriginalRecipientType)
		require.Equal(t, "Orig+A@example.com", m.Ropts[0].OriginalRecipient)
		require.Equal(t, []gosmtp.DSNNotify{gosmtp.DSNNotifyNever}, m.Ropts[1].Notify)
		require.Contains(t, ts.transcript.String(), "ORCPT=rfc822;Orig+2BA@example.com")
	})
	t.Run("not-offered", func(t *testing.T) {
		ts := startServer(t, serverConfig{})
		c, _ := newTestClient(t, Options{})
		res := c.Deliver(context.Background(), routeTo(ts), env())
		require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
		require.False(t, res.DSN)
		tr := ts.transcript.String()
		require.NotContains(t, tr, "NOTIFY=")
		require.NotContains(t, tr, "RET=")
	})
}

// TestSTARTTLS checks that STARTTLS is used whenever offered and that the
// verification result is recorded, good or bad.
func TestSTARTTLS(t *testing.T) {
	cert, roots := testCert(t, "mx.test")
	srvTLS := &tls.Config{Certificates: []tls.Certificate{cert}}
	t.Run("verified", func(t *testing.T) {
		ts := startServer(t, serverConfig{tls: srvTLS})
		c, _ := newTestClient(t, Options{TLS: &tls.Config{RootCAs: roots}})
		res := c.Deliver(context.Background(), routeTo(ts), envelope(sampleBody, "a@example.com"))
		require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
		require.NotNil(t, res.TLS)
		require.Equal(t, "OK", res.TLS.Verify)
		require.Equal(t, "TLSv1.3", res.TLS.Version)
		require.NotZero(t, res.TLS.Bits)
		require.Contains(t, res.TLS.PeerSubject, "mx.test")
		require.Contains(t, res.TLS.PeerIssuer, "smx test CA")
		require.Len(t, ts.backend.Messages(), 1)
	})
	t.Run("unverified", func(t *testing.T) {
		ts := startServer(t, serverConfig{tls: srvTLS})
		c, _ := newTestClient(t, Options{TLS: &tls.Config{}})
		res := c.Deliver(context.Background(), routeTo(ts), envelope(sampleBody, "a@example.com"))
		require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
		require.NotNil(t, res.TLS)
		require.Equal(t, "FAIL", res.TLS.Verify)
	})
	t.Run("wrong-name", func(t *testing.T) {
		ts := startServer(t, serverConfig{tls: srvTLS})
		c, _ := newTestClient(t, Options{TLS: &tls.Config{RootCAs: roots}})
		route := routeTo(ts)
		route.Hops[0].Host = "other.test"
		res := c.Deliver(context.Background(), route, envelope(sampleBody, "a@example.com"))
		require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
		require.Equal(t, "FAIL", res.TLS.Verify)
	})
	t.Run("stripped", func(t *testing.T) {
		ts := startServer(t, serverConfig{tls: srvTLS, strip: []string{"STARTTLS"}})
		c, _ := newTestClient(t, Options{TLS: &tls.Config{RootCAs: roots}})
		res := c.Deliver(context.Background(), routeTo(ts), envelope(sampleBody, "a@example.com"))
		require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
		require.Nil(t, res.TLS)
	})
	t.Run("handshake-fails-then-plain", func(t *testing.T) {
		var conns atomic.Int32
		_, port := scripted(t, func(c *scriptConn) {
			conn := conns.Add(1)
			c.send("220 mx.test ESMTP")
			c.expect("EHLO", "250-mx.test\r\n250 STARTTLS")
			if conn == 1 {
				c.expect("STARTTLS", "220 ready")
				c.conn.Write([]byte("this is not TLS\r\n"))
				return
			}
			c.expect("MAIL", "250 ok")
			c.expect("RCPT", "250 ok")
			c.expect("DATA", "354 go")
			if _, ok := c.readData(); ok {
				c.send("250 queued")
			}
			c.expect("QUIT", "221 bye")
		})
		c, _ := newTestClient(t, Options{})
		res := c.Deliver(context.Background(), Route{Mailer: log.MailerESMTP, Hops: []log.NextHop{hop("mx.test", "127.0.0.1")}, Port: port}, envelope(sampleBody, "a@example.com"))
		require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
		require.Len(t, res.Attempts, 1)
		require.Equal(t, StageStartTLS, res.Attempts[0].Stage)
		require.Nil(t, res.TLS)
	})
}

// TestSMTPUTF8 checks SMTPUTF8: passed on when needed and offered, a
// permanent failure when needed and not offered.
func TestSMTPUTF8(t *testing.T) {
	t.Run("offered", func(t *testing.T) {
		ts := startServer(t, serverConfig{smtputf8: true})
		c, _ := newTestClient(t, Options{})
		env := envelope(sampleBody, "jörg@example.com")
		res := c.Deliver(context.Background(), routeTo(ts), env)
		require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
		m := ts.backend.Messages()[0]
		require.True(t, m.Mail.UTF8)
		require.Equal(t, []string{"jörg@example.com"}, m.Rcpts)
	})
	t.Run("not-offered", func(t *testing.T) {
		ts := startServer(t, serverConfig{})
		c, _ := newTestClient(t, Options{})
		res := c.Deliver(context.Background(), routeTo(ts), envelope(sampleBody, "jörg@example.com", "plain@example.com"))
		require.Equal(t, StageMail, res.Stage)
		for _, r := range res.Rcpts {
			require.True(t, r.Permanent())
			require.Equal(t, "5.6.7", r.Reply.Enhanced)
		}
		require.NotContains(t, ts.transcript.String(), "MAIL FROM")
		require.Empty(t, ts.backend.Messages())
	})
	t.Run("utf8-header-not-offered", func(t *testing.T) {
		ts := startServer(t, serverConfig{})
		c, _ := newTestClient(t, Options{})
		env := envelope("Subject: Grüße\r\n\r\nbody\r\n", "plain@example.com")
		env.SMTPUTF8 = true
		res := c.Deliver(context.Background(), routeTo(ts), env)
		require.Equal(t, "5.6.7", res.Rcpts[0].Reply.Enhanced)
	})
	t.Run("ascii-requested-not-offered", func(t *testing.T) {
		ts := startServer(t, serverConfig{})
		c, _ := newTestClient(t, Options{})
		env := envelope(sampleBody, "plain@example.com")
		env.SMTPUTF8 = true
		res := c.Deliver(context.Background(), routeTo(ts), env)
		require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
		require.False(t, ts.backend.Messages()[0].Mail.UTF8)
	})
}

func TestSizeLimit(t *testing.T) {
	ts := startServer(t, serverConfig{maxSize: 50})
	c, _ := newTestClient(t, Options{})
	res := c.Deliver(context.Background(), routeTo(ts), envelope(sampleBody, "a@example.com"))
	require.Equal(t, 552, res.Rcpts[0].Reply.Code)
	require.Equal(t, "5.3.4", res.Rcpts[0].Reply.Enhanced)
	require.NotContains(t, ts.transcript.String(), "MAIL FROM")
}

func TestBinaryMIME(t *testing.T) {
	body := "Subject: bin\r\n\r\n\x00\x01\x02binary\r\n"
	t.Run("offered", func(t *testing.T) {
		ts := startServer(t, serverConfig{binarymime: true})
		c, _ := newTestClient(t, Options{})
		env := envelope(body, "a@example.com")
		env.Body = "BINARYMIME"
		res := c.Deliver(context.Background(), routeTo(ts), env)
		require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
		m := ts.backend.Messages()[0]
		require.Equal(t, gosmtp.BodyBinaryMIME, m.Mail.Body)
		require.Equal(t, body, string(m.Data))
	})
	t.Run("not-offered", func(t *testing.T) {
		ts := startServer(t, serverConfig{})
		c, _ := newTestClient(t, Options{})
		env := envelope(body, "a@example.com")
		env.Body = "BINARYMIME"
		res := c.Deliver(context.Background(), routeTo(ts), env)
		require.Equal(t, "5.6.3", res.Rcpts[0].Reply.Enhanced)
	})
}

// TestChunksAndLineEndings sends a body larger than one chunk with bare LF
// line endings over BDAT and over DATA and checks it arrives in CRLF form.
func TestChunksAndLineEndings(t *testing.T) {
	var b strings.Builder
	b.WriteString("Subject: big\n\n")
	for i := 0; b.Len() < 3000; i++ {
		b.WriteString(".dotted line of the body that goes on\n")
	}
	body := b.String()
	want := strings.ReplaceAll(body, "\n", "\r\n")
	for _, strip := range [][]string{nil, {"CHUNKING"}} {
		ts := startServer(t, serverConfig{strip: strip})
		c, _ := newTestClient(t, Options{ChunkSize: 1000})
		res := c.Deliver(context.Background(), routeTo(ts), envelope(body, "a@example.com"))
		require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
		require.Equal(t, want, string(ts.backend.Messages()[0].Data))
	}
}

// TestChunkBuffersReused sends messages of several sizes over one
// session with BDAT, whose buffers the session keeps between
// transactions: a short message after a long one, a message longer than
// its recorded size (sent in more chunks), and one larger than the
// buffers a session keeps. Each arrives whole.
func TestChunkBuffersReused(t *testing.T) {
	ts := startServer(t, serverConfig{})
	c, _ := newTestClient(t, Options{})
	s, _, err := c.Connect(context.Background(), routeTo(ts))
	require.NoError(t, err)
	require.True(t, s.Ext.Has("CHUNKING"))
	body := func(n int) string {
		var b strings.Builder
		b.WriteString("Subject: sized\r\n\r\n")
		for i := 0; b.Len() < n; i++ {
			fmt.Fprintf(&b, "line %d of a message of %d octets\r\n", i, n)
		}
		return b.String()
	}
	var want []string
	for _, tc := range []struct {
		size int   // of the body
		hint int64 // Envelope.Size; -1: the body's size
	}{
		{size: 5000, hint: -1},
		{size: 20000, hint: -1},
		{size: 300, hint: -1},
		{size: 30000, hint: 3000}, // longer than recorded
		{size: 200000, hint: -1},  // more than the session keeps
		{size: 600000, hint: 0},   // unknown size, several chunks of ChunkSize
		{size: 5000, hint: -1},
	} {
		b := body(tc.size)
		env := envelope(b, "a@example.com")
		if tc.hint >= 0 {
			env.Size = tc.hint
		}
		res := s.Send(context.Background(), env)
		require.Equal(t, StageDone, res.Stage, "%d octets: %s", tc.size, res.Reply)
		want = append(want, b)
	}
	require.NoError(t, s.Close())
	msgs := ts.backend.Messages()
	require.Len(t, msgs, len(want))
	for i, m := range msgs {
		require.Equal(t, want[i], string(m.Data), "message %d", i)
	}
	require.LessOrEqual(t, cap(s.chunkRaw), keptChunkSize)
}

func TestToCRLF(t *testing.T) {
	for _, tc := range []struct {
		in     []string
		want   string
		prevCR bool
	}{
		{in: []string{"a\nb\r\nc"}, want: "a\r\nb\r\nc"},
		{in: []string{"a\r", "\nb\n"}, want: "a\r\nb\r\n"},
		{in: []string{"a", "\n", "\n"}, want: "a\r\n\r\n"},
		{in: []string{"\n"}, want: "\r\n"},
	} {
		var out []byte
		prev := false
		for _, s := range tc.in {
			out, prev = toCRLF(out, []byte(s), prev)
		}
		require.Equal(t, tc.want, string(out), "%q", tc.in)
	}
}

// TestStageReplies runs scripted servers that answer 4xx or 5xx at each
// stage and checks the recipients' results.
func TestStageReplies(t *testing.T) {
	type step struct{ expect, reply string }
	cases := []struct {
		name      string
		script    []step
		data      string // reply after the body, "" for none
		stage     string
		code      int
		enhanced  string
		delivered bool
	}{
		{name: "mail-4xx", script: []step{{"MAIL", "451 4.3.0 try later"}}, stage: StageMail, code: 451, enhanced: "4.3.0"},
		{name: "mail-5xx", script: []step{{"MAIL", "553 5.1.8 bad sender"}}, stage: StageMail, code: 553, enhanced: "5.1.8"},
		{name: "rcpt-4xx", script: []step{{"MAIL", "250 ok"}, {"RCPT", "450 4.2.1 mailbox busy"}}, stage: StageRcpt, code: 450, enhanced: "4.2.1"},
		{name: "rcpt-5xx", script: []step{{"MAIL", "250 ok"}, {"RCPT", "550 5.1.1 unknown user"}}, stage: StageRcpt, code: 550, enhanced: "5.1.1"},
		{name: "data-4xx", script: []step{{"MAIL", "250 ok"}, {"RCPT", "250 ok"}, {"DATA", "451 4.3.0 no"}}, stage: StageData, code: 451, enhanced: "4.3.0"},
		{name: "data-5xx", script: []step{{"MAIL", "250 ok"}, {"RCPT", "250 ok"}, {"DATA", "554 5.5.0 no"}}, stage: StageData, code: 554, enhanced: "5.5.0"},
		{name: "dot-4xx", script: []step{{"MAIL", "250 ok"}, {"RCPT", "250 ok"}, {"DATA", "354 go"}}, data: "452 4.3.1 disk full", stage: StageDot, code: 452, enhanced: "4.3.1"},
		{name: "dot-5xx", script: []step{{"MAIL", "250 ok"}, {"RCPT", "250 ok"}, {"DATA", "354 go"}}, data: "554 5.7.1 spam", stage: StageDot, code: 554, enhanced: "5.7.1"},
		{name: "dot-multiline", script: []step{{"MAIL", "250 ok"}, {"RCPT", "250 ok"}, {"DATA", "354 go"}}, data: "250-2.0.0 queued\r\n250 2.0.0 as 12345", stage: StageDone, code: 250, enhanced: "2.0.0", delivered: true},
		{name: "no-enhanced", script: []step{{"MAIL", "250 ok"}, {"RCPT", "550 no such user"}}, stage: StageRcpt, code: 550},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, port := scripted(t, func(c *scriptConn) {
				c.send("220 mx.test ESMTP")
				c.expect("EHLO", "250-mx.test\r\n250 ENHANCEDSTATUSCODES")
				for _, s := range tc.script {
					if !c.expect(s.expect, s.reply) {
						return
					}
				}
				if tc.data != "" {
					if _, ok := c.readData(); ok {
						c.send(tc.data)
					}
				}
				c.expect("QUIT", "221 bye")
			})
			c, _ := newTestClient(t, Options{})
			res := c.Deliver(context.Background(), Route{Mailer: log.MailerESMTP, Hops: []log.NextHop{hop("mx.test", "127.0.0.1")}, Port: port}, envelope(sampleBody, "a@example.com"))
			r := res.Rcpts[0]
			require.Equal(t, tc.code, r.Reply.Code, "%s", r.Reply)
			require.Equal(t, tc.enhanced, r.Reply.Enhanced)
			require.Equal(t, tc.delivered, r.Delivered())
			require.False(t, r.Reply.Local)
			require.Equal(t, tc.stage, res.Stage)
		})
	}
}

// TestDropMidData drops the connection in the middle of the body: the
// recipient is deferred, never delivered or failed.
func TestDropMidData(t *testing.T) {
	_, port := scripted(t, func(c *scriptConn) {
		c.send("220 mx.test ESMTP")
		c.expect("EHLO", "250 mx.test")
		c.expect("MAIL", "250 ok")
		c.expect("RCPT", "250 ok")
		c.expect("DATA", "354 go")
		c.line() // one line of the body, then hang up
	})
	c, _ := newTestClient(t, Options{})
	res := c.Deliver(context.Background(), Route{Mailer: log.MailerESMTP, Hops: []log.NextHop{hop("mx.test", "127.0.0.1")}, Port: port}, envelope(sampleBody, "a@example.com"))
	r := res.Rcpts[0]
	require.True(t, r.Reply.Temporary(), "%s", r.Reply)
	require.True(t, r.Reply.Local)
	require.Equal(t, "4.4.2", r.Reply.Enhanced)
	require.Contains(t, []string{StageData, StageDot}, r.Stage)
}

// TestUnreadableBody checks that a body read error never ends the message
// with a dot.
func TestUnreadableBody(t *testing.T) {
	gotDot := make(chan bool, 1)
	_, port := scripted(t, func(c *scriptConn) {
		c.send("220 mx.test ESMTP")
		c.expect("EHLO", "250 mx.test")
		c.expect("MAIL", "250 ok")
		c.expect("RCPT", "250 ok")
		c.expect("DATA", "354 go")
		_, ok := c.readData()
		gotDot <- ok
	})
	c, _ := newTestClient(t, Options{})
	env := envelope("", "a@example.com")
	env.Open = func() (io.ReadCloser, error) {
		return io.NopCloser(io.MultiReader(strings.NewReader("Subject: x\r\n\r\npartial"), errReaderOf(errors.New("disk error")))), nil
	}
	res := c.Deliver(context.Background(), Route{Mailer: log.MailerESMTP, Hops: []log.NextHop{hop("mx.test", "127.0.0.1")}, Port: port}, env)
	require.Equal(t, "4.3.0", res.Rcpts[0].Reply.Enhanced)
	require.False(t, <-gotDot, "the server saw a final dot")
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }
func errReaderOf(err error) io.Reader            { return failingReader{err} }

// TestTimeout checks the per-command timeout against a server that stops
// answering.
func TestTimeout(t *testing.T) {
	_, port := scripted(t, func(c *scriptConn) {
		c.send("220 mx.test ESMTP")
		c.expect("EHLO", "250 mx.test")
		c.line() // MAIL, never answered
		c.line()
	})
	c, _ := newTestClient(t, Options{Timeouts: Timeouts{Mail: 200 * time.Millisecond}})
	res := c.Deliver(context.Background(), Route{Mailer: log.MailerESMTP, Hops: []log.NextHop{hop("mx.test", "127.0.0.1")}, Port: port}, envelope(sampleBody, "a@example.com"))
	r := res.Rcpts[0]
	require.Equal(t, StageMail, r.Stage)
	require.Equal(t, "4.4.2", r.Reply.Enhanced)
	require.Contains(t, r.Reply.Message(), "timed out")
}

// TestHostsInOrder checks that the next host is tried after a refused
// connection or a 4xx/5xx greeting, and that hosts are tried in order.
func TestHostsInOrder(t *testing.T) {
	good := startServer(t, serverConfig{})
	_, greet4 := scripted(t, func(c *scriptConn) { c.send("421 4.3.2 busy"); c.line() })
	_, greet5 := scripted(t, func(c *scriptConn) { c.send("554 5.3.2 no service"); c.line() })
	closed := closedPort(t)
	c, d := newTestClient(t, Options{})
	// One port per route: give each hop its own port with a dialer hook.
	route := Route{Mailer: log.MailerESMTP, Hops: []log.NextHop{
		hop("closed.test", "127.0.0.2"), hop("busy.test", "127.0.0.3"),
		hop("nosvc.test", "127.0.0.4"), hop("mx.test", "127.0.0.1"),
	}}
	ports := map[string]int{"127.0.0.2": closed, "127.0.0.3": greet4, "127.0.0.4": greet5, "127.0.0.1": good.port}
	c.opts.Dialer = portMapDialer{d, ports}
	res := c.Deliver(context.Background(), route, envelope(sampleBody, "a@example.com"))
	require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
	require.Equal(t, "mx.test", res.Host)
	require.Len(t, res.Attempts, 3)
	require.Equal(t, StageConnect, res.Attempts[0].Stage)
	require.Equal(t, "closed.test", res.Attempts[0].Host)
	require.Equal(t, StageGreeting, res.Attempts[1].Stage)
	require.Equal(t, 421, res.Attempts[1].Reply.Code)
	require.Equal(t, StageGreeting, res.Attempts[2].Stage)
	require.Equal(t, 554, res.Attempts[2].Reply.Code)

	// With only the bad hosts, the recipient is deferred.
	route.Hops = route.Hops[:3]
	res = c.Deliver(context.Background(), route, envelope(sampleBody, "a@example.com"))
	require.True(t, res.Rcpts[0].Reply.Temporary(), "%s", res.Rcpts[0].Reply)
	require.Len(t, res.Attempts, 3)
}

// portMapDialer sends each loopback address to its own port.
type portMapDialer struct {
	d     *loopbackDialer
	ports map[string]int
}

func (p portMapDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, _ := net.SplitHostPort(address)
	if port, ok := p.ports[host]; ok {
		address = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	return p.d.DialContext(ctx, network, address)
}

// closedPort returns a loopback port nobody listens on.
func closedPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// TestConnectOnlyTo checks that connect_only_to and remote_port send every
// connection to the configured address, whatever the resolver said.
func TestConnectOnlyTo(t *testing.T) {
	ts := startServer(t, serverConfig{})
	c, d := newTestClient(t, Options{ConnectOnlyTo: "127.0.0.1", RemotePort: ts.port})
	route := Route{Mailer: log.MailerESMTP, Hops: []log.NextHop{hop("mx.example.com", "192.0.2.10", "192.0.2.11")}}
	res := c.Deliver(context.Background(), route, envelope(sampleBody, "a@example.com"))
	require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
	require.Equal(t, []string{ts.addr}, d.Dials())
	require.Equal(t, "mx.example.com", res.Host)
}

// TestTalkToMyself checks that a server greeting with our own name is
// refused with a permanent error, unless talk_to_myself is set.
func TestTalkToMyself(t *testing.T) {
	ts := startServer(t, serverConfig{domain: "smx.test"})
	c, _ := newTestClient(t, Options{HeloName: "smx.test"})
	res := c.Deliver(context.Background(), routeTo(ts), envelope(sampleBody, "a@example.com"))
	require.True(t, res.Rcpts[0].Permanent(), "%s", res.Rcpts[0].Reply)
	require.Equal(t, "5.4.6", res.Rcpts[0].Reply.Enhanced)
	require.Empty(t, ts.backend.Messages())

	c, _ = newTestClient(t, Options{HeloName: "smx.test", TalkToMyself: true})
	res = c.Deliver(context.Background(), routeTo(ts), envelope(sampleBody, "a@example.com"))
	require.True(t, res.Rcpts[0].Delivered(), "%s", res.Rcpts[0].Reply)
}

// TestHELOFallback checks HELO after EHLO is refused.
func TestHELOFallback(t *testing.T) {
	_, port := scripted(t, func(c *scriptConn) {
		c.send("220 old.test SMTP")
		c.expect("EHLO", "502 5.5.2 what?")
		c.expect("HELO", "250 old.test")
		if !c.expect("MAIL FROM:<SENDER@EXAMPLE.ORG>", "250 ok") {
			return
		}
		c.expect("RCPT TO:<A@EXAMPLE.COM>", "250 ok")
		c.expect("DATA", "354 go")
		if _, ok := c.readData(); ok {
			c.send("250 ok")
		}
		c.expect("QUIT", "221 bye")
	})
	c, _ := newTestClient(t, Options{})
	env := envelope(sampleBody, "a@example.com")
	env.Body = "8BITMIME"
	env.RET = "FULL"
	res := c.Deliver(context.Background(), Route{Mailer: log.MailerESMTP, Hops: []log.NextHop{hop("old.test", "127.0.0.1")}, Port: port}, env)
	require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
}

// TestReuse runs several transactions over one session with RSET between
// them, including one left unfinished by refused recipients.
func TestReuse(t *testing.T) {
	ts := startServer(t, serverConfig{})
	ts.backend.rcptErr = func(to string) error {
		if strings.HasPrefix(to, "bad") {
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no"}
		}
		return nil
	}
	c, _ := newTestClient(t, Options{})
	s, attempts, err := c.Connect(context.Background(), routeTo(ts))
	require.NoError(t, err)
	require.Empty(t, attempts)
	res := s.Send(context.Background(), envelope(sampleBody, "a@example.com"))
	require.Equal(t, StageDone, res.Stage)
	require.NoError(t, s.Reset(context.Background()))
	res = s.Send(context.Background(), envelope(sampleBody, "bad1@example.com"))
	require.Equal(t, StageRcpt, res.Stage)
	require.True(t, s.Usable())
	// No Reset: the session itself clears the unfinished transaction.
	res = s.Send(context.Background(), envelope(sampleBody, "b@example.com", "bad2@example.com"))
	require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
	require.True(t, res.Rcpts[0].Delivered())
	require.Equal(t, 550, res.Rcpts[1].Reply.Code)
	require.Equal(t, 3, s.Transactions())
	require.NoError(t, s.Close())
	require.False(t, s.Usable())
	msgs := ts.backend.Messages()
	require.Len(t, msgs, 2)
	require.Equal(t, []string{"b@example.com"}, msgs[1].Rcpts)
}

// TestResetAndSendPipelined: a session from a cache is verified with RSET
// sent in one write with MAIL, RCPT and DATA when the server offers
// PIPELINING. The scripted server reads all four commands before it
// answers any: a client that waited for the reply to RSET would hang.
func TestResetAndSendPipelined(t *testing.T) {
	_, port := scripted(t, func(c *scriptConn) {
		c.send("220 mx.test ESMTP")
		c.expect("EHLO", "250-mx.test\r\n250-PIPELINING\r\n250 ENHANCEDSTATUSCODES")
		for _, cmd := range []string{"RSET", "MAIL FROM:<sender@example.org>", "RCPT TO:<a@example.com>", "DATA"} {
			if l := c.line(); !strings.HasPrefix(l, cmd) {
				c.send("500 5.5.1 expected " + cmd + ", got " + l)
				return
			}
		}
		c.send("250 2.0.0 reset", "250 2.1.0 ok", "250 2.1.5 ok", "354 go")
		if _, ok := c.readData(); ok {
			c.send("250 2.0.0 queued")
		}
		c.expect("QUIT", "221 bye")
	})
	c, _ := newTestClient(t, Options{})
	s, _, err := c.Connect(context.Background(), Route{Mailer: log.MailerESMTP, Hops: []log.NextHop{hop("mx.test", "127.0.0.1")}, Port: port})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := s.ResetAndSend(ctx, envelope(sampleBody, "a@example.com"))
	require.NoError(t, err)
	require.Equal(t, StageDone, res.Stage, "%s", res.Reply)
	require.True(t, res.Rcpts[0].Delivered())
	require.True(t, s.Usable())
	require.NoError(t, s.Close())
}

// TestResetAndSendStale: when the RSET that verifies a cached session
// fails (the server closed the connection, or answers 421), ResetAndSend
// returns an error and no result, the session is closed, and nothing was
// delivered; without PIPELINING the RSET takes a round trip of its own.
func TestResetAndSendStale(t *testing.T) {
	for _, tc := range []struct {
		name       string
		pipelining bool
		rset       func(c *scriptConn) // after EHLO
		wantErr    bool
	}{
		{name: "closed", pipelining: true, rset: func(c *scriptConn) {}, wantErr: true},
		{name: "421-pipelined", pipelining: true, rset: func(c *scriptConn) {
			c.expect("RSET", "")
			c.line()
			c.line()
			c.send("421 4.3.2 shutting down")
		}, wantErr: true},
		{name: "421-no-pipelining", rset: func(c *scriptConn) { c.expect("RSET", "421 4.3.2 shutting down") }, wantErr: true},
		{name: "550-no-pipelining", rset: func(c *scriptConn) { c.expect("RSET", "550 5.5.1 no") }, wantErr: true},
		{name: "ok-no-pipelining", rset: func(c *scriptConn) {
			c.expect("RSET", "250 ok")
			c.expect("MAIL", "250 ok")
			c.expect("RCPT", "250 ok")
			c.expect("DATA", "354 go")
			if _, ok := c.readData(); ok {
				c.send("250 2.0.0 queued")
			}
			c.expect("QUIT", "221 bye")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, port := scripted(t, func(c *scriptConn) {
				c.send("220 mx.test ESMTP")
				if tc.pipelining {
					c.expect("EHLO", "250-mx.test\r\n250 PIPELINING")
				} else {
					c.expect("EHLO", "250 mx.test")
				}
				tc.rset(c)
			})
			c, _ := newTestClient(t, Options{})
			s, _, err := c.Connect(context.Background(), Route{Mailer: log.MailerESMTP, Hops: []log.NextHop{hop("mx.test", "127.0.0.1")}, Port: port})
			require.NoError(t, err)
			res, err := s.ResetAndSend(context.Background(), envelope(sampleBody, "a@example.com"))
			if !tc.wantErr {
				require.NoError(t, err)
				require.True(t, res.Rcpts[0].Delivered(), "%s", res.Rcpts[0].Reply)
				require.NoError(t, s.Close())
				return
			}
			require.ErrorContains(t, err, "client: reset mx.test[127.0.0.1]")
			require.Nil(t, res)
			require.False(t, s.Usable())
			_, err = s.ResetAndSend(context.Background(), envelope(sampleBody, "a@example.com"))
			require.Error(t, err, "a closed session fails at once")
		})
	}
}

// TestLMTP delivers over LMTP, on a unix socket and over TCP, to a server
// that answers each recipient on its own after the data.
func TestLMTP(t *testing.T) {
	status := func(to string) error {
		switch {
		case strings.HasPrefix(to, "full"):
			return &gosmtp.SMTPError{Code: 452, EnhancedCode: gosmtp.EnhancedCode{4, 2, 2}, Message: "mailbox full"}
		case strings.HasPrefix(to, "gone"):
			return &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "no such mailbox"}
		}
		return nil
	}
	check := func(t *testing.T, res *Result, ts *testServer) {
		t.Helper()
		require.Len(t, res.Rcpts, 4)
		require.True(t, res.Rcpts[0].Delivered(), "%s", res.Rcpts[0].Reply)
		require.Equal(t, StageDot, res.Rcpts[0].Stage)
		require.Equal(t, 452, res.Rcpts[1].Reply.Code)
		require.Equal(t, "4.2.2", res.Rcpts[1].Reply.Enhanced)
		require.Equal(t, StageDot, res.Rcpts[1].Stage)
		require.Equal(t, 550, res.Rcpts[2].Reply.Code)
		require.True(t, res.Rcpts[3].Delivered())
		require.Contains(t, ts.transcript.String(), "LHLO smx.test")
	}
	rcpts := []string{"u1@local", "full@local", "gone@local", "u2@local"}
	t.Run("unix", func(t *testing.T) {
		ts := startServer(t, serverConfig{lmtp: true, unix: true})
		ts.backend.lmtpStatus = status
		c, _ := newTestClient(t, Options{})
		res := c.Deliver(context.Background(), Route{Mailer: log.MailerLMTP, Socket: ts.addr}, envelope(sampleBody, rcpts...))
		check(t, res, ts)
		require.Equal(t, ts.addr, res.IP)
	})
	t.Run("tcp", func(t *testing.T) {
		ts := startServer(t, serverConfig{lmtp: true})
		ts.backend.lmtpStatus = status
		c, _ := newTestClient(t, Options{})
		res := c.Deliver(context.Background(), Route{Mailer: log.MailerLMTP, Hops: []log.NextHop{hop("localhost", "127.0.0.1")}, Port: ts.port}, envelope(sampleBody, rcpts...))
		check(t, res, ts)
	})
	t.Run("tcp-data", func(t *testing.T) {
		ts := startServer(t, serverConfig{lmtp: true, strip: []string{"CHUNKING"}})
		ts.backend.lmtpStatus = status
		c, _ := newTestClient(t, Options{})
		res := c.Deliver(context.Background(), Route{Mailer: log.MailerLMTP, Hops: []log.NextHop{hop("localhost", "127.0.0.1")}, Port: ts.port}, envelope(sampleBody, rcpts...))
		check(t, res, ts)
		require.NotContains(t, ts.transcript.String(), "BDAT")
	})
	t.Run("default-socket", func(t *testing.T) {
		ts := startServer(t, serverConfig{lmtp: true, unix: true})
		c, _ := newTestClient(t, Options{LMTPSocket: ts.addr})
		res := c.Deliver(context.Background(), Route{Mailer: log.MailerLMTP}, envelope(sampleBody, "u1@local"))
		require.True(t, res.Rcpts[0].Delivered(), "%s", res.Rcpts[0].Reply)
	})
}

// TestCancel checks that cancelling the context ends a blocked
// transaction at once.
func TestCancel(t *testing.T) {
	_, port := scripted(t, func(c *scriptConn) {
		c.send("220 mx.test ESMTP")
		c.expect("EHLO", "250 mx.test")
		c.line()
		c.line()
	})
	c, _ := newTestClient(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	s, _, err := c.Connect(ctx, Route{Mailer: log.MailerESMTP, Hops: []log.NextHop{hop("mx.test", "127.0.0.1")}, Port: port})
	require.NoError(t, err)
	done := make(chan *Result)
	go func() { done <- s.Send(ctx, envelope(sampleBody, "a@example.com")) }()
	cancel()
	select {
	case res := <-done:
		require.True(t, res.Rcpts[0].Reply.Temporary())
	case <-time.After(10 * time.Second):
		t.Fatal("Send did not return after cancel")
	}
}
