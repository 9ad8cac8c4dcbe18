package main

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/projections"
)

// TestPeriodicSnapshot: every snapshot_interval smxd stores a snapshot of
// the projections in the event log, covering the events applied so far,
// which a restart then starts from.
func TestPeriodicSnapshot(t *testing.T) {
	sink := newCountingSink(t)
	td := startDaemon(t, sink.port, "event_log { archive_after = 0; snapshot_interval = 7m; }")
	d, out, tickers := td.d, td.out, td.tickers
	require.Equal(t, []time.Duration{7 * time.Minute}, tickers.asked, "the snapshot ticker runs every snapshot_interval")

	td.send(t, "a@client.test", "b@dest.test", "snap")
	select {
	case <-sink.received:
	case <-time.After(30 * time.Second):
		t.Fatal("the message was not delivered")
	}

	tickers.fire(t, 7*time.Minute)
	m, _ := out.wait(t, 0, `func=qmgr_snapshot, seq=(\d+), bytes=\d+`)
	seq, err := strconv.ParseUint(m[1], 10, 64)
	require.NoError(t, err)
	require.Positive(t, seq, "the snapshot covers the message's events")
	snap, err := d.storage.Load().log.LatestSnapshot(nil)
	require.NoError(t, err)
	require.Equal(t, seq, snap.Seq)
	q, err := projections.RestoreBytes(snap.Data)
	require.NoError(t, err)
	require.Equal(t, seq, q.Seq())
	require.EqualValues(t, 1, q.Counters().Received.Msgs)
}
