package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
)

// received is one message the test server accepted.
type received struct {
	from string
	to   []string
	data []byte
}

// server is a go-smtp server on loopback that records what it accepts and
// refuses every refuseEvery-th MAIL (0: none).
type server struct {
	addr        string
	refuseEvery int

	mu    sync.Mutex
	msgs  []received
	conns int
	mails int
}

func newServer(t *testing.T, refuseEvery int) *server {
	t.Helper()
	s := &server{refuseEvery: refuseEvery}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) {
		s.mu.Lock()
		s.conns++
		s.mu.Unlock()
		return &session{s: s}, nil
	}))
	srv.Domain = "server.test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.addr = ln.Addr().String()
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

type session struct {
	s    *server
	from string
	to   []string
}

func (ss *session) Reset()        { ss.from, ss.to = "", nil }
func (ss *session) Logout() error { return nil }
func (ss *session) Mail(from string, _ *gosmtp.MailOptions) error {
	ss.s.mu.Lock()
	ss.s.mails++
	n := ss.s.mails
	ss.s.mu.Unlock()
	if ss.s.refuseEvery > 0 && n%ss.s.refuseEvery == 0 {
		return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "every fourth sender waits"}
	}
	ss.from = from
	return nil
}
func (ss *session) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	ss.to = append(ss.to, to)
	return nil
}
func (ss *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, received{from: ss.from, to: ss.to, data: b})
	ss.s.mu.Unlock()
	return nil
}

func header(data []byte, name string) string {
	head, _, _ := bytes.Cut(data, []byte("\r\n\r\n"))
	for _, line := range strings.Split(string(head), "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func runLoad(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

var reportLine = regexp.MustCompile(`^loadgen: messages=(\d+) accepted=(\d+) failed=(\d+) recipients=(\d+) bytes=(\d+) sessions=(\d+) ` +
	`elapsed=\d+\.\d{3}s rate=\d+\.\d/s dot_p50=\d+\.\dms dot_p99=\d+\.\dms dot_max=\d+\.\dms\n$`)

func TestSendsEveryMessageOnce(t *testing.T) {
	s := newServer(t, 0)
	code, out, errOut := runLoad(t, "-server", s.addr, "-sessions", "4", "-messages", "40", "-size", "2KB", "-rcpts", "3")
	require.Equal(t, 0, code, errOut)
	m := reportLine.FindStringSubmatch(out)
	require.NotNil(t, m, out)
	require.Equal(t, []string{"40", "40", "0", "120"}, m[1:5])
	require.Equal(t, "4", m[6])

	s.mu.Lock()
	defer s.mu.Unlock()
	require.Len(t, s.msgs, 40)
	require.Equal(t, 40, s.conns, "-per-conn 1: a connection per message")
	seen := map[string]bool{}
	var total int
	for _, msg := range s.msgs {
		seq := header(msg.data, "X-Loadgen-Seq")
		require.False(t, seen[seq], "message %s sent twice", seq)
		seen[seq] = true
		require.Equal(t, "load@loadgen.test", msg.from)
		require.Equal(t, []string{"rcpt0@dest.test", "rcpt1@dest.test", "rcpt2@dest.test"}, msg.to)
		require.Equal(t, "<load@loadgen.test>", header(msg.data, "From"))
		require.Contains(t, header(msg.data, "Message-ID"), "@loadgen.test>")
		require.InDelta(t, 2048, len(msg.data), 2, "the size asked for, give or take the final CRLF")
		total += len(msg.data)
	}
	for i := range 40 {
		require.True(t, seen[strconv.Itoa(i)], "message %d", i)
	}
	bytesSent, _ := strconv.Atoi(m[5])
	require.InDelta(t, total, bytesSent, 2*40)
}

func TestPerConnection(t *testing.T) {
	s := newServer(t, 0)
	code, _, errOut := runLoad(t, "-server", s.addr, "-sessions", "1", "-messages", "12", "-per-conn", "5", "-size", "500")
	require.Equal(t, 0, code, errOut)
	require.Equal(t, 3, s.conns, "5 + 5 + 2 messages")

	s = newServer(t, 0)
	code, _, errOut = runLoad(t, "-server", s.addr, "-sessions", "2", "-messages", "12", "-per-conn", "0", "-size", "500")
	require.Equal(t, 0, code, errOut)
	require.LessOrEqual(t, s.conns, 2, "one connection per session")
}

func TestRefusalsCountAsFailed(t *testing.T) {
	s := newServer(t, 4)
	code, out, errOut := runLoad(t, "-server", s.addr, "-sessions", "1", "-messages", "20", "-per-conn", "0", "-json")
	require.Equal(t, 1, code, "not every message was accepted")
	var r report
	require.NoError(t, json.Unmarshal([]byte(out), &r), out)
	require.Equal(t, 20, r.Messages)
	require.Equal(t, 5, r.Failed)
	require.Equal(t, 15, r.Accepted)
	require.Greater(t, r.DotP99, 0.0)
	require.GreaterOrEqual(t, r.DotMax, r.DotP99)
	require.GreaterOrEqual(t, r.DotP99, r.DotP50)
	require.Equal(t, 1, strings.Count(errOut, "every fourth sender waits"), "each distinct failure is shown once:\n%s", errOut)
	require.Equal(t, 1, s.conns, "a refusal does not end the session")
	require.Len(t, s.msgs, 15)
}

func TestNothingListening(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	code, out, errOut := runLoad(t, "-server", addr, "-messages", "3")
	require.Equal(t, 1, code)
	require.Contains(t, out, "messages=3 accepted=0 failed=3 ")
	require.Contains(t, errOut, "connection refused")
}

func TestTimeoutCutsTheRunShort(t *testing.T) {
	// A server that never greets: the run ends with its timeout.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	code, out, _ := runLoad(t, "-server", ln.Addr().String(), "-messages", "2", "-timeout", "100ms")
	require.Equal(t, 1, code)
	require.Contains(t, out, "accepted=0 failed=2 ")
	require.Less(t, time.Since(start), 30*time.Second)
}

func TestBadCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-server", "192.0.2.1:25"}, "loopback addresses only"},
		{[]string{"-server", "mx.example.org:25"}, "loopback addresses only"},
		{[]string{"-size", "5 parsecs"}, "expected a size"},
		{[]string{"-sessions", "0"}, "-sessions must be at least 1"},
		{[]string{"-rcpts", "0"}, "-rcpts must be at least 1"},
		{[]string{"-per-conn", "-1"}, "-per-conn must not be negative"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		code, _, errOut := runLoad(t, tc.args...)
		require.Equal(t, 2, code, tc.args)
		require.Contains(t, errOut, tc.want)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int{"5120": 5120, "5KB": 5120, "5kb": 5120, "1MB": 1 << 20, "100B": 100, "0": 0} {
		got, err := parseSize(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, in := range []string{"", "KB", "-1", "2GB", "1.5KB"} {
		_, err := parseSize(in)
		require.Error(t, err, in)
	}
}

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	require.Equal(t, 50*time.Millisecond, percentile(ds, 0.50))
	require.Equal(t, 99*time.Millisecond, percentile(ds, 0.99))
	require.Equal(t, 100*time.Millisecond, percentile(ds, 1))
	require.Equal(t, time.Millisecond, percentile(ds[:1], 0.99))
	require.Zero(t, percentile(nil, 0.5))
}

func TestNewBody(t *testing.T) {
	for _, n := range []int{0, 1, 2, 77, 78, 79, 5000} {
		b := newBody(n)
		require.Len(t, b, n)
		if n >= 2 {
			require.True(t, bytes.HasSuffix(b, []byte("\r\n")))
		}
		require.NotContains(t, string(b), "\r\n.", "no line starts with a dot")
	}
}
