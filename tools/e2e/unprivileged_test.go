package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestUnprivileged starts smxd as an ordinary user, as a developer does:
// it runs as that user on a high port without --allow-root and relays
// mail, and a port below 1024 is refused with a message that names it.
func TestUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run smxd as another user")
	}
	t.Parallel()
	uid, gid := testUser(t)
	snk := newSink(t)
	e := newEnv(t, envOptions{sinkPort: snk.port})
	// The user's own directory holds the configuration, the maps and the
	// queue; the directories above must let it in.
	require.NoError(t, os.Chown(e.dir, uid, gid))
	require.NoError(t, os.Chmod(filepath.Dir(e.dir), 0o755))
	asUser := func(args ...string) *exec.Cmd {
		cmd := exec.Command(bins.smxd, args...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
		return cmd
	}

	p := launchCmd(t, asUser("run", "-f", e.conf))
	p.waitLine(t, `msg="smxd started"`)
	p.waitLine(t, `func=smxd_start, .*smtps=MTA\[127\.0\.0\.1:`+strconv.Itoa(e.port)+`\], .*user=`+testUserName)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^Uid:\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$`).FindStringSubmatch(string(status))
	require.NotNil(t, m)
	require.Equal(t, []string{strconv.Itoa(uid), strconv.Itoa(uid), strconv.Itoa(uid), strconv.Itoa(uid)}, m[1:])
	mustSend(t, e.addr(), "a@client.test", []string{"b@dest.test"}, "unprivileged")
	snk.waitFor(t, "the message relayed by an unprivileged smxd", hasSeq("unprivileged"))
	fi, err := os.Stat(filepath.Join(e.spool, "eventlog"))
	require.NoError(t, err)
	require.Equal(t, uint32(uid), fi.Sys().(*syscall.Stat_t).Uid, "the queue is the user's")
	p.stop(t)

	start, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err == nil && strings.TrimSpace(string(start)) != "" {
		if n, _ := strconv.Atoi(strings.TrimSpace(string(start))); n <= 25 {
			t.Skipf("this machine lets ordinary users bind ports from %d on", n)
		}
	}
	conf, err := os.ReadFile(e.conf)
	require.NoError(t, err)
	low := strings.Replace(string(conf), "port = "+strconv.Itoa(e.port)+";", "port = 25;", 1)
	require.NotEqual(t, string(conf), low)
	require.NoError(t, os.WriteFile(e.conf, []byte(low), 0o644))
	out, err := asUser("run", "-f", e.conf).CombinedOutput()
	require.Error(t, err)
	require.Contains(t, string(out), "smxd: smtps MTA: listen on 127.0.0.1:25: listen tcp 127.0.0.1:25: bind: permission denied")
}
