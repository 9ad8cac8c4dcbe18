package scheduler

import (
	"math/rand/v2"
	"sync"
	"time"
)

// retryPolicy computes next tries. Seed 004 ("Next Retry Time") argues for
// a retry time per destination rather than per message: a destination
// that fails gets one next try, used for every recipient deferred with it
// (the failed transaction and the others waiting in AQ), and nothing is
// tried there before it (the host status cache). The delay grows with the
// time the mail has spent in the queue: it equals that time, kept between
// retry_min_delay and retry_max_delay, so the attempts of one message come
// at roughly doubling intervals (qmail's reasoning, seed 004: an hour-long
// delay in a day-old message is worth a ten-minute delay in an hour-old
// one). A random fuzz keeps retries from falling in step with a periodic
// outage, and no next try lies beyond the expiry time.
type retryPolicy struct {
	min, max, expiry time.Duration
	fuzz             float64
	mu               sync.Mutex
	rand             *rand.Rand
}

// delay returns the retry delay for mail queued for age.
func (p *retryPolicy) delay(age time.Duration) time.Duration {
	d := min(max(age, p.min), p.max)
	if p.fuzz > 0 {
		p.mu.Lock()
		f := 1 + p.fuzz*(2*p.rand.Float64()-1)
		p.mu.Unlock()
		d = time.Duration(float64(d) * f)
	}
	return min(max(d, p.min), p.max)
}

// next returns the next try after a temporary failure at now of mail
// received at receivedAt, and whether the mail has expired instead.
func (p *retryPolicy) next(now, receivedAt time.Time) (next time.Time, expired bool) {
	expiry := receivedAt.Add(p.expiry)
	if !now.Before(expiry) {
		return expiry, true
	}
	next = now.Add(p.delay(now.Sub(receivedAt)))
	if next.After(expiry) {
		next = expiry
	}
	return next, false
}
