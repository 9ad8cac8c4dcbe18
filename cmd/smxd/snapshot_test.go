package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gosmtp "github.com/emersion/go-smtp"
	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/projections"
)

// TestPeriodicSnapshot: every snapshot_interval smxd stores a snapshot of
// the projections in the event log, covering the events applied so far,
// which a restart then starts from.
func TestPeriodicSnapshot(t *testing.T) {
	sink := newCountingSink(t)
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "mt"), []byte(fmt.Sprintf(". %d^esmtp:[127.0.0.1]\n", sink.port)), 0o644))
	file := filepath.Join(dir, "smx.conf")
	require.NoError(t, os.WriteFile(file, []byte(`hostname = smx.test;
queue_directory = `+filepath.Join(dir, "spool")+`;
log { output = stderr; }
qmgr { event_log { archive_after = 0; snapshot_interval = 7m; } }
smar { mailertable { file = mt; } }
smtps MTA { listen_socket { address = 127.0.0.1; port = `+strconv.Itoa(port)+`; } relay_clients = { loopback }; }
`), 0o644))
	c, err := conf.Load(file)
	require.NoError(t, err)
	out := newLineWriter()
	d := newDaemon(c, slog.New(slog.DiscardHandler), true, out)
	tickers := &fakeTickers{}
	d.newTicker = tickers.newTicker
	require.NoError(t, d.Start(context.Background()))
	defer d.Stop(context.Background())
	require.Equal(t, []time.Duration{7 * time.Minute}, tickers.asked, "the snapshot ticker runs every snapshot_interval")

	cl, err := gosmtp.Dial("127.0.0.1:" + strconv.Itoa(port))
	require.NoError(t, err)
	require.NoError(t, cl.SendMail("a@client.test", []string{"b@dest.test"}, strings.NewReader("Subject: snap\r\n\r\nbody\r\n")))
	require.NoError(t, cl.Quit())
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
