// Package replay rebuilds the projections (package projections) from the
// event log and its snapshots, and reads the log for the operator: the
// queue as it was at any sequence number or time, the invariant checks of
// `smxctl verify`, the story of one message for `smxctl audit`, the traffic
// between two points for `smxctl stats`, and the text and JSON lines of
// `smxctl replay`.
//
// It reads the log through Source (FromLog adapts a *log.Log; Events holds
// a log in memory) and never writes to it, except SaveSnapshot, which
// stores a snapshot the daemon asks for. It never touches the content
// store: Verify takes the store's Exists as a function.
//
// Recovery in smxd is Recover: the newest snapshot that decodes (older
// ones if the newest is damaged), then the events after it. A damaged or
// missing record stops the rebuild with an error naming its sequence
// number; events that do not fit the state machine are applied as far as
// they fit and listed as anomalies.
package replay
