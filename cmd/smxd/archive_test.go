package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/cmd/smxd/conf"
	smxlog "github.com/smx-mta/smx/log"
)

// lineWriter collects the lines written to it (smxd's stderr) and lets a
// test wait for one.
type lineWriter struct {
	mu      sync.Mutex
	partial []byte
	lines   []string
	changed chan struct{}
}

func newLineWriter() *lineWriter { return &lineWriter{changed: make(chan struct{})} }

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.partial = append(w.partial, p...)
	for {
		i := strings.IndexByte(string(w.partial), '\n')
		if i < 0 {
			break
		}
		w.lines = append(w.lines, string(w.partial[:i]))
		w.partial = w.partial[i+1:]
	}
	close(w.changed)
	w.changed = make(chan struct{})
	return len(p), nil
}

// wait returns the submatches of the first line at or after index from
// that matches re, and the index after it.
func (w *lineWriter) wait(t *testing.T, from int, re string) ([]string, int) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(30 * time.Second)
	for {
		w.mu.Lock()
		lines, ch := w.lines, w.changed
		w.mu.Unlock()
		for i := from; i < len(lines); i++ {
			if m := rx.FindStringSubmatch(lines[i]); m != nil {
				return m, i + 1
			}
		}
		from = max(from, len(lines))
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no line matching %q in:\n%s", re, strings.Join(lines, "\n"))
		}
	}
}

// fakeTickers hands out tickers that fire when the test says so.
type fakeTickers struct {
	mu    sync.Mutex
	asked []time.Duration
	chans map[time.Duration]chan time.Time
}

func (f *fakeTickers) newTicker(d time.Duration) (<-chan time.Time, func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.chans == nil {
		f.chans = map[time.Duration]chan time.Time{}
	}
	ch := make(chan time.Time)
	f.asked = append(f.asked, d)
	f.chans[d] = ch
	return ch, func() {}
}

func (f *fakeTickers) fire(t *testing.T, d time.Duration) {
	t.Helper()
	f.mu.Lock()
	ch := f.chans[d]
	f.mu.Unlock()
	select {
	case ch <- time.Now():
	case <-time.After(30 * time.Second):
		t.Fatalf("nobody waits on the ticker of %v", d)
	}
}

// countingSink is a go-smtp server on loopback that counts the messages
// it accepts.
type countingSink struct {
	port     int
	received chan string // the From of each message
}

func newCountingSink(t *testing.T) *countingSink {
	t.Helper()
	s := &countingSink{received: make(chan string, 100)}
	srv := gosmtp.NewServer(gosmtp.BackendFunc(func(*gosmtp.Conn) (gosmtp.Session, error) {
		return &countingSession{s: s}, nil
	}))
	srv.Domain = "sink.test"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.port = ln.Addr().(*net.TCPAddr).Port
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return s
}

type countingSession struct {
	s    *countingSink
	from string
}

func (c *countingSession) Reset()        {}
func (c *countingSession) Logout() error { return nil }
func (c *countingSession) Mail(from string, _ *gosmtp.MailOptions) error {
	c.from = from
	return nil
}
func (c *countingSession) Rcpt(string, *gosmtp.RcptOptions) error { return nil }
func (c *countingSession) Data(r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	c.s.received <- c.from
	return nil
}

// testDaemon is an smxd run in the test's process on a configuration
// with a mailertable that sends everything to a sink, its mail log on out
// and its tickers driven by the test.
type testDaemon struct {
	d       *daemon
	dir     string // where smx.conf and the maps are; the queue is spool/ in it
	port    int    // SMTP, on 127.0.0.1
	out     *lineWriter
	tickers *fakeTickers
	stop    func() // stops the daemon once; the test's cleanup calls it too
}

// startDaemon starts a testDaemon whose qmgr section holds qmgr and whose
// mail goes to sinkPort; it stops with the test.
func startDaemon(t *testing.T, sinkPort int, qmgr string) *testDaemon {
	t.Helper()
	return startDaemonWith(t, daemonConfig{qmgr: qmgr, mailertable: fmt.Sprintf(". %d^esmtp:[127.0.0.1]\n", sinkPort)})
}

// daemonConfig is what a testDaemon's configuration holds besides the
// queue directory, the mail log on stderr and one smtps MTA on loopback.
type daemonConfig struct {
	// qmgr, smar and smtps go inside those sections (smtps MTA's); smtps
	// is "relay_clients = { loopback };" when empty.
	qmgr, smar, smtps string
	// mailertable is the mailertable file's content.
	mailertable string
	// files are further files of the configuration directory, by name.
	files map[string]string
	// now, when set, is the clock of the greylisting database.
	now func() time.Time
}

// startDaemonWith starts a testDaemon on cfg; it stops with the test.
func startDaemonWith(t *testing.T, cfg daemonConfig) *testDaemon {
	t.Helper()
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	files := map[string]string{"mt": cfg.mailertable}
	for name, content := range cfg.files {
		files[name] = content
	}
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	smtps := cfg.smtps
	if smtps == "" {
		smtps = "relay_clients = { loopback };"
	}
	file := filepath.Join(dir, "smx.conf")
	require.NoError(t, os.WriteFile(file, []byte(`hostname = smx.test;
queue_directory = "`+filepath.Join(dir, "spool")+`";
log { output = stderr; }
qmgr { `+cfg.qmgr+` }
smar { mailertable { file = mt; } `+cfg.smar+` }
smtps MTA { listen_socket { address = 127.0.0.1; port = `+strconv.Itoa(port)+`; } `+smtps+` }
`), 0o644))
	c, err := conf.Load(file)
	require.NoError(t, err)
	td := &testDaemon{dir: dir, port: port, out: newLineWriter(), tickers: &fakeTickers{}}
	td.d = newDaemon(c, slog.New(slog.DiscardHandler), true, td.out)
	td.d.newTicker = td.tickers.newTicker
	if cfg.now != nil {
		td.d.now = cfg.now
	}
	require.NoError(t, td.d.Start(context.Background()))
	var once sync.Once
	td.stop = func() { once.Do(func() { td.d.Stop(context.Background()) }) }
	t.Cleanup(td.stop)
	return td
}

// send sends one message through the daemon.
func (td *testDaemon) send(t *testing.T, from, to, subject string) {
	t.Helper()
	cl, err := gosmtp.Dial("127.0.0.1:" + strconv.Itoa(td.port))
	require.NoError(t, err)
	require.NoError(t, cl.SendMail(from, []string{to}, strings.NewReader("Subject: "+subject+"\r\n\r\nbody\r\n")))
	require.NoError(t, cl.Quit())
}

// TestArchivePasses: with event_log archive_after = 0 smxd keeps every
// event in the live log and never runs an archive pass; otherwise it runs
// one every archiveInterval (an hour), which moves the events of finished
// messages into the archive, where they can still be read.
func TestArchivePasses(t *testing.T) {
	sink := newCountingSink(t)
	for _, tc := range []struct {
		archiveAfter string
		archives     bool
	}{{"0", false}, {"1ms", true}} {
		t.Run("archive_after "+tc.archiveAfter, func(t *testing.T) {
			td := startDaemon(t, sink.port, "event_log { archive_after = "+tc.archiveAfter+"; }")
			tickers, out, d := td.tickers, td.out, td.d

			if !tc.archives {
				require.Equal(t, []time.Duration{5 * time.Minute}, tickers.asked, "a snapshot ticker and no archive ticker")
				return
			}
			require.Equal(t, []time.Duration{5 * time.Minute, archiveInterval}, tickers.asked)
			require.Equal(t, time.Hour, archiveInterval)

			td.send(t, "a@client.test", "b@dest.test", "archive me")
			select {
			case from := <-sink.received:
				require.Equal(t, "a@client.test", from)
			case <-time.After(30 * time.Second):
				t.Fatal("the message was not delivered")
			}
			// The message is finished once its body is released too,
			// which may come just after the delivery: pass again until
			// the pass finds it.
			from, deadline := 0, time.Now().Add(30*time.Second)
			for {
				tickers.fire(t, archiveInterval)
				var m []string
				m, from = out.wait(t, from, `func=eventlog_archive, scanned=(\d+), archived=(\d+), segments=(\d+)`)
				if m[2] != "0" {
					require.Equal(t, "1", m[3], "one segment written")
					break
				}
				require.True(t, time.Now().Before(deadline), "no pass archived the delivered message")
			}
			st := d.storage.Load()
			ev, err := st.log.Get(1)
			require.NoError(t, err, "an archived event is still read")
			_, received := ev.Payload.(*smxlog.TxnReceived)
			require.True(t, received, "%T", ev.Payload)
		})
	}
}
