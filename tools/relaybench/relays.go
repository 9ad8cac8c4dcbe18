package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// relay is the MTA under test: it relays everything it receives from
// loopback clients to the sink.
type relay interface {
	// start starts the relay with its configuration and queue in dir,
	// sending all mail to 127.0.0.1:sinkPort, and returns the loopback
	// port it receives on once it does.
	start(ctx context.Context, dir string, sinkPort int) (port int, err error)
	// stop stops the relay; an error says it did not end cleanly. What
	// it has to say about the run goes to out.
	stop(out io.Writer) error
}

// directRelay is no relay at all: the load generator sends straight to
// the sink, which measures the ceiling of any relay on the machine.
type directRelay struct{}

func (directRelay) start(_ context.Context, _ string, sinkPort int) (int, error) {
	return sinkPort, nil
}
func (directRelay) stop(io.Writer) error { return nil }

// smxdRelay is smxd run with the configuration of smxConf.
type smxdRelay struct {
	bin         string
	cpuprofile  string
	proc        *proc
	metricsPort int
	messages    int // of the run, for the figures per message
}

// smxConf is the configuration of the smxd under test: the queue in dir,
// the mail log in a file there, relaying for loopback clients, and a
// mailertable that sends everything to the sink. The limits on incoming
// connections are raised so that they do not throttle the load generator
// (which opens a connection per message from one address): Postfix has no
// such limits by default (smtpd_client_connection_rate_limit = 0).
// Everything else is smxd's default.
//
// The metrics listener (on loopback) is read at the end of the run for
// the fsyncs and commit latencies relaybench prints.
func smxConf(dir string, port, metricsPort int) string {
	return fmt.Sprintf(`# smx.conf written by relaybench
hostname = relaybench.test;
queue_directory = %s;
log { output = file; file = maillog; }
metrics { listen_address = 127.0.0.1:%d; }
qmgr {
    smtps { max_connections = 100000; max_connection_rate = 10000000; }
}
smar { mailertable { file = mt; } }
smtps MTA {
    listen_socket { type = inet; address = 127.0.0.1; port = %d; }
    relay_clients = { loopback };
}
`, filepath.Join(dir, "spool"), metricsPort, port)
}

func (s *smxdRelay) start(ctx context.Context, dir string, sinkPort int) (int, error) {
	if err := os.WriteFile(filepath.Join(dir, "mt"), []byte(". "+strconv.Itoa(sinkPort)+"^esmtp:[127.0.0.1]\n"), 0o640); err != nil {
		return 0, err
	}
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	if s.metricsPort, err = freePort(); err != nil {
		return 0, err
	}
	conf := filepath.Join(dir, "smx.conf")
	if err := os.WriteFile(conf, []byte(smxConf(dir, port, s.metricsPort)), 0o640); err != nil {
		return 0, err
	}
	args := []string{"run", "-f", conf}
	if os.Geteuid() == 0 {
		args = append(args, "--allow-root")
	}
	if s.cpuprofile != "" {
		args = append(args, "--cpuprofile", s.cpuprofile)
	}
	if s.proc, err = start("smxd", exec.Command(s.bin, args...), nil); err != nil {
		return 0, err
	}
	if _, _, err := s.proc.wait(ctx, `msg="smxd started"`); err != nil {
		return 0, err
	}
	return port, nil
}

// stop prints what smxd's metrics and the kernel say about the run (see
// smxdFigures) and stops smxd.
func (s *smxdRelay) stop(out io.Writer) error {
	if s.proc == nil {
		return nil
	}
	if line := s.figures(); line != "" {
		fmt.Fprintln(out, line)
	}
	s.proc.stop(syscall.SIGTERM)
	if code := s.proc.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("smxd exited with status %d:\n%s", code, s.proc.tail())
	}
	return nil
}

// figures reads smxd's metrics and its CPU time and renders them per
// message of the run:
//
//	smxd: cpu=9.1s cpu_per_msg=455us wal_syncs_per_msg=1.52 wal_sync_mean=0.41ms append_mean=1.9ms cdb_syncs_per_msg=0.62 cdb_commit_mean=1.2ms
//
// cpu is smxd's user and system time since it started (recovery and
// start-up included); the means are those of the whole run. It returns
// "" when smxd cannot be asked.
func (s *smxdRelay) figures() string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(s.metricsPort)+"/metrics", nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return ""
	}
	m := parseMetrics(string(b))
	n := float64(max(s.messages, 1))
	ratio := func(a, b float64) float64 {
		if b == 0 {
			return 0
		}
		return a / b
	}
	line := "smxd:"
	if cpu, ok := processCPU(s.proc.cmd.Process.Pid); ok {
		line += fmt.Sprintf(" cpu=%.1fs cpu_per_msg=%.0fus", cpu.Seconds(), cpu.Seconds()/n*1e6)
	}
	return line + fmt.Sprintf(" wal_syncs_per_msg=%.2f wal_sync_mean=%.2fms append_mean=%.2fms cdb_syncs_per_msg=%.2f cdb_commit_mean=%.2fms",
		m["smx_eventlog_wal_syncs_total"]/n,
		1000*ratio(m["smx_eventlog_wal_sync_seconds_total"], m["smx_eventlog_wal_syncs_total"]),
		1000*ratio(m["smx_eventlog_append_seconds_sum"], m["smx_eventlog_append_seconds_count"]),
		m["smx_cdb_syncs_total"]/n,
		1000*ratio(m["smx_cdb_commit_seconds_sum"], m["smx_cdb_commit_seconds_count"]))
}

// parseMetrics reads the samples without labels of the Prometheus text
// format (and sums those with labels under their name).
func parseMetrics(text string) map[string]float64 {
	m := map[string]float64{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		name := line[:i]
		if j := strings.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		m[name] += v
	}
	return m
}

// processCPU returns the user and system time of process pid, from
// /proc/PID/stat.
func processCPU(pid int) (time.Duration, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: state is field 3, utime 14 and stime 15.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	// USER_HZ is 100 on Linux.
	return time.Duration(utime+stime) * 10 * time.Millisecond, true
}

// findPostfix returns the postfix command: cmd if given, else the one on
// PATH or in /usr/sbin.
func findPostfix(cmd string) (string, error) {
	if cmd == "" {
		if p, err := exec.LookPath("postfix"); err == nil {
			cmd = p
		} else {
			cmd = "/usr/sbin/postfix"
		}
	}
	if _, err := os.Stat(cmd); err != nil {
		return "", fmt.Errorf("-mta postfix: %w (install the Debian package postfix: apt-get install postfix)", err)
	}
	if os.Geteuid() != 0 {
		return "", errors.New("-mta postfix: Postfix's master must be started as root")
	}
	return cmd, nil
}

// postfixRelay is an instance of Postfix of its own: its configuration
// directory, queue and data directory in the run's directory, started
// with postfix -c and stopped with postfix -c ... stop. It leaves the
// system's Postfix (and /etc/postfix) alone.
type postfixRelay struct {
	cmd     string   // the postfix command
	extra   []string // main.cf lines added to postfixMainCF (-postfix-conf)
	etc     string   // its configuration directory
	maillog string
	started bool
}

// postfixMainCF is the main.cf of the Postfix under test: Postfix's
// defaults except what relaying on loopback to the sink needs. The
// queue, data directory and mail log are the run's; it listens on
// 127.0.0.1 only; mynetworks is loopback and relaying is allowed for it
// alone; every message goes to the sink by relayhost, an address
// literal, with DNS lookups off in the SMTP client; nothing is local
// (no mydestination, no aliases). The mail log is a file written by
// postlogd (smxd writes its own to a file as well; without it Postfix
// would log to syslog). TLS stays off, as is Postfix's own default.
const postfixMainCF = `# main.cf written by relaybench
compatibility_level = 3.6
queue_directory = %[1]s/queue
data_directory = %[1]s/data
mail_owner = postfix
setgid_group = postdrop
maillog_file = %[1]s/maillog
maillog_file_prefixes = %[1]s
myhostname = postfixbench.test
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
relayhost = [127.0.0.1]:%[2]d
smtp_dns_support_level = disabled
smtp_host_lookup = native
alias_maps =
alias_database =
`

// postfixMasterCF is the master.cf of the Postfix under test: the
// services of Postfix 3.7's default master.cf that relaying uses, the
// smtpd on the run's port, none chrooted (the chroot would need copies of
// system files in the run's queue; Postfix's own default is no chroot).
const postfixMasterCF = `# master.cf written by relaybench
127.0.0.1:%d inet n - n - - smtpd
pickup     unix  n - n 60    1 pickup
cleanup    unix  n - n -     0 cleanup
qmgr       unix  n - n 300   1 qmgr
tlsmgr     unix  - - n 1000? 1 tlsmgr
rewrite    unix  - - n -     - trivial-rewrite
bounce     unix  - - n -     0 bounce
defer      unix  - - n -     0 bounce
trace      unix  - - n -     0 bounce
verify     unix  - - n -     1 verify
flush      unix  n - n 1000? 0 flush
proxymap   unix  - - n -     - proxymap
proxywrite unix  - - n -     1 proxymap
smtp       unix  - - n -     - smtp
relay      unix  - - n -     - smtp
showq      unix  n - n -     - showq
error      unix  - - n -     - error
retry      unix  - - n -     - error
discard    unix  - - n -     - discard
anvil      unix  - - n -     1 anvil
scache     unix  - - n -     1 scache
postlog    unix-dgram n - n - 1 postlogd
`

func (p *postfixRelay) start(ctx context.Context, dir string, sinkPort int) (int, error) {
	owner, err := user.Lookup("postfix")
	if err != nil {
		return 0, fmt.Errorf("postfix: the mail_owner account: %w", err)
	}
	uid, _ := strconv.Atoi(owner.Uid)
	dir, err = filepath.Abs(dir)
	if err != nil {
		return 0, err
	}
	p.etc = filepath.Join(dir, "postfix")
	p.maillog = filepath.Join(dir, "maillog")
	// Postfix's daemons run as the postfix account and must reach their
	// queue.
	if err := os.Chmod(dir, 0o755); err != nil {
		return 0, err
	}
	for _, d := range []string{p.etc, filepath.Join(dir, "queue"), filepath.Join(dir, "data")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return 0, err
		}
	}
	if err := os.Chown(filepath.Join(dir, "data"), uid, -1); err != nil {
		return 0, err
	}
	port, err := freePort()
	if err != nil {
		return 0, err
	}
	mainCF := fmt.Appendf(nil, postfixMainCF, dir, sinkPort)
	for _, l := range p.extra {
		mainCF = append(mainCF, l+"\n"...)
	}
	if err := os.WriteFile(filepath.Join(p.etc, "main.cf"), mainCF, 0o644); err != nil {
		return 0, err
	}
	if err := os.WriteFile(filepath.Join(p.etc, "master.cf"), fmt.Appendf(nil, postfixMasterCF, port), 0o644); err != nil {
		return 0, err
	}
	if err := p.postfix(ctx, "start"); err != nil {
		return 0, err
	}
	p.started = true
	// postfix start returns once the master runs; its smtpd listener
	// may take a moment more.
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			return port, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("postfix: not listening on 127.0.0.1:%d: %w\n%s", port, ctx.Err(), p.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// postfix runs the postfix command on the instance. Postfix writes its
// errors to its mail log when stderr is not a terminal, so a failure
// shows the log's tail.
func (p *postfixRelay) postfix(ctx context.Context, verb string) error {
	out, err := exec.CommandContext(ctx, p.cmd, "-c", p.etc, verb).CombinedOutput()
	if err != nil {
		return fmt.Errorf("postfix -c %s %s: %w\n%s%s", p.etc, verb, err, out, p.logTail())
	}
	return nil
}

func (p *postfixRelay) logTail() string {
	b, err := os.ReadFile(p.maillog)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}

// stop stops the instance and reports how its log says the recipients
// went.
func (p *postfixRelay) stop(out io.Writer) error {
	if !p.started {
		return nil
	}
	p.started = false
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := p.postfix(ctx, "stop")
	if b, rerr := os.ReadFile(p.maillog); rerr == nil {
		count := func(s string) int { return bytes.Count(b, []byte(s)) }
		fmt.Fprintf(out, "postfix: sent=%d deferred=%d bounced=%d warnings=%d fatal=%d\n", count("status=sent"),
			count("status=deferred"), count("status=bounced"), count(": warning: "), count(": fatal: ")+count(": panic: "))
	}
	return err
}
