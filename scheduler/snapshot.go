package scheduler

import (
	"context"
	"io"
	"time"

	"github.com/smx-mta/smx/log"
)

// Snapshot writes the scheduler's projection in the snapshot format
// (projections.Queue.Snapshot) to w on the scheduler's own goroutine, and
// returns the sequence number of the last event it covers. The daemon
// stores it with the log's SaveSnapshot every snapshot_interval. The
// scheduler waits while it is written, so w should be memory.
func (s *Scheduler) Snapshot(ctx context.Context, w io.Writer) (seq uint64, err error) {
	if cerr := s.call(ctx, func(c *core) {
		seq = c.q.Seq()
		err = c.q.Snapshot(w)
	}); cerr != nil {
		return 0, cerr
	}
	return seq, err
}

// Finished answers the log's Archive (log.FinishedFunc) from the
// scheduler's projection, on the scheduler's goroutine: whether the
// message txn has left the queue, and when. It returns false when the
// scheduler has stopped.
func (s *Scheduler) Finished(ctx context.Context, txn string) (at time.Time, finished bool) {
	s.call(ctx, func(c *core) { at, finished = c.q.Finished(txn) })
	return at, finished
}

// ConnState is the outgoing connection state of one destination IP (the
// seed's per-destination concurrency with slow start).
type ConnState struct {
	// Key is the destination IP, or the LMTP socket.
	Key string
	// Window is the number of connections allowed now, Max its ceiling
	// (ocm:), Open the sessions open (busy and idle), Busy those in a
	// transaction, Waiting the delivery transactions queued for it.
	Window, Max, Open, Busy, Waiting int
	// Unreachable is true when the last connection to it failed: new
	// transactions of routes with other addresses wait for the next one.
	Unreachable bool
}

// ConnStates returns the connection state of every destination IP that
// has one, sorted by key, for the daemon's metrics and status.
func (s *Scheduler) ConnStates(ctx context.Context) ([]ConnState, error) {
	var out []ConnState
	err := s.call(ctx, func(c *core) {
		for _, k := range sortedKeys(c.conns) {
			cn := c.conns[k]
			out = append(out, ConnState{Key: k, Window: cn.window, Max: cn.max, Open: cn.open, Busy: cn.busy, Waiting: cn.pending.Len(), Unreachable: cn.unreachable})
		}
	})
	return out, err
}

// FlushAll requeues every deferred recipient (sendmail's forced queue
// run, "sendmail -q"), like FlushDomain for all domains. It returns how
// many it requeued.
func (s *Scheduler) FlushAll(ctx context.Context, who log.Operator) (int, error) {
	return s.flush(ctx, who, func(string) bool { return true })
}
