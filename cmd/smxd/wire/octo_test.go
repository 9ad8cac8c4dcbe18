package wire

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestQMGRConfOcto: qmgr_conf's octo: (seconds) sets the timeout of an
// idle session in the outgoing connection cache, over smtpc's
// connection_idle_timeout; without it that option applies.
func TestQMGRConfOcto(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "qmgr.conf")
	require.NoError(t, os.WriteFile(f, []byte("octo: 12\noci:10.1 4\n"), 0o644))
	qc, err := ReadQMGRConf(f)
	require.NoError(t, err)
	require.Equal(t, 12*time.Second, qc.CacheTimeout)
	c := load(t, dir, "queue_directory = spool; qmgr { smtpc { connection_idle_timeout = 40s; } } smtps MTA { listen_socket { port = 2525; } }")
	require.Equal(t, 12*time.Second, SchedulerOptions(c, qc).ConnectionCacheTimeout)
	require.Equal(t, 40*time.Second, SchedulerOptions(c, QMGRConf{}).ConnectionCacheTimeout)

	for _, bad := range []string{"octo: soon\n", "octo: 0\n", "octo:10.1 5\n"} {
		require.NoError(t, os.WriteFile(f, []byte(bad), 0o644))
		_, err := ReadQMGRConf(f)
		require.ErrorContains(t, err, "expected octo: and a number of seconds", bad)
	}
}
