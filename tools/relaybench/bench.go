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
	"slices"
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
	drain    time.Duration
	// cpuprofile is passed to smxd run --cpuprofile.
	cpuprofile string
	// mtas are the relays measured, in order; rounds how many times.
	mtas    []string
	rounds  int
	postfix string // the postfix command
	// postfixConf are main.cf settings added to relaybench's own, for
	// runs that ask how a setting changes Postfix's figures.
	postfixConf []string
}

// stringList is a repeatable flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, " ") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// mtaNames are the relays relaybench knows.
var mtaNames = []string{"smxd", "postfix", "direct"}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	var mtas string
	fs := flag.NewFlagSet("relaybench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.bin, "bin", "bin", "directory with the smxd, loadgen and smtpsink binaries")
	fs.IntVar(&c.messages, "messages", 10000, "messages to relay in each run")
	fs.IntVar(&c.sessions, "sessions", 50, "concurrent SMTP sessions of the load generator")
	fs.StringVar(&c.size, "size", "5KB", "message size")
	fs.IntVar(&c.rcpts, "rcpts", 1, "recipients per message")
	fs.IntVar(&c.perConn, "per-conn", 1, "messages per connection of the load generator (0: one connection per session)")
	fs.StringVar(&c.dir, "dir", "", "keep the relays' configuration, queue and mail log in this directory (default: a temporary one, removed)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up on a run after this long")
	fs.DurationVar(&c.drain, "drain", 2*time.Minute, "how long the sink waits for the last recipients once the load generator is done")
	fs.StringVar(&c.cpuprofile, "cpuprofile", "", "have smxd write a CPU profile of its run to this file (smxd run --cpuprofile; with -rounds, FILE.N for round N)")
	fs.StringVar(&mtas, "mta", "smxd", "the relays to measure, comma-separated: smxd, postfix (Postfix on loopback, needs root), direct (no relay: loadgen straight into the sink, the ceiling)")
	fs.IntVar(&c.rounds, "rounds", 1, "measure each relay this many times, alternating (the order reverses every other round)")
	fs.StringVar(&c.postfix, "postfix", "", "the postfix command (default: postfix on PATH or /usr/sbin/postfix)")
	fs.Var((*stringList)(&c.postfixConf), "postfix-conf", "a main.cf line `NAME = VALUE` added to Postfix's configuration (repeatable), to see what a setting changes")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if c.messages < 1 || c.sessions < 1 || c.rcpts < 1 || c.rounds < 1 {
		return c, errors.New("-messages, -sessions, -rcpts and -rounds must be at least 1")
	}
	for _, m := range strings.Split(mtas, ",") {
		m = strings.TrimSpace(m)
		if !slices.Contains(mtaNames, m) {
			return c, fmt.Errorf("-mta: %q is none of %s", m, strings.Join(mtaNames, ", "))
		}
		if slices.Contains(c.mtas, m) {
			return c, fmt.Errorf("-mta: %s named twice", m)
		}
		c.mtas = append(c.mtas, m)
	}
	need := []string{"loadgen", "smtpsink"}
	if slices.Contains(c.mtas, "smxd") {
		need = append(need, "smxd")
	}
	for _, b := range need {
		if _, err := os.Stat(filepath.Join(c.bin, b)); err != nil {
			return c, fmt.Errorf("-bin: %w (run make build)", err)
		}
	}
	for _, l := range c.postfixConf {
		if name, _, ok := strings.Cut(l, "="); !ok || strings.TrimSpace(name) == "" || strings.ContainsAny(l, "\n\r") {
			return c, fmt.Errorf("-postfix-conf %q: expected NAME = VALUE", l)
		}
	}
	if slices.Contains(c.mtas, "postfix") {
		var err error
		if c.postfix, err = findPostfix(c.postfix); err != nil {
			return c, err
		}
	}
	return c, nil
}

// result is what a run measured.
type result struct {
	mta          string
	round        int
	messages     int
	rcpts        int // per message
	acknowledged int // messages
	delivered    int // distinct recipients of messages the sink got
	duplicates   int // recipients the sink got again
	elapsed      time.Duration
	dotP50       string
	dotP99       string
	// load is the load average (1 minute) before and after the run.
	loadBefore, loadAfter float64
	// busyBefore is the share of the machine's CPU time others used in
	// the second before the load started (the relay idle), -1 if unknown.
	busyBefore float64
}

// lost counts the recipients of acknowledged messages that did not arrive.
func (r result) lost() int { return r.acknowledged*r.rcpts - min(r.delivered, r.acknowledged*r.rcpts) }

// rate is acknowledged messages per second from the start of the load to
// the sink's last recipient.
func (r result) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.acknowledged) / r.elapsed.Seconds()
}

// summary is the line of a single run of smxd, as relaybench has always
// printed it.
func (r result) summary() string {
	return "relaybench: " + r.fields()
}

// roundLine is the line of one run of several.
func (r result) roundLine() string {
	return fmt.Sprintf("relaybench: round=%d mta=%s %s load=%.2f-%.2f busy_before=%.0f%%", r.round, r.mta, r.fields(), r.loadBefore, r.loadAfter, 100*r.busyBefore)
}

func (r result) fields() string {
	return fmt.Sprintf("messages=%d acknowledged=%d delivered=%d duplicates=%d lost=%d elapsed=%.3fs relay_rate=%.1f/s dot_p50=%s dot_p99=%s",
		r.messages, r.acknowledged, r.delivered, r.duplicates, r.lost(), r.elapsed.Seconds(), r.rate(), r.dotP50, r.dotP99)
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

// cpuBusy returns the share of the machine's CPU time (all CPUs) that was
// not idle during d, from /proc/stat; -1 where it cannot be read. Taken
// while the relay under test is idle, it is the machine's noise: what
// others run.
func cpuBusy(ctx context.Context, d time.Duration) float64 {
	sample := func() (busy, total uint64, ok bool) {
		b, err := os.ReadFile("/proc/stat")
		if err != nil {
			return 0, 0, false
		}
		line, _, _ := strings.Cut(string(b), "\n")
		f := strings.Fields(line)
		if len(f) < 5 || f[0] != "cpu" {
			return 0, 0, false
		}
		for i, v := range f[1:] {
			n, err := strconv.ParseUint(v, 10, 64)
			if err != nil {
				return 0, 0, false
			}
			total += n
			if i != 3 && i != 4 { // idle, iowait
				busy += n
			}
		}
		return busy, total, true
	}
	b0, t0, ok0 := sample()
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return -1
	}
	b1, t1, ok1 := sample()
	if !ok0 || !ok1 || t1 <= t0 {
		return -1
	}
	return float64(b1-b0) / float64(t1-t0)
}

// loadAverage is the 1-minute load average of the machine, 0 where
// /proc/loadavg cannot be read.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f, _, _ := strings.Cut(string(b), " ")
	v, _ := strconv.ParseFloat(f, 64)
	return v
}

var loadgenReport = regexp.MustCompile(`^loadgen: messages=(\d+) accepted=(\d+) .* dot_p50=(\S+) dot_p99=(\S+) dot_max=\S+$`)

// runAll measures each relay of cfg.mtas cfg.rounds times, the order
// reversed every other round so that a drift in the machine's load
// weighs on each alike, and prints a line per run and, with more than
// one run, the summary (compare).
func runAll(ctx context.Context, cfg config, out io.Writer) ([]result, error) {
	single := cfg.rounds == 1 && len(cfg.mtas) == 1
	var results []result
	for round := 1; round <= cfg.rounds; round++ {
		order := slices.Clone(cfg.mtas)
		if round%2 == 0 {
			slices.Reverse(order)
		}
		for _, mta := range order {
			res, err := bench(ctx, cfg, mta, round, out)
			if err != nil {
				return results, fmt.Errorf("round %d, %s: %w", round, mta, err)
			}
			results = append(results, res)
			if single {
				fmt.Fprintln(out, res.summary())
			} else {
				fmt.Fprintln(out, res.roundLine())
			}
		}
	}
	if !single {
		for _, line := range compare(cfg.mtas, results) {
			fmt.Fprintln(out, line)
		}
	}
	return results, nil
}

// bench runs one relay measurement. The programs' output is copied to
// out as it comes.
func bench(ctx context.Context, cfg config, mta string, round int, out io.Writer) (result, error) {
	res := result{mta: mta, round: round, messages: cfg.messages, rcpts: cfg.rcpts}
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
	} else {
		if cfg.rounds > 1 || len(cfg.mtas) > 1 {
			dir = filepath.Join(dir, fmt.Sprintf("%s-%d", mta, round))
		}
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return res, err
		}
	}
	bin := func(name string) string { return filepath.Join(cfg.bin, name) }
	var rl relay
	switch mta {
	case "smxd":
		profile := cfg.cpuprofile
		if profile != "" && cfg.rounds > 1 {
			profile += "." + strconv.Itoa(round)
		}
		rl = &smxdRelay{bin: bin("smxd"), cpuprofile: profile, messages: cfg.messages}
	case "postfix":
		rl = &postfixRelay{cmd: cfg.postfix, extra: cfg.postfixConf}
	default:
		rl = directRelay{}
	}

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
	sinkPort, _ := strconv.Atoi(m[1])
	port, err := rl.start(ctx, dir, sinkPort)
	stopped := false
	defer func() {
		if !stopped {
			rl.stop(out)
		}
	}()
	if err != nil {
		return res, err
	}

	res.busyBefore = cpuBusy(ctx, time.Second)
	res.loadBefore = loadAverage()
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
		drain, cancelDrain := context.WithTimeout(ctx, cfg.drain)
		var at time.Time
		if _, at, waitErr = sink.wait(drain, `^smtpsink: reached \d+ recipients$`); waitErr == nil {
			res.elapsed = at.Sub(began)
		}
		cancelDrain()
	}
	res.loadAfter = loadAverage()
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
	stopped = true
	if err := rl.stop(out); err != nil {
		return res, err
	}
	if waitErr != nil && res.lost() == 0 {
		return res, waitErr
	}
	return res, nil
}
