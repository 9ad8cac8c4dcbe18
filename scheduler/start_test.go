package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/scheduler/clock"
)

// TestDeferredLateEnough checks how a restarted scheduler tells whether a
// recipient's last deferral came after queue_delay_timeout: from its next
// try when that settles it, from the deferral event in the log otherwise.
func TestDeferredLateEnough(t *testing.T) {
	ml := newMemLog(clock.NewFake(epoch))
	opts := Options{Hostname: "mx.smx.test", Log: ml, QueueDelayTimeout: 4 * time.Hour, RetryMaxDelay: time.Hour}.withDefaults()
	c, err := newCore(&opts, projections.New(), nil)
	require.NoError(t, err)
	m := projections.Message{Txn: "T", ReceivedAt: epoch}
	deferral := func(at time.Time) uint64 {
		seq, err := ml.Append(context.Background(), log.Event{Txn: "T", Rcpt: 0, Time: at, Payload: &log.RcptDeferred{}})
		require.NoError(t, err)
		return seq
	}
	for _, tc := range []struct {
		name       string
		deferredAt time.Time
		due        time.Time
		seq        bool // the log holds the deferral
		want       bool
	}{
		{"next try before the threshold", epoch.Add(3 * time.Hour), epoch.Add(3*time.Hour + 50*time.Minute), false, false},
		{"next try an hour past the threshold", epoch.Add(4*time.Hour + 10*time.Minute), epoch.Add(5*time.Hour + 10*time.Minute), false, true},
		{"deferred before, next try after", epoch.Add(3*time.Hour + 30*time.Minute), epoch.Add(4*time.Hour + 30*time.Minute), true, false},
		{"deferred after, next try soon", epoch.Add(4*time.Hour + 5*time.Minute), epoch.Add(4*time.Hour + 30*time.Minute), true, true},
	} {
		r := projections.Recipient{Txn: "T", Due: tc.due}
		if tc.seq {
			r.LastSeq = deferral(tc.deferredAt)
		}
		require.Equal(t, tc.want, c.deferredLateEnough(m, r), tc.name)
	}
}
