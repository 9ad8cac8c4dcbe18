package scheduler

import (
	"context"
	"io"

	"github.com/smx-mta/smx/content"
	"github.com/smx-mta/smx/log"
)

// StoreContent adapts the content store to Content.
type StoreContent struct{ CDB *content.Store }

// Open implements Content.
func (s StoreContent) Open(ref string) (io.ReadCloser, error) { return s.CDB.Open(ref) }

// Release implements Content.
func (s StoreContent) Release(ref string) error { return s.CDB.Release(ref) }

// Store implements Content: it writes the message with the envelope of
// its TxnReceived beside it and commits it.
func (s StoreContent) Store(ctx context.Context, txn string, env *log.TxnReceived, write func(io.Writer) error) (string, int64, error) {
	w, err := s.CDB.Create(ctx, content.Envelope{
		Txn: txn, Session: env.Session, Listener: env.Listener, Sender: env.Sender, Rcpts: env.Rcpts,
		RET: env.RET, ENVID: env.ENVID, Size: env.Size, Body: env.Body, SMTPUTF8: env.SMTPUTF8,
		Protocol: env.Protocol, ReceivedAt: env.ReceivedAt, DSNOf: env.DSNOf,
	})
	if err != nil {
		return "", 0, err
	}
	if err := write(w); err != nil {
		w.Abort()
		return "", 0, err
	}
	ref, err := w.Commit(ctx)
	if err != nil {
		return "", 0, err
	}
	return ref, w.Size(), nil
}

// LogFeed adapts the log's subscription to Feed.
type LogFeed struct {
	Log *log.Log
	sub *log.Subscription
	// next is the sequence number the subscription delivers next.
	next uint64
	// cancel ends the subscription when the feed is asked to restart.
	cancel context.CancelFunc
}

// Next implements Feed: it subscribes from after+1 on the first call (and
// again if asked for another position) and returns every event that is
// ready, at least one.
func (f *LogFeed) Next(ctx context.Context, after uint64) ([]log.Event, error) {
	if f.sub == nil || f.next != after+1 {
		if f.cancel != nil {
			f.cancel()
		}
		sctx, cancel := context.WithCancel(ctx)
		sub, err := f.Log.Subscribe(sctx, after+1)
		if err != nil {
			cancel()
			return nil, err
		}
		f.sub, f.next, f.cancel = sub, after+1, cancel
	}
	var out []log.Event
	select {
	case ev, ok := <-f.sub.Events():
		if !ok {
			return nil, f.sub.Err()
		}
		out = append(out, ev)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for len(out) < 1024 {
		select {
		case ev, ok := <-f.sub.Events():
			if !ok {
				f.next = out[len(out)-1].Seq + 1
				return out, nil
			}
			out = append(out, ev)
			continue
		default:
		}
		break
	}
	f.next = out[len(out)-1].Seq + 1
	return out, nil
}
