// Package log is the event log of smx: the single source of truth from which
// every queue is rebuilt. It owns the event catalogue (every envelope
// transition, with its msgpack encoding), durable append with group commit,
// readers from any sequence number, snapshots of projection state, and
// retention into archive segments. It never interprets events beyond what
// storage needs: folding them into queues is the job of package projections.
package log
