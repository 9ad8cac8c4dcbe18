package e2e

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"
)

// bins are the binaries under test, built once by TestMain without the
// race detector (the tests themselves run with it): smxd, smxctl and the
// tools that run against them.
var bins struct {
	dir, smxd, smxctl string
}

// wait bounds every wait for something smxd does.
const wait = 60 * time.Second

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		fmt.Println("e2e: skipped in -short mode (builds and starts the real binaries)")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "smx-e2e-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// Readable by the unprivileged user of the control socket test.
	os.Chmod(dir, 0o755)
	bins.dir = dir
	bins.smxd = filepath.Join(dir, "smxd")
	bins.smxctl = filepath.Join(dir, "smxctl")
	for _, b := range []struct{ out, pkg string }{
		{bins.smxd, "../../cmd/smxd"}, {bins.smxctl, "../../cmd/smxctl"},
		{filepath.Join(dir, "loadgen"), "../loadgen"}, {filepath.Join(dir, "smtpsink"), "../smtpsink"},
		{filepath.Join(dir, "relaybench"), "../relaybench"},
	} {
		cmd := exec.Command("go", "build", "-o", b.out, b.pkg)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: build", b.pkg, err)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// --- the sink: the next hop smxd delivers to ------------------------------

// sinkMsg is one message the sink accepted.
type sinkMsg struct {
	From string
	To   []string
	Data []byte
}

// header returns the value of a header field of the message.
// Folded fields are unfolded.
func (m sinkMsg) header(name string) string {
	head, _, _ := strings.Cut(string(m.Data), "\r\n\r\n")
	head = strings.NewReplacer("\r\n\t", " ", "\r\n ", " ").Replace(head)
	for _, line := range strings.Split(head, "\r\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// sink is a go-smtp server on loopback that records what it accepts. Its
// rcpt hook can refuse recipients, to keep mail in the queue.
type sink struct {
	t    *testing.T
	port int
	srv  *gosmtp.Server

	mu      sync.Mutex
	msgs    []sinkMsg
	changed chan struct{}
	rcpt    func(addr string) error
	delay   time.Duration
	// inData receives the X-Seq of each message when its delay starts.
	inData chan string
}

// setDelay makes the sink take d over each message's DATA.
func (s *sink) setDelay(d time.Duration) {
	s.mu.Lock()
	s.delay = d
	s.mu.Unlock()
}

func newSink(t *testing.T) *sink {
	t.Helper()
	s := &sink{t: t, changed: make(chan struct{}), inData: make(chan string, 1000)}
	s.srv = gosmtp.NewServer(s)
	s.srv.Domain = "sink.test"
	s.srv.AllowInsecureAuth = true
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	s.srv.MaxRecipients = 1000
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s.port = ln.Addr().(*net.TCPAddr).Port
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// setRcpt installs the recipient hook (nil accepts everyone).
func (s *sink) setRcpt(f func(addr string) error) {
	s.mu.Lock()
	s.rcpt = f
	s.mu.Unlock()
}

// tempfail refuses every recipient with 451, so that mail stays queued.
func tempfail(string) error {
	return &gosmtp.SMTPError{Code: 451, EnhancedCode: gosmtp.EnhancedCode{4, 3, 0}, Message: "sink says try later"}
}

func (s *sink) NewSession(*gosmtp.Conn) (gosmtp.Session, error) { return &sinkSession{s: s}, nil }

type sinkSession struct {
	s    *sink
	from string
	to   []string
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }
func (ss *sinkSession) Mail(from string, _ *gosmtp.MailOptions) error {
	ss.from = from
	return nil
}
func (ss *sinkSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	ss.s.mu.Lock()
	f := ss.s.rcpt
	ss.s.mu.Unlock()
	if f != nil {
		if err := f(to); err != nil {
			return err
		}
	}
	ss.to = append(ss.to, to)
	return nil
}
func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.s.mu.Lock()
	delay := ss.s.delay
	ss.s.mu.Unlock()
	if delay > 0 {
		select {
		case ss.s.inData <- (sinkMsg{Data: b}).header("X-Seq"):
		default:
		}
		time.Sleep(delay) // a slow next hop, not a wait for something
	}
	ss.s.mu.Lock()
	ss.s.msgs = append(ss.s.msgs, sinkMsg{From: ss.from, To: ss.to, Data: b})
	close(ss.s.changed)
	ss.s.changed = make(chan struct{})
	ss.s.mu.Unlock()
	return nil
}

// messages returns what the sink accepted so far.
func (s *sink) messages() []sinkMsg {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkMsg(nil), s.msgs...)
}

// waitFor waits until cond holds for the messages accepted so far.
func (s *sink) waitFor(t *testing.T, what string, cond func([]sinkMsg) bool) []sinkMsg {
	t.Helper()
	deadline := time.After(wait)
	for {
		s.mu.Lock()
		msgs := append([]sinkMsg(nil), s.msgs...)
		ch := s.changed
		s.mu.Unlock()
		if cond(msgs) {
			return msgs
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("sink: timed out waiting for %s (has %d messages)", what, len(msgs))
		}
	}
}

// waitCount waits for at least n messages.
func (s *sink) waitCount(t *testing.T, n int) []sinkMsg {
	t.Helper()
	return s.waitFor(t, fmt.Sprintf("%d messages", n), func(m []sinkMsg) bool { return len(m) >= n })
}

// --- the daemon under test ------------------------------------------------

// env is a directory with an smx.conf for one smxd.
type env struct {
	dir      string
	conf     string
	spool    string
	control  string
	port     int // SMTP
	metrics  int // 0 when off
	sinkPort int
}

// envOptions shape the configuration.
type envOptions struct {
	// sinkPort is where the mailertable's default entry sends mail.
	sinkPort int
	// smtps are extra lines inside the smtps MTA section.
	smtps string
	// qmgr are extra lines inside the qmgr section.
	qmgr string
	// smar are extra lines inside the smar section.
	smar string
	// global are extra lines at top level.
	global string
	// metrics turns the metrics listener on.
	metrics bool
}

func newEnv(t *testing.T, o envOptions) *env {
	t.Helper()
	dir := t.TempDir()
	e := &env{dir: dir, conf: filepath.Join(dir, "smx.conf"), spool: filepath.Join(dir, "spool"),
		port: freePort(t), sinkPort: o.sinkPort}
	e.control = filepath.Join(e.spool, "control.sock")
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mailertable"),
		[]byte(fmt.Sprintf(". %d^esmtp:[127.0.0.1]\n", o.sinkPort)), 0o644))
	metrics := ""
	if o.metrics {
		e.metrics = freePort(t)
		metrics = fmt.Sprintf("metrics { listen_address = 127.0.0.1:%d; }\n", e.metrics)
	}
	conf := fmt.Sprintf(`# smx.conf of an end-to-end test
hostname = smx.test;
queue_directory = %s;
log { output = stderr; }
%s%s
qmgr {
    retry_min_delay = 1s;
    retry_max_delay = 2s;
    %s
}
smar {
    mailertable { file = mailertable; }
    %s
}
smtps MTA {
    listen_socket { type = inet; address = 127.0.0.1; port = %d; }
    relay_clients = { loopback };
    %s
}
smtpc { io_timeout = 30s; }
`, e.spool, metrics, o.global, o.qmgr, o.smar, e.port, o.smtps)
	require.NoError(t, os.WriteFile(e.conf, []byte(conf), 0o644))
	return e
}

func (e *env) addr() string { return "127.0.0.1:" + strconv.Itoa(e.port) }

// proc is a running smxd.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	done chan error // receives Wait's result
	exit error

	mu      sync.Mutex
	lines   []string
	changed chan struct{}
	eof     bool
}

// start runs smxd with the env's configuration (extra flags after run)
// and waits until it serves.
func (e *env) start(t *testing.T, flags ...string) *proc {
	t.Helper()
	p := e.launch(t, flags...)
	p.waitLine(t, `msg="smxd started"`)
	return p
}

// launch starts smxd without waiting for it to serve.
func (e *env) launch(t *testing.T, flags ...string) *proc {
	t.Helper()
	args := append([]string{"run", "-f", e.conf, "--allow-root"}, flags...)
	return launchCmd(t, exec.Command(bins.smxd, args...))
}

func launchCmd(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{t: t, cmd: cmd, done: make(chan error, 1), changed: make(chan struct{})}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	cmd.Stdout = io.Discard
	require.NoError(t, cmd.Start())
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		p.mu.Lock()
		p.eof = true
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
		p.done <- cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("smxd output:\n%s", p.output())
		}
	})
	return p
}

// output returns everything smxd wrote to stderr so far.
func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// waitLine waits for a line of smxd's stderr (debug log and mail log)
// matching the regular expression, among those written so far or to come,
// and returns it.
func (p *proc) waitLine(t *testing.T, re string) string {
	t.Helper()
	return p.waitLineFrom(t, 0, re)
}

// mark returns the number of lines written so far, for waitLineFrom.
func (p *proc) mark() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// waitLineFrom is waitLine for the lines after the first from.
func (p *proc) waitLineFrom(t *testing.T, from int, re string) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(wait)
	i := from
	for {
		p.mu.Lock()
		lines, ch, eof := p.lines, p.changed, p.eof
		p.mu.Unlock()
		for ; i < len(lines); i++ {
			if rx.MatchString(lines[i]) {
				return lines[i]
			}
		}
		if eof {
			t.Fatalf("smxd ended without writing a line matching %q", re)
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out waiting for smxd to write a line matching %q", re)
		}
	}
}

// waitCount waits until n lines of smxd's stderr match re.
func (p *proc) waitCount(t *testing.T, re string, n int) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(wait)
	seen, i := 0, 0
	for {
		p.mu.Lock()
		lines, ch, eof := p.lines, p.changed, p.eof
		p.mu.Unlock()
		for ; i < len(lines); i++ {
			if rx.MatchString(lines[i]) {
				seen++
			}
		}
		if seen >= n {
			return
		}
		if eof {
			t.Fatalf("smxd ended after %d of %d lines matching %q", seen, n, re)
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out with %d of %d lines matching %q", seen, n, re)
		}
	}
}

// count returns the number of lines so far that match re.
func (p *proc) count(re string) int {
	rx := regexp.MustCompile(re)
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.lines {
		if rx.MatchString(l) {
			n++
		}
	}
	return n
}

// signal sends sig to smxd.
func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	require.NoError(t, p.cmd.Process.Signal(sig))
}

// wait waits for smxd to exit and returns its error (nil for exit 0).
func (p *proc) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-p.done:
		p.exit = err
		return err
	case <-time.After(wait):
		p.cmd.Process.Kill()
		t.Fatal("smxd did not exit")
		return nil
	}
}

// stop sends SIGTERM and requires exit status 0.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
	require.NoError(t, p.wait(t), "smxd must exit 0 after SIGTERM")
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill(t *testing.T) {
	t.Helper()
	p.signal(t, syscall.SIGKILL)
	p.wait(t)
}

// --- clients ---------------------------------------------------------------

// ctl runs smxctl with the env's configuration.
func (e *env) ctl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(bins.smxctl, append([]string{"-f", e.conf}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	go func() {
		<-ctx.Done()
		if cmd.Process != nil && cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	}()
	err := cmd.Run()
	return out.String(), err
}

// mustCtl runs smxctl and requires success.
func (e *env) mustCtl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.ctl(t, args...)
	require.NoError(t, err, "smxctl %s: %s", strings.Join(args, " "), out)
	return out
}

var queuedAs = regexp.MustCompile(`id=(S[0-9A-F]{18})`)

// send sends one message with go-smtp's client and returns the ss_ta from
// the 250 reply.
func send(t *testing.T, addr, from string, to []string, seq string) (string, error) {
	t.Helper()
	c, err := gosmtp.Dial(addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		return "", err
	}
	if err := c.Mail(from, nil); err != nil {
		return "", err
	}
	for _, r := range to {
		if err := c.Rcpt(r, nil); err != nil {
			return "", err
		}
	}
	w, err := c.Data()
	if err != nil {
		return "", err
	}
	fmt.Fprintf(w, "From: <%s>\r\nTo: <%s>\r\nSubject: test %s\r\nMessage-ID: <%s@client.test>\r\nX-Seq: %s\r\n\r\nbody of %s\r\n",
		from, to[0], seq, seq, seq, seq)
	resp, err := w.CloseWithResponse()
	if err != nil {
		return "", err
	}
	c.Quit()
	m := queuedAs.FindStringSubmatch(resp.StatusText)
	if m == nil {
		return "", fmt.Errorf("no queue id in %q", resp.StatusText)
	}
	return m[1], nil
}

// mustSend sends one message and requires a 250.
func mustSend(t *testing.T, addr, from string, to []string, seq string) string {
	t.Helper()
	id, err := send(t, addr, from, to, seq)
	require.NoError(t, err)
	return id
}
