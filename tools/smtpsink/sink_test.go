package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
)

// output is a writer whose lines a test can wait for.
type output struct {
	mu      sync.Mutex
	text    strings.Builder
	changed chan struct{}
}

func newOutput() *output { return &output{changed: make(chan struct{})} }

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.text.Write(p)
	close(o.changed)
	o.changed = make(chan struct{})
	return len(p), nil
}

func (o *output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.text.String()
}

// wait returns the first submatches of re in the output, waiting for them.
func (o *output) wait(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(30 * time.Second)
	for {
		o.mu.Lock()
		m, ch := rx.FindStringSubmatch(o.text.String()), o.changed
		o.mu.Unlock()
		if m != nil {
			return m
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no %q in the output:\n%s", re, o.String())
		}
	}
}

// started runs smtpsink with args and returns the address it listens on,
// its output and a channel that receives its exit code.
func started(t *testing.T, ctx context.Context, args ...string) (string, *output, <-chan int) {
	t.Helper()
	out, errOut := newOutput(), newOutput()
	code := make(chan int, 1)
	go func() {
		c := run(ctx, args, out, errOut)
		if c != 0 {
			fmt.Fprintf(out, "exited with %d: %s", c, errOut.String())
		}
		code <- c
	}()
	m := out.wait(t, `smtpsink: listening on (\S+)\n|exited with`)
	require.NotEmpty(t, m[1], out.String())
	return m[1], out, code
}

func exitCode(t *testing.T, code <-chan int) int {
	t.Helper()
	select {
	case c := <-code:
		return c
	case <-time.After(30 * time.Second):
		t.Fatal("smtpsink did not stop")
		return -1
	}
}

// send sends one message with go-smtp's client; seq goes into an
// X-Loadgen-Seq field.
func send(addr, from string, to []string, seq string) error {
	c, err := gosmtp.Dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return err
	}
	return c.SendMail(from, to, strings.NewReader("X-Loadgen-Seq: "+seq+"\r\nSubject: test\r\n\r\nbody "+seq+"\r\n"))
}

func TestCountsRecordsAndStopsAtExpect(t *testing.T) {
	record := filepath.Join(t.TempDir(), "mail")
	addr, out, code := started(t, context.Background(), "-listen", "127.0.0.1:0", "-record", record, "-expect", "5")
	require.NoError(t, send(addr, "a@client.test", []string{"x@sink.test"}, "1"))
	require.NoError(t, send(addr, "b@client.test", []string{"y@sink.test", "z@sink.test"}, "2"))
	require.NoError(t, send(addr, "c@client.test", []string{"Y@sink.test"}, "2"))
	require.NoError(t, send(addr, "c@client.test", []string{"x@sink.test"}, "2"))
	require.Equal(t, 0, exitCode(t, code))
	require.Contains(t, out.String(), "smtpsink: reached 5 recipients\n")
	// Message 2 reached y twice (addresses compare without case) and x
	// once.
	require.Regexp(t, `smtpsink: messages=4 recipients=5 bytes=\d+ distinct=4 duplicates=1 elapsed=\d+\.\d{3}s rate=\d+\.\d/s\n$`, out.String())

	files, err := os.ReadDir(record)
	require.NoError(t, err)
	require.Len(t, files, 4)
	b, err := os.ReadFile(filepath.Join(record, files[1].Name()))
	require.NoError(t, err)
	require.Equal(t, "X-Envelope-From: <b@client.test>\r\nX-Envelope-To: <y@sink.test>\r\nX-Envelope-To: <z@sink.test>\r\n"+
		"X-Loadgen-Seq: 2\r\nSubject: test\r\n\r\nbody 2\r\n", string(b))

	_, err = net.Dial("tcp", addr)
	require.Error(t, err, "a stopped sink listens no more")
}

func TestReplies(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addr, _, code := started(t, ctx, "-listen", "127.0.0.1:0", "-rcpt-reply", "451 4.3.0 come back later")
	err := send(addr, "a@client.test", []string{"x@sink.test"}, "1")
	var se *gosmtp.SMTPError
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, 451, se.Code)
	require.Equal(t, gosmtp.EnhancedCode{4, 3, 0}, se.EnhancedCode)
	require.Equal(t, "come back later", se.Message)
	cancel()
	require.Equal(t, 0, exitCode(t, code))

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	addr, out, code := started(t, ctx, "-listen", "127.0.0.1:0", "-data-reply", "554 5.6.0 not this one")
	err = send(addr, "a@client.test", []string{"x@sink.test"}, "1")
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, 554, se.Code)
	cancel()
	require.Equal(t, 0, exitCode(t, code))
	require.Contains(t, out.String(), "messages=0 ", "a refused message is not counted")

	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	addr, _, code = started(t, ctx, "-listen", "127.0.0.1:0", "-mail-reply", "550 no senders today")
	err = send(addr, "a@client.test", []string{"x@sink.test"}, "1")
	require.True(t, errors.As(err, &se), "%v", err)
	require.Equal(t, 550, se.Code)
	require.Equal(t, "no senders today", se.Message)
	cancel()
	require.Equal(t, 0, exitCode(t, code))
}

// TestLMTP talks LMTP over a unix socket, as smxd's LMTP_socket would:
// one DATA reply per recipient.
func TestLMTP(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "lmtp.sock")
	for _, tc := range []struct {
		reply string
		code  int
	}{{"", 0}, {"452 4.2.2 mailbox full", 452}} {
		ctx, cancel := context.WithCancel(context.Background())
		args := []string{"-lmtp", "-listen", "unix:" + sock}
		if tc.reply != "" {
			args = append(args, "-data-reply", tc.reply)
		}
		addr, out, code := started(t, ctx, args...)
		require.Equal(t, "unix:"+sock, addr)
		conn, err := net.Dial("unix", sock)
		require.NoError(t, err)
		c := gosmtp.NewClientLMTP(conn)
		require.NoError(t, c.Hello("client.test"))
		require.NoError(t, c.Mail("a@client.test", nil))
		require.NoError(t, c.Rcpt("x@sink.test", nil))
		require.NoError(t, c.Rcpt("y@sink.test", nil))
		w, err := c.Data()
		require.NoError(t, err)
		fmt.Fprint(w, "Subject: lmtp\r\n\r\nbody\r\n")
		resp, err := w.CloseWithLMTPResponse()
		if tc.code == 0 {
			require.NoError(t, err)
			require.Len(t, resp, 2)
		} else {
			var le gosmtp.LMTPDataError
			require.True(t, errors.As(err, &le), "%v", err)
			require.Len(t, le, 2, "one reply per recipient")
			require.Equal(t, tc.code, le["y@sink.test"].Code)
		}
		c.Quit()
		cancel()
		require.Equal(t, 0, exitCode(t, code))
		want := "messages=1 recipients=2 "
		if tc.code != 0 {
			want = "messages=0 recipients=0 "
		}
		require.Contains(t, out.String(), want)
	}
}

func TestTimeout(t *testing.T) {
	_, _, code := started(t, context.Background(), "-listen", "127.0.0.1:0", "-expect", "5", "-timeout", "50ms")
	require.Equal(t, 1, exitCode(t, code))
}

func TestBadCommandLines(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-listen", "192.0.2.1:25"}, "loopback addresses only"},
		{[]string{"-listen", "0.0.0.0:2526"}, "loopback addresses only"},
		{[]string{"-listen", "unix:"}, "needs a path"},
		{[]string{"-rcpt-reply", "45 no"}, "a reply starts with a code from 200 to 599"},
		{[]string{"-data-reply", "451 5.3.0 mismatch"}, "does not match reply code 451"},
		{[]string{"-data-reply", "451 4.x.0 bad"}, "bad enhanced status code"},
		{[]string{"stray"}, "unexpected arguments"},
	} {
		errOut := newOutput()
		require.Equal(t, 2, run(context.Background(), tc.args, newOutput(), errOut), tc.args)
		require.Contains(t, errOut.String(), tc.want)
	}
}

func TestParseReply(t *testing.T) {
	r, err := parseReply("250 2.0.0 ok")
	require.NoError(t, err)
	require.Nil(t, r, "2xx accepts")
	r, err = parseReply("421 bye")
	require.NoError(t, err)
	require.Equal(t, &gosmtp.SMTPError{Code: 421, EnhancedCode: gosmtp.EnhancedCodeNotSet, Message: "bye"}, r)
	r, err = parseReply("550 5.1.1")
	require.NoError(t, err)
	require.Equal(t, &gosmtp.SMTPError{Code: 550, EnhancedCode: gosmtp.EnhancedCode{5, 1, 1}, Message: "smtpsink says so"}, r)
}
