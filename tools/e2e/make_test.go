package e2e

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMakeInstall runs `make install` into a DESTDIR as a package build
// would, and checks what it puts in place: the binaries, the example
// configuration (which the installed smxd accepts, with every section of
// the seed present), and the systemd unit with the paths of the run. A
// second install keeps an edited configuration.
func TestMakeInstall(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	dest := t.TempDir()
	install := func() string {
		cmd := exec.Command("make", "-C", "../..", "install", "DESTDIR="+dest, "PREFIX=/usr", "SYSCONFDIR=/etc/smx", "SYSTEMDDIR=/lib/systemd/system")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return string(out)
	}
	install()
	for _, f := range []string{"usr/sbin/smxd", "usr/bin/smxctl"} {
		fi, err := os.Stat(filepath.Join(dest, f))
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o755), fi.Mode().Perm(), f)
	}
	conf := filepath.Join(dest, "etc/smx/smx.conf")
	b, err := os.ReadFile(conf)
	require.NoError(t, err)
	text := string(b)
	for _, section := range []string{"log {", "qmgr {", "smar {", "smtps MTA {", "smtpc {", "#smtps MSA {", "#map ", "#metrics {",
		"#IBDB {", "#event_log {", "#DSN_handling {", "user = smx;", "queue_directory = /var/spool/smx;"} {
		require.Contains(t, text, section)
	}
	out, err := exec.Command(filepath.Join(dest, "usr/sbin/smxd"), "config", "check", conf).CombinedOutput()
	require.NoError(t, err, string(out))
	require.Equal(t, conf+": ok\n", string(out))

	unit, err := os.ReadFile(filepath.Join(dest, "lib/systemd/system/smxd.service"))
	require.NoError(t, err)
	require.Contains(t, string(unit), "ExecStart=/usr/sbin/smxd run -f /etc/smx/smx.conf\n")
	require.Contains(t, string(unit), "ExecStartPre=/usr/sbin/smxd config check /etc/smx/smx.conf\n")
	require.Contains(t, string(unit), "ExecReload=/bin/kill -HUP $MAINPID\n")
	require.NotContains(t, string(unit), "@", "every placeholder is filled in")
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		out, err := exec.Command(analyze, "verify", "--root="+dest, filepath.Join(dest, "lib/systemd/system/smxd.service")).CombinedOutput()
		t.Logf("systemd-analyze verify: %v\n%s", err, out)
	}

	// An installed configuration is the operator's: a new install keeps
	// it.
	require.NoError(t, os.WriteFile(conf, []byte("# edited\n"+text), 0o644))
	require.Contains(t, install(), "keeping "+conf)
	b, err = os.ReadFile(conf)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(b), "# edited\n"))
}

// TestMakeRun runs `make run` as the README says, in the checkout (its
// queue is the checkout's var/smx, which git ignores): smxd starts on the
// embedded default, says where it listens and greets on 127.0.0.1:2525;
// on SIGINT (Ctrl-C) smxd exits 0 and so does make.
func TestMakeRun(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make is not installed")
	}
	if c, err := net.DialTimeout("tcp", "127.0.0.1:2525", time.Second); err == nil {
		c.Close()
		t.Skip("127.0.0.1:2525 is taken (is a `make run` going on?)")
	}
	p := launchCmd(t, exec.Command("make", "-C", "../..", "run"))
	line := p.waitLine(t, `msg="smxd started"|address already in use`)
	if strings.Contains(line, "address already in use") {
		t.Skip("127.0.0.1:2525 is taken")
	}
	require.Contains(t, line, `config="default.conf (embedded)"`)
	require.Contains(t, line, "smtps=MTA[127.0.0.1:2525]")
	c, err := net.DialTimeout("tcp", "127.0.0.1:2525", wait)
	require.NoError(t, err)
	c.SetDeadline(time.Now().Add(wait))
	greeting := make([]byte, 4)
	_, err = io.ReadFull(c, greeting)
	require.NoError(t, err)
	require.Equal(t, "220 ", string(greeting))
	c.Close()

	// Ctrl-C reaches make and smxd alike; make then dies of the signal
	// itself, whatever smxd did, so the signal goes to smxd alone and
	// make reports smxd's exit status.
	m := regexp.MustCompile(`func=smxd_start, version=\S+, pid=(\d+),`).FindStringSubmatch(p.waitLine(t, `func=smxd_start`))
	require.NotNil(t, m)
	pid, err := strconv.Atoi(m[1])
	require.NoError(t, err)
	require.NoError(t, syscall.Kill(pid, syscall.SIGINT))
	require.NoError(t, p.wait(t), "smxd, and so make run, exit 0 after SIGINT")
	require.Contains(t, p.output(), "func=smxd_stop")
}
