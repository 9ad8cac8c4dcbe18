package server

import (
	"context"

	"github.com/smx-mta/smx/content"
)

// NewContentStore adapts the CDB (*content.Store) to ContentStore.
func NewContentStore(cdb *content.Store) ContentStore { return cdbAdapter{cdb} }

type cdbAdapter struct{ cdb *content.Store }

func (a cdbAdapter) Create(ctx context.Context, txn string, env *Envelope) (BodyWriter, error) {
	w, err := a.cdb.Create(ctx, content.Envelope{
		Txn:           txn,
		Session:       env.Session,
		Listener:      env.Listener,
		Sender:        env.Sender,
		Rcpts:         env.Rcpts,
		RET:           env.RET,
		ENVID:         env.ENVID,
		Size:          env.Size,
		Body:          env.Body,
		SMTPUTF8:      env.SMTPUTF8,
		ClientIP:      env.ClientIP,
		ClientPort:    env.ClientPort,
		ClientName:    env.ClientName,
		ClientResolve: env.ClientResolve,
		HELO:          env.HELO,
		Protocol:      env.Protocol,
		TLS:           env.TLS,
		Auth:          env.Auth,
		ReceivedAt:    env.ReceivedAt,
		DSNOf:         env.DSNOf,
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (a cdbAdapter) Release(ref string) error { return a.cdb.Release(ref) }
func (a cdbAdapter) Accepting() bool          { return a.cdb.Accepting() }
