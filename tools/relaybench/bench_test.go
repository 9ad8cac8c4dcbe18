package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/cmd/smxd/conf"
)

// The whole run, with the real smxd, is tested end to end in tools/e2e
// (TestRelayBench); these are its parts.

func TestSummaryCountsRecipients(t *testing.T) {
	r := result{messages: 100, rcpts: 2, acknowledged: 99, delivered: 197, duplicates: 3, elapsed: 2 * time.Second,
		dotP50: "1.0ms", dotP99: "9.0ms"}
	require.Equal(t, 1, r.lost(), "99 messages of 2 recipients: 198 owed, 197 arrived")
	require.Equal(t, "relaybench: messages=100 acknowledged=99 delivered=197 duplicates=3 lost=1 elapsed=2.000s relay_rate=49.5/s dot_p50=1.0ms dot_p99=9.0ms", r.summary())
	r.delivered = 200
	require.Zero(t, r.lost(), "a recipient the sink got without a 250 from smxd is not a loss")
}

func TestFlags(t *testing.T) {
	var errOut bytes.Buffer
	_, err := parseFlags([]string{"-bin", t.TempDir()}, &errOut)
	require.ErrorContains(t, err, "run make build")
	dir := t.TempDir()
	for _, b := range []string{"smxd", "loadgen", "smtpsink"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, b), nil, 0o755))
	}
	c, err := parseFlags([]string{"-bin", dir, "-messages", "7", "-rcpts", "3"}, &errOut)
	require.NoError(t, err)
	require.Equal(t, 7, c.messages)
	require.Equal(t, 50, c.sessions)
	require.Equal(t, "5KB", c.size)
	_, err = parseFlags([]string{"-bin", dir, "-sessions", "0"}, &errOut)
	require.ErrorContains(t, err, "at least 1")
}

// The configuration relaybench writes is one smxd accepts, with what the
// run needs: the listener, relaying for loopback, the mailertable to the
// sink and the queue in the run's directory.
func TestSmxConf(t *testing.T) {
	dir := t.TempDir()
	c, err := conf.LoadSource(filepath.Join(dir, "smx.conf"), []byte(smxConf(dir, 2525)), dir, conf.OSEnv())
	require.NoError(t, err)
	require.Empty(t, c.Warnings)
	require.Equal(t, filepath.Join(dir, "spool"), c.QueueDirectory)
	require.Equal(t, filepath.Join(dir, "mt"), c.SMAR.Mailertable.File)
	ls, err := c.SMTPS[0].Listeners()
	require.NoError(t, err)
	require.Equal(t, []conf.Listener{{Network: "tcp", Address: "127.0.0.1:2525"}}, ls)
	nets, err := c.SMTPS[0].RelayNets()
	require.NoError(t, err)
	require.Len(t, nets, 2, "127/8 and ::1")
	require.Equal(t, 100000, c.QMGR.SMTPS.MaxConnections)
}
