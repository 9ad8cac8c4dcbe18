// Package log is the event log of smx: the single source of truth from which
// every queue is rebuilt, the seed's IBDB. It owns the event catalogue
// (every envelope transition, with its msgpack encoding), durable append
// with group commit, readers from any sequence number, snapshots of
// projection state, and retention into archive segments. It never
// interprets events beyond what storage needs: folding them into queues is
// the job of package projections, and which messages are finished is the
// projections' answer, passed in to Archive. It does not touch the content
// store, and log/maillog and log/ids are packages of their own.
//
// The API in brief:
//
//	l, err := log.Open(dir, log.Options{})         // the daemon; one process
//	last, err := l.Append(ctx, events...)          // durable, atomic, numbered
//	it := l.Iter(from); for it.Next() { it.Event() } // archive + live, gapless
//	e, err := l.Get(seq)
//	sub, err := l.Subscribe(ctx, from)             // live tail, after sync
//	err = l.SaveSnapshot(seq, data)
//	snap, err := l.LatestSnapshot(verify)
//	stats, err := l.Archive(ctx, finished)
//	st := l.Stats()                                // appends, events, WAL syncs
//	ro, err := log.OpenReadOnly(dir, log.Options{}) // smxctl, while smxd runs
//
// docs/eventlog.md describes the catalogue, the on-disk formats, the
// durability guarantee and the Pebble tuning.
package log
