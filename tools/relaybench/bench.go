package main

import (
	"bufio"
	"context"
	"errors"
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
	"time"
)

// config is the command line.
type config struct {
	bin      string
	messages int
	sessions int
	size     string
	rcpts    int
	perConn  int
	dir      string
	timeout  time.Duration
	// cpuprofile is passed to smxd run --cpuprofile.
	cpuprofile string
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("relaybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.bin, "bin", "bin", "directory with the smxd, loadgen and smtpsink binaries")
	fs.IntVar(&c.messages, "messages", 10000, "messages to relay")
	fs.IntVar(&c.sessions, "sessions", 50, "concurrent SMTP sessions of the load generator")
	fs.StringVar(&c.size, "size", "5KB", "message size")
	fs.IntVar(&c.rcpts, "rcpts", 1, "recipients per message")
	fs.IntVar(&c.perConn, "per-conn", 1, "messages per connection of the load generator (0: one connection per session)")
	fs.StringVar(&c.dir, "dir", "", "keep smxd's configuration, queue and mail log in this directory (default: a temporary one, removed)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up after this long")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "have smxd write a CPU profile of its run to this file (smxd run --cpuprofile)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.messages < 1 || c.sessions < 1 || c.rcpts < 1 {
		return c, errors.New("-messages, -sessions and -rcpts must be at least 1")
	}
	for _, b := range []string{"smxd", "loadgen", "smtpsink"} {
		if _, err := os.Stat(filepath.Join(c.bin, b)); err != nil {
			return c, fmt.Errorf("-bin: %w (run make build)", err)
		}
	}
	return c, nil
}

// result is what a run measured.
type result struct {
	messages     int
	rcpts        int // per message
	acknowledged int // messages
	delivered    int // distinct recipients of messages the sink got
	duplicates   int // recipients the sink got again
	elapsed      time.Duration
	dotP50       string
	dotP99       string
}

// lost counts the recipients of acknowledged messages that did not arrive.
func (r result) lost() int { return r.acknowledged*r.rcpts - min(r.delivered, r.acknowledged*r.rcpts) }

func (r result) summary() string {
	rate := 0.0
	if r.elapsed > 0 {
		rate = float64(r.acknowledged) / r.elapsed.Seconds()
	}
	return fmt.Sprintf("relaybench: messages=%d acknowledged=%d delivered=%d duplicates=%d lost=%d elapsed=%.3fs relay_rate=%.1f/s dot_p50=%s dot_p99=%s",
		r.messages, r.acknowledged, r.delivered, r.duplicates, r.lost(), r.elapsed.Seconds(), rate, r.dotP50, r.dotP99)
}

// proc is a started program whose output lines can be waited for.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}

	mu      sync.Mutex
	lines   []string
	at      []time.Time // when each line was read
	changed chan struct{}
}

func start(name string, cmd *exec.Cmd, echo io.Writer) (*proc, error) {
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), changed: make(chan struct{})}
	r, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		cmd.Wait()
		w.Close()
	}()
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if echo != nil {
				fmt.Fprintln(echo, line)
			}
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.at = append(p.at, time.Now())
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		io.Copy(io.Discard, r)
	}()
	return p, nil
}

// wait returns the submatches of the first line matching re, and when it
// was read.
func (p *proc) wait(ctx context.Context, re string) ([]string, time.Time, error) {
	rx := regexp.MustCompile(re)
	for i := 0; ; {
		p.mu.Lock()
		lines, at, ch := p.lines, p.at, p.changed
		p.mu.Unlock()
		for ; i < len(lines); i++ {
			if m := rx.FindStringSubmatch(lines[i]); m != nil {
				return m, at[i], nil
			}
		}
		select {
		case <-ch:
		case <-p.done:
			p.mu.Lock()
			n := len(p.lines)
			p.mu.Unlock()
			if n == i {
				return nil, time.Time{}, fmt.Errorf("%s ended without %q:\n%s", p.name, re, p.tail())
			}
		case <-ctx.Done():
			return nil, time.Time{}, fmt.Errorf("waiting for %s to write %q: %w", p.name, re, ctx.Err())
		}
	}
}

func (p *proc) tail() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines[max(0, len(p.lines)-20):], "\n")
}

// stop sends sig and waits for the process to end.
func (p *proc) stop(sig syscall.Signal) {
	p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		p.cmd.Process.Kill()
		<-p.done
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// smxConf is the configuration of the smxd under test: the queue in dir,
// the mail log in a file there, relaying for loopback clients, and a
// mailertable that sends everything to the sink. The connection limits
// are raised so that they do not throttle the load generator.
func smxConf(dir string, port int) string {
	return fmt.Sprintf(`# smx.conf written by relaybench
hostname = relaybench.test;
queue_directory = %s;
log { output = file; file = maillog; }
qmgr {
    smtps { max_connections = 100000; max_connection_rate = 10000000; }
}
smar { mailertable { file = mt; } }
smtps MTA {
    listen_socket { type = inet; address = 127.0.0.1; port = %d; }
    relay_clients = { loopback };
}
`, filepath.Join(dir, "spool"), port)
}

var loadgenReport = regexp.MustCompile(`^loadgen: messages=(\d+) accepted=(\d+) .* dot_p50=(\S+) dot_p99=(\S+) dot_max=\S+$`)

// bench runs one relay measurement. The programs' output is copied to
// out as it comes.
func bench(ctx context.Context, cfg config, out io.Writer) (result, error) {
	res := result{messages: cfg.messages, rcpts: cfg.rcpts}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	dir := cfg.dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "relaybench")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(tmp)
		dir = tmp
	} else if err := os.MkdirAll(dir, 0o750); err != nil {
		return res, err
	}
	bin := func(name string) string { return filepath.Join(cfg.bin, name) }

	// The sink expects every recipient; it stops once it has them.
	sink, err := start("smtpsink", exec.Command(bin("smtpsink"), "-listen", "127.0.0.1:0",
		"-expect", strconv.Itoa(cfg.messages*cfg.rcpts), "-timeout", cfg.timeout.String()), out)
	if err != nil {
		return res, err
	}
	defer sink.stop(syscall.SIGTERM)
	m, _, err := sink.wait(ctx, `^smtpsink: listening on 127\.0\.0\.1:(\d+)$`)
	if err != nil {
		return res, err
	}
	if err := os.WriteFile(filepath.Join(dir, "mt"), []byte(". "+m[1]+"^esmtp:[127.0.0.1]\n"), 0o640); err != nil {
		return res, err
	}
	port, err := freePort()
	if err != nil {
		return res, err
	}
	conf := filepath.Join(dir, "smx.conf")
	if err := os.WriteFile(conf, []byte(smxConf(dir, port)), 0o640); err != nil {
		return res, err
	}
	args := []string{"run", "-f", conf}
	if os.Geteuid() == 0 {
		args = append(args, "--allow-root")
	}
	if cfg.cpuprofile != "" {
		args = append(args, "--cpuprofile", cfg.cpuprofile)
	}
	smxd, err := start("smxd", exec.Command(bin("smxd"), args...), nil)
	if err != nil {
		return res, err
	}
	defer smxd.stop(syscall.SIGTERM)
	if _, _, err := smxd.wait(ctx, `msg="smxd started"`); err != nil {
		return res, err
	}

	began := time.Now()
	load, err := start("loadgen", exec.CommandContext(ctx, bin("loadgen"), "-server", "127.0.0.1:"+strconv.Itoa(port),
		"-messages", strconv.Itoa(cfg.messages), "-sessions", strconv.Itoa(cfg.sessions), "-size", cfg.size,
		"-rcpts", strconv.Itoa(cfg.rcpts), "-per-conn", strconv.Itoa(cfg.perConn), "-from", "load@loadgen.test",
		"-to", "rcpt%d@relay.test", "-timeout", cfg.timeout.String()), out)
	if err != nil {
		return res, err
	}
	lm, _, err := load.wait(ctx, loadgenReport.String())
	if err != nil {
		return res, err
	}
	<-load.done
	res.acknowledged, _ = strconv.Atoi(lm[2])
	res.dotP50, res.dotP99 = lm[3], lm[4]

	var waitErr error
	if res.acknowledged == cfg.messages {
		var at time.Time
		if _, at, waitErr = sink.wait(ctx, `^smtpsink: reached \d+ recipients$`); waitErr == nil {
			res.elapsed = at.Sub(began)
		}
	}
	// With messages refused, or lost, the sink waits in vain: stop it and
	// count what it has.
	sink.stop(syscall.SIGTERM)
	final, cancelFinal := context.WithTimeout(context.Background(), time.Minute)
	defer cancelFinal()
	sm, _, err := sink.wait(final, `^smtpsink: messages=(\d+) recipients=\d+ bytes=\d+ distinct=(\d+) duplicates=(\d+) `)
	if err != nil {
		return res, errors.Join(waitErr, err)
	}
	res.delivered, _ = strconv.Atoi(sm[2])
	res.duplicates, _ = strconv.Atoi(sm[3])
	smxd.stop(syscall.SIGTERM)
	if code := smxd.cmd.ProcessState.ExitCode(); code != 0 {
		return res, fmt.Errorf("smxd exited with status %d:\n%s", code, smxd.tail())
	}
	if waitErr != nil && res.lost() == 0 {
		return res, waitErr
	}
	return res, nil
}
