package projections

import (
	"fmt"

	"github.com/smx-mta/smx/log"
)

// Problem is an invariant the state of a Queue breaks.
type Problem struct {
	// Rule names the invariant: "refcount", "releasable", "due-index",
	// "body-released" or "body-missing".
	Rule   string
	Txn    string
	Rcpt   int32 // log.NoRcpt for the message as a whole
	Reason string
}

// String renders the problem as "rule: ss_ta:index: reason".
func (p Problem) String() string {
	if p.Rcpt == log.NoRcpt {
		return fmt.Sprintf("%s: %s: %s", p.Rule, p.Txn, p.Reason)
	}
	return fmt.Sprintf("%s: %s:%d: %s", p.Rule, p.Txn, p.Rcpt, p.Reason)
}

// Check verifies the invariants that can be read off the state:
//
//   - every message's reference count equals its live recipients plus its
//     recipients owed a DSN, and the messages listed as releasable are
//     exactly those at zero;
//   - every message still referenced has its body: exists (the content
//     store's Exists, or nil to skip this check) reports the content
//     reference present, and no ContentReleased was applied to it;
//   - the scheduling indexes, when built, hold exactly the live recipients
//     that are neither held nor in AQ.
//
// It returns the problems found in the order received, none when all hold.
func (q *Queue) Check(exists func(content string) bool) []Problem {
	var out []Problem
	for _, slot := range q.slotsBySeq() {
		m := q.store.at(slot)
		txn := m.txn()
		var refs int32
		for i := range m.rcpts {
			r := &m.rcpts[i]
			if r.state.Live() || r.flags&rcptDSNOwed != 0 {
				refs++
			}
			if q.indexed {
				want := r.state.Live() && r.flags&rcptClaimed == 0 && !m.held(r)
				have := r.heapPos >= 0
				if have {
					h := q.heapOf(r)
					pos := int(r.heapPos)
					if pos >= h.len() || h.entries[pos].slot != slot || h.entries[pos].idx != uint32(i) || h.entries[pos].due != r.due {
						out = append(out, Problem{"due-index", txn, int32(i), "due index entry does not point back at the recipient"})
					}
				}
				if want != have {
					out = append(out, Problem{"due-index", txn, int32(i), fmt.Sprintf("in due index: %v, should be: %v", have, want)})
				}
			}
		}
		if refs != m.refs {
			out = append(out, Problem{"refcount", txn, log.NoRcpt, fmt.Sprintf("reference count %d, recipients say %d", m.refs, refs)})
		}
		_, listed := q.releasable[slot]
		if wantListed := refs == 0 && m.flags&msgContentRemoved == 0; listed != wantListed {
			out = append(out, Problem{"releasable", txn, log.NoRcpt, fmt.Sprintf("listed releasable: %v, should be: %v", listed, wantListed)})
		}
		if refs > 0 {
			switch {
			case m.flags&msgContentRemoved != 0:
				out = append(out, Problem{"body-released", txn, log.NoRcpt, fmt.Sprintf("content %s released while %d references remain", m.content(), refs)})
			case exists != nil && !exists(m.content()):
				out = append(out, Problem{"body-missing", txn, log.NoRcpt, fmt.Sprintf("content %s is missing from the content store (%d references)", m.content(), refs)})
			}
		}
	}
	return out
}
