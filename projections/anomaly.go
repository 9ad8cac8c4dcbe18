package projections

import (
	"errors"
	"fmt"

	"github.com/smx-mta/smx/log"
)

// Anomaly describes an event that does not fit the recipient state machine:
// an event for an unknown transaction, an event for a recipient after its
// terminal event, a gap in the sequence numbers, and the like. Apply
// returns anomalies as errors; the fold ignores the parts of the event
// that do not fit and carries on, so a damaged log still gives a
// deterministic state and every problem is reported with its position.
type Anomaly struct {
	Kind AnomalyKind
	Seq  uint64
	Type log.EventType
	Txn  string
	Rcpt int32 // log.NoRcpt when the event concerns the whole transaction
	// Reason says what does not fit, for example "recipient is already
	// delivered (seq 812)".
	Reason string
}

// Error implements error: "seq 812 RcptDeferred S0000000000000a01:1: ...".
func (a *Anomaly) Error() string {
	where := a.Txn
	if a.Rcpt != log.NoRcpt {
		where = fmt.Sprintf("%s:%d", a.Txn, a.Rcpt)
	}
	if where == "" {
		return fmt.Sprintf("seq %d %s: %s", a.Seq, a.Type, a.Reason)
	}
	return fmt.Sprintf("seq %d %s %s: %s", a.Seq, a.Type, where, a.Reason)
}

// AnomalyKind classifies anomalies, for reports that group them.
type AnomalyKind uint8

// Anomaly kinds.
const (
	// AnomalyMalformed: an event that cannot mean anything (no payload,
	// unknown type, no ss_ta, a negative recipient index, an unknown DSN
	// kind).
	AnomalyMalformed AnomalyKind = iota + 1
	// AnomalyGap: sequence numbers are missing before the event.
	AnomalyGap
	// AnomalyUnknownTxn: the transaction was never received, or its
	// content was released and it left the queue.
	AnomalyUnknownTxn
	// AnomalyNoRecipient: the recipient index was never created.
	AnomalyNoRecipient
	// AnomalyAfterTerminal: an event for a recipient after its terminal
	// event (a second terminal event among them).
	AnomalyAfterTerminal
	// AnomalyDuplicate: a transaction received twice, a recipient index
	// created twice, content released twice.
	AnomalyDuplicate
	// AnomalyEarlyRelease: ContentReleased while recipients or DSNs still
	// needed the body.
	AnomalyEarlyRelease
	// AnomalySecondDelayWarning: a recipient warned about delay twice.
	AnomalySecondDelayWarning
)

var anomalyKindNames = [...]string{
	AnomalyMalformed:          "malformed",
	AnomalyGap:                "gap",
	AnomalyUnknownTxn:         "unknown-transaction",
	AnomalyNoRecipient:        "no-such-recipient",
	AnomalyAfterTerminal:      "after-terminal",
	AnomalyDuplicate:          "duplicate",
	AnomalyEarlyRelease:       "content-released-early",
	AnomalySecondDelayWarning: "second-delay-warning",
}

// String names the kind as reports print it, for example "after-terminal".
func (k AnomalyKind) String() string {
	if int(k) < len(anomalyKindNames) && anomalyKindNames[k] != "" {
		return anomalyKindNames[k]
	}
	return fmt.Sprintf("AnomalyKind(%d)", uint8(k))
}

// Anomalies returns the anomalies err carries: Apply returns one *Anomaly,
// or several joined with errors.Join when an event concerns several
// recipients.
func Anomalies(err error) []*Anomaly {
	if err == nil {
		return nil
	}
	var a *Anomaly
	if errors.As(err, &a) && a == err {
		return []*Anomaly{a}
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*Anomaly
		for _, e := range joined.Unwrap() {
			out = append(out, Anomalies(e)...)
		}
		return out
	}
	if errors.As(err, &a) {
		return []*Anomaly{a}
	}
	return nil
}

// anomalies collects the anomalies of one event.
type anomalies struct {
	event log.Event
	errs  []error
}

func (as *anomalies) add(kind AnomalyKind, rcpt int32, format string, args ...any) {
	as.errs = append(as.errs, &Anomaly{
		Kind:   kind,
		Seq:    as.event.Seq,
		Type:   typeOf(as.event),
		Txn:    as.event.Txn,
		Rcpt:   rcpt,
		Reason: fmt.Sprintf(format, args...),
	})
}

func (as *anomalies) err() error {
	switch len(as.errs) {
	case 0:
		return nil
	case 1:
		return as.errs[0]
	}
	return errors.Join(as.errs...)
}

// typeOf is Event.Type that tolerates a missing payload.
func typeOf(e log.Event) log.EventType {
	if e.Payload == nil {
		return 0
	}
	return e.Payload.EventType()
}
