package main

import (
	"bytes"
	"context"
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
	require.Equal(t, []string{"smxd"}, c.mtas)
	require.Equal(t, 1, c.rounds)
	_, err = parseFlags([]string{"-bin", dir, "-sessions", "0"}, &errOut)
	require.ErrorContains(t, err, "at least 1")
	_, err = parseFlags([]string{"-bin", dir, "-mta", "smxd,exim"}, &errOut)
	require.ErrorContains(t, err, `"exim" is none of smxd, postfix, direct`)
	_, err = parseFlags([]string{"-bin", dir, "-mta", "smxd,smxd"}, &errOut)
	require.ErrorContains(t, err, "named twice")
	c, err = parseFlags([]string{"-bin", dir, "-mta", "direct, smxd", "-rounds", "3"}, &errOut)
	require.NoError(t, err)
	require.Equal(t, []string{"direct", "smxd"}, c.mtas)
	require.Equal(t, 3, c.rounds)
	_, err = parseFlags([]string{"-bin", dir, "-postfix-conf", "no_equals_sign"}, &errOut)
	require.ErrorContains(t, err, "expected NAME = VALUE")
	// Without smxd in the runs its binary is not needed.
	require.NoError(t, os.Remove(filepath.Join(dir, "smxd")))
	_, err = parseFlags([]string{"-bin", dir, "-mta", "direct"}, &errOut)
	require.NoError(t, err)
	_, err = parseFlags([]string{"-bin", dir}, &errOut)
	require.ErrorContains(t, err, "run make build")
}

// TestCompare: medians and ranges per relay, the ratio of the median
// rates and of each round's pair, losses and duplicates summed, and the
// range of the load average.
func TestCompare(t *testing.T) {
	run := func(mta string, round int, seconds float64, p50, p99 string, lost, dups int, load float64) result {
		return result{mta: mta, round: round, messages: 1000, rcpts: 1, acknowledged: 1000, delivered: 1000 - lost,
			duplicates: dups, elapsed: time.Duration(seconds * float64(time.Second)), dotP50: p50, dotP99: p99,
			loadBefore: load, loadAfter: load + 1, busyBefore: load / 10}
	}
	lines := compare([]string{"postfix", "smxd"}, []result{
		run("postfix", 1, 2.5, "20.0ms", "60.0ms", 0, 0, 1), // 400/s
		run("smxd", 1, 1, "5.0ms", "15.0ms", 0, 0, 2),       // 1000/s
		run("smxd", 2, 0.8, "4.0ms", "12.0ms", 0, 1, 2),     // 1250/s
		run("postfix", 2, 2, "25.0ms", "70.0ms", 1, 0, 3),   // 1000 acknowledged, 999 arrived: 500/s
		run("postfix", 3, 4, "30.0ms", "90.0ms", 0, 0, 0.5), // 250/s
		run("smxd", 3, 0.5, "6.0ms", "19.0ms", 0, 0, 2),     // 2000/s
	})
	require.Equal(t, []string{
		"relaybench: mta=postfix rounds=3 relay_rate=400.0/s (250.0-500.0) dot_p50=25.0ms (20.0-30.0) dot_p99=70.0ms (60.0-90.0) lost=1 duplicates=0",
		"relaybench: mta=smxd rounds=3 relay_rate=1250.0/s (1000.0-2000.0) dot_p50=5.0ms (4.0-6.0) dot_p99=15.0ms (12.0-19.0) lost=0 duplicates=1",
		"relaybench: ratio smxd/postfix=3.12 (median rates; per round 2.50 2.50 8.00)",
		"relaybench: load average 0.50-4.00, CPU busy before the runs 5%-30%",
	}, lines)
}

// The configuration relaybench writes is one smxd accepts, with what the
// run needs: the listener, relaying for loopback, the mailertable to the
// sink and the queue in the run's directory.
func TestSmxConf(t *testing.T) {
	dir := t.TempDir()
	c, err := conf.LoadSource(filepath.Join(dir, "smx.conf"), []byte(smxConf(dir, 2525, 9100)), dir, conf.OSEnv())
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
	addr, err := c.MetricsAddress()
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9100", addr)
}

func TestParseMetrics(t *testing.T) {
	m := parseMetrics(`# HELP smx_cdb_syncs_total fsync/fdatasync calls of the CDB.
# TYPE smx_cdb_syncs_total counter
smx_cdb_syncs_total 1234
smx_eventlog_append_seconds_bucket{le="0.0001"} 3
smx_eventlog_append_seconds_sum 1.5
smx_events_appended_total{type="TxnReceived"} 10
smx_events_appended_total{type="RcptDelivered"} 5
`)
	require.Equal(t, 1234.0, m["smx_cdb_syncs_total"])
	require.Equal(t, 1.5, m["smx_eventlog_append_seconds_sum"])
	require.Equal(t, 15.0, m["smx_events_appended_total"])
}

func TestCPUBusy(t *testing.T) {
	busy := cpuBusy(context.Background(), 50*time.Millisecond)
	if _, err := os.Stat("/proc/stat"); err != nil {
		require.Equal(t, -1.0, busy)
		return
	}
	require.GreaterOrEqual(t, busy, 0.0)
	require.LessOrEqual(t, busy, 1.0)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	require.Equal(t, -1.0, cpuBusy(ctx, time.Hour))
}

func TestProcessCPU(t *testing.T) {
	_, ok := processCPU(os.Getpid())
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		require.False(t, ok)
		return
	}
	require.True(t, ok)
}
