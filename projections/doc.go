// Package projections folds the events of the log into the in-memory queues
// of seed 004: the incoming queue (IQDB), the active queue (AQ) and the
// deferred queue (DEFEDB), together with the per-message reference counts
// that keep bodies alive, the host status cache and the traffic counters.
// It never writes to the log, never touches the content store and does no
// I/O of its own: the scheduler owns a Queue and feeds it events, the
// replay engine rebuilds one from the log and snapshots.
//
// # The recipient state machine
//
// Every recipient of a transaction (ss_ta, index) has one state. Live
// states still need work; terminal states are final.
//
//	            TxnReceived / expansion / Redirect
//	                          |
//	                          v
//	                      incoming ---------------------+
//	                          |  RcptResolved(mailer)   |
//	                          v                         |
//	                      resolved                      |  RcptDeferred
//	                          |  AttemptStarted         |  (from any live state)
//	                          v                         v
//	                      inflight ---------------> deferred
//
//	any live state --> delivered | failed | expired | deleted |
//	                   redirected | expanded              (terminal)
//
// Any live state may move to any other live state (a recipient can be
// deferred before it was resolved, resolved again after a restart, and so
// on) and to any terminal state:
//
//   - TxnReceived creates recipients 0..n-1 in state incoming, due at the
//     time of the event.
//   - RcptResolved with a Mailer: resolved, with its Destination.
//     RcptResolved without a Mailer is an alias expansion: the recipient
//     becomes expanded (terminal) and each ExpandedRcpt is created at its
//     own index in state incoming, with the list Owner (or the owner its
//     parent had) as its envelope sender and the ORCPT the expansion
//     carried over (Recipient.ORCPT, for the DSNs about it).
//   - AttemptStarted: every recipient it lists is inflight.
//     AttemptFinished changes nothing; the outcome per recipient follows.
//   - RcptDeferred: deferred, due at NextTry (at the event when NextTry is
//     zero). From its first deferral on the recipient belongs to DEFEDB.
//     A HostDownUntil marks Destination down until then in the host
//     status cache.
//   - RcptDelivered, RcptFailed, RcptExpired: delivered, failed, expired.
//     A delivery also clears the destination's host status.
//   - Delete: deleted, without a DSN (a DSN still owed is cancelled).
//     On the message (Rcpt NoRcpt) it applies to every recipient.
//   - Redirect: redirected; recipient NewRcpt is created with NewAddr in
//     state incoming, inheriting NOTIFY, the owner and the ORCPT. On the
//     message (Rcpt NoRcpt) every live recipient is redirected and the
//     one NewRcpt takes all their places, with the message's sender, no
//     ORCPT and the NOTIFY they had in common (none when they differed).
//   - Hold and Release set and clear a flag on a recipient or, with Rcpt
//     NoRcpt, on the whole message; releasing the message also releases
//     its recipients. A held recipient keeps its state but is never
//     offered to the scheduler.
//   - Requeue makes the deferred recipients it names (all of the message
//     with NoRcpt) due at the time of the event and clears the host status
//     of their destinations.
//   - DelayNotified marks the recipients it lists as warned: it is the
//     mark the scheduler goes by, and a second warning for one recipient
//     is an anomaly. The scheduler appends it together with the DSNQueued
//     of kind "delay" that links the warning, in one append. DSNQueued
//     settles the DSNs owed for the recipients it lists (all owed of its
//     kind when the list is empty); one of kind "delay" marks them warned
//     too, without the anomaly check, so that logs written before
//     DelayNotified was appended replay to the same state.
//   - ContentReleased removes the message from the projection. Applied
//     while references remain, it is an anomaly and the message stays,
//     marked as having lost its body.
//
// An event that does not fit (unknown transaction, recipient already
// terminal, index in use) is reported by Apply as an *Anomaly and the parts
// that do not fit are ignored, so the same log always gives the same state
// and nothing is skipped silently.
//
// # Queues
//
// A live recipient is in exactly one queue:
//
//   - AQ when the scheduler holds it (Take or Claim), and, as the log tells
//     it, when it is resolved or inflight;
//   - otherwise DEFEDB once it was deferred at least once;
//   - otherwise IQDB.
//
// AQ membership by Take and Claim is runtime state: it is not an event, it
// is not in snapshots, and the durable dumps ignore it. The scheduler
// offers IQDB by age and DEFEDB by next try (the seed's EDBC) through two
// heaps that are built on the first scheduling call, so that a replay for
// mailq or audit does not pay for them.
//
// # Reference counts and DSNs
//
// A message's reference count is its live recipients plus its terminal
// recipients that are still owed a DSN. A failed or expired recipient is
// owed a failure DSN unless NOTIFY excludes FAILURE (NOTIFY=NEVER, or a
// list without FAILURE); a delivered recipient is owed a success DSN when
// NOTIFY has SUCCESS and RcptDelivered says Relayed (the next server could
// not take the request on). The null sender is never owed a DSN of its
// own (RFC 5321 4.5.5), but a failed or expired recipient of a message
// from the null sender (a bounce QMGR made, or one that came in from
// outside) is owed a double bounce, unless NOTIFY says NEVER or the
// message is itself a double bounce (DSNOf set and Listener
// ListenerDoubleBounce), whose failure owes nothing: never a loop. Owing
// it in the fold is what keeps a crash between the failure and the double
// bounce from losing it. At zero the
// message is listed by Releasable: the scheduler appends ContentReleased
// and asks the content store to release the body. A DSNQueued with an
// empty DSN field settles the DSNs it lists without naming a DSN message,
// for the cases where the scheduler decides not to send one.
//
// # Restart
//
// A restarted daemon restores the newest good snapshot and applies the rest
// of the log. What the scheduler then sees:
//
//   - AQ is empty.
//   - Every live, not held recipient is offered again. Recipients that
//     were resolved or inflight when the daemon stopped are due at once:
//     their due time is when they were taken, which is past. They keep
//     their state, destination and LastSeq, so the scheduler can tell an
//     interrupted attempt (inflight) from a fresh one; it resolves them
//     again before delivery. Delivery is at least once: an attempt that
//     was in flight may be repeated.
//   - Terminal recipients are never offered again.
//   - Releasable lists the messages whose ContentReleased was not logged
//     yet, so an interrupted release is finished.
//   - The host status cache and the counters are as the log left them.
//
// # Memory
//
// A message costs one slot (96 bytes, in pages of 4096 slots), one
// allocation for all its strings, one for its recipients (40 bytes each)
// and an 8-byte entry in the ss_ta index; a recipient waiting in IQDB or
// DEFEDB costs one 16-byte heap entry. Destinations are interned. With one
// million deferred recipients, one per message, that is about 260 bytes per
// recipient (BenchmarkDeferredMemory).
package projections
