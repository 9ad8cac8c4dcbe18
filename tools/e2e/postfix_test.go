package e2e

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// postfixTool finds one of Postfix's test programs, installing the
// Debian package postfix when it is missing and the test may (root with
// apt-get); otherwise the test is skipped with the reason.
func postfixTool(t *testing.T, name string) string {
	t.Helper()
	find := func() string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/sbin"} {
			p := filepath.Join(dir, name)
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
		return ""
	}
	if p := find(); p != "" {
		return p
	}
	aptGet, err := exec.LookPath("apt-get")
	if err != nil || os.Geteuid() != 0 {
		t.Skipf("%s (Debian package postfix) is not installed and cannot be installed here (needs root and apt-get)", name)
	}
	cmd := exec.Command(aptGet, "install", "-y", "-q", "--no-install-recommends", "postfix")
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("%s is not installed and apt-get install postfix failed: %v\n%s", name, err, out)
	}
	if p := find(); p != "" {
		return p
	}
	t.Skipf("%s not found even after installing postfix", name)
	return ""
}

// TestPostfixSourceThroughSmxdToSink relays 200 messages of 5 KB from
// Postfix's smtp-source over 10 sessions through smxd to Postfix's
// smtp-sink, and checks that each arrives once.
func TestPostfixSourceThroughSmxdToSink(t *testing.T) {
	t.Parallel()
	sinkBin := postfixTool(t, "smtp-sink")
	sourceBin := postfixTool(t, "smtp-source")

	dump := filepath.Join(t.TempDir(), "dump")
	require.NoError(t, os.Mkdir(dump, 0o755))
	port := freePort(t)
	args := []string{"-d", dump + "/%H%M%S.", "127.0.0.1:" + strconv.Itoa(port), "100"}
	if os.Geteuid() == 0 {
		// smtp-sink refuses to keep root.
		nobody, err := user.Lookup("nobody")
		if err != nil {
			t.Skip("smtp-sink needs an unprivileged user to switch to and there is no nobody")
		}
		uid, _ := strconv.Atoi(nobody.Uid)
		require.NoError(t, os.Chown(dump, uid, -1))
		require.NoError(t, os.Chmod(filepath.Dir(dump), 0o755))
		require.NoError(t, os.Chmod(filepath.Dir(filepath.Dir(dump)), 0o755))
		args = append([]string{"-u", "nobody"}, args...)
	}
	sinkCmd := exec.Command(sinkBin, args...)
	require.NoError(t, sinkCmd.Start())
	sinkDone := make(chan struct{})
	go func() { sinkCmd.Wait(); close(sinkDone) }()
	t.Cleanup(func() {
		sinkCmd.Process.Kill()
		<-sinkDone
	})

	// smxd retries a delivery that finds the sink not yet listening.
	e := newEnv(t, envOptions{sinkPort: port, qmgr: "smtps { max_connection_rate = 100000; }"})
	p := e.start(t)
	const messages = 200
	out, err := exec.Command(sourceBin, "-s", "10", "-m", strconv.Itoa(messages), "-l", "5120",
		"-f", "source@client.test", "-t", "sink@dest.test", e.addr()).CombinedOutput()
	require.NoError(t, err, "smtp-source: %s", out)

	// Each 250 smtp-sink gives is in smxd's mail log.
	p.waitCount(t, `where=final_dot, size=\d+, stat=0`, messages)
	// Stop the sink so that every dump file is complete, then read them.
	sinkCmd.Process.Kill()
	<-sinkDone
	files, err := os.ReadDir(dump)
	require.NoError(t, err)
	ids := map[string]int{}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(dump, f.Name()))
		require.NoError(t, err)
		m := regexp.MustCompile(`(?mi)^Message-Id: (\S+)`).FindSubmatch(b)
		require.NotNil(t, m, "a dump without Message-Id: %s", f.Name())
		ids[string(m[1])]++
		require.Contains(t, string(b), "by smx.test", "relayed through smxd")
		require.True(t, strings.Contains(string(b), "X-Rcpt-Args: <sink@dest.test>"))
	}
	require.Len(t, ids, messages, "every message arrived")
	for id, n := range ids {
		require.Equal(t, 1, n, "message %s arrived %d times", id, n)
	}
	require.Equal(t, messages, p.count(`where=final_dot, size=\d+, stat=0`))
	p.stop(t)
}
