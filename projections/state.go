package projections

import "fmt"

// RcptState is where a recipient stands in its life, as the log says. The
// numbers appear in snapshots: they are never reused or renumbered.
type RcptState uint8

// Recipient states. The first group is live (the recipient still needs
// work); from StateDelivered on they are terminal: no event may change a
// terminal recipient again.
const (
	// StateNone marks an index that no event has created (a gap left by
	// an expansion or redirect that skipped indexes).
	StateNone RcptState = 0
	// StateIncoming: received (or created by expansion or redirect) and
	// not yet resolved.
	StateIncoming RcptState = 1
	// StateResolved: RcptResolved named a delivery agent and destination.
	StateResolved RcptState = 2
	// StateInFlight: an AttemptStarted included the recipient and no
	// outcome has been logged yet.
	StateInFlight RcptState = 3
	// StateDeferred: RcptDeferred; waiting in DEFEDB for its next try.
	StateDeferred RcptState = 4

	// StateDelivered: RcptDelivered.
	StateDelivered RcptState = 5
	// StateFailed: RcptFailed (bounced).
	StateFailed RcptState = 6
	// StateExpired: RcptExpired (bounced after queue_return_timeout).
	StateExpired RcptState = 7
	// StateDeleted: an operator Delete.
	StateDeleted RcptState = 8
	// StateRedirected: an operator Redirect gave its place to a new
	// recipient.
	StateRedirected RcptState = 9
	// StateExpanded: RcptResolved expanded the alias into new recipients.
	StateExpanded RcptState = 10

	stateCount = 11
)

var stateNames = [stateCount]string{
	StateNone:       "none",
	StateIncoming:   "incoming",
	StateResolved:   "resolved",
	StateInFlight:   "inflight",
	StateDeferred:   "deferred",
	StateDelivered:  "delivered",
	StateFailed:     "failed",
	StateExpired:    "expired",
	StateDeleted:    "deleted",
	StateRedirected: "redirected",
	StateExpanded:   "expanded",
}

// String returns the state's name as dumps and JSON print it, for example
// "deferred".
func (s RcptState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("RcptState(%d)", uint8(s))
}

// Live reports whether s still needs work: incoming, resolved, in flight
// or deferred.
func (s RcptState) Live() bool { return s >= StateIncoming && s <= StateDeferred }

// Terminal reports whether s is final: no event changes it again.
func (s RcptState) Terminal() bool { return s >= StateDelivered && s < stateCount }

// QueueName names the seed's queue a recipient is in.
type QueueName string

// The queues of seed 004. A terminal recipient is in none of them ("").
const (
	// IQDB is the incoming queue: recipients never deferred and not in
	// AQ.
	IQDB QueueName = "IQDB"
	// AQ is the active queue: recipients the scheduler took for
	// resolution or delivery, and (as the log tells it) recipients
	// resolved or in flight.
	AQ QueueName = "AQ"
	// DEFEDB is the deferred queue: recipients deferred at least once and
	// not in AQ.
	DEFEDB QueueName = "DEFEDB"
)
