package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

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
