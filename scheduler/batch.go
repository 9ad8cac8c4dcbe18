package scheduler

import (
	"sync"

	"github.com/smx-mta/smx/log"
)

// durableBatcher appends the events of many workers in one Append, waits
// for them to be durable once, and then runs what each worker had to do
// after its append. Resolution and release workers hand their events to
// it instead of each appending and waiting on its own: one goroutine
// wakes for the WAL sync that covers them all, instead of one per job,
// which under load woke dozens of goroutines per sync beside the SMTP
// sessions waiting to answer the final dot (docs/performance.md). Jobs
// keep their order.
type durableBatcher struct {
	s       *Scheduler
	mu      sync.Mutex
	queue   []batchedJob
	stopped bool // run has returned: add runs continuations itself
	signal  chan struct{}
}

// batchedJob is one worker's events and what runs once they are durable
// (or failed: err is the Append's error).
type batchedJob struct {
	events []log.Event
	then   func(err error)
}

func newDurableBatcher(s *Scheduler) *durableBatcher {
	return &durableBatcher{s: s, signal: make(chan struct{}, 1)}
}

// add queues events; then runs on the batcher's goroutine after they are
// appended. events may be empty: then runs in its turn all the same.
func (b *durableBatcher) add(events []log.Event, then func(err error)) {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		// Run's context is done: an Append would fail with its error.
		then(b.s.ctx.Err())
		return
	}
	b.queue = append(b.queue, batchedJob{events: events, then: then})
	b.mu.Unlock()
	select {
	case b.signal <- struct{}{}:
	default:
	}
}

// run appends what is queued until ctx is done, and then once more, so
// that every job queued before the end gets its continuation (with the
// context's error, as a worker's own Append would have).
func (b *durableBatcher) run() {
	for {
		select {
		case <-b.signal:
			b.flush(false)
		case <-b.s.ctx.Done():
			b.flush(true)
			return
		}
	}
}

// flush appends the queued jobs' events and runs their continuations;
// last marks the batcher stopped in the same step, so that no job is
// left in the queue.
func (b *durableBatcher) flush(last bool) {
	b.mu.Lock()
	jobs := b.queue
	b.queue = nil
	b.stopped = last
	b.mu.Unlock()
	if len(jobs) == 0 {
		return
	}
	var events []log.Event
	for _, j := range jobs {
		events = append(events, j.events...)
	}
	var err error
	if len(events) > 0 {
		_, err = b.s.opts.Log.Append(b.s.ctx, events...)
	}
	for _, j := range jobs {
		if len(j.events) == 0 {
			j.then(nil)
		} else {
			j.then(err)
		}
	}
}
