package scheduler

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
)

// TestEnvelopeCarriesORCPT checks what the next server is told as ORCPT:
// the client's for recipients named at RCPT, the one the expansion carried
// over for recipients an alias created.
func TestEnvelopeCarriesORCPT(t *testing.T) {
	tr := &log.TxnReceived{Rcpts: []log.Recipient{{Addr: "a@x.example", ORCPT: "rfc822;A@X.example"}, {Addr: "list@x.example"}}}
	job := &deliveryJob{msg: projections.Message{Txn: "T"}, rcpts: []projections.Recipient{
		{Txn: "T", Rcpt: 0, Addr: "a@x.example"},
		{Txn: "T", Rcpt: 2, Addr: "m1@y.example", ORCPT: "rfc822;list@x.example"},
	}}
	env := envelopeOf(job, tr, newMemContent())
	require.Len(t, env.Rcpts, 2)
	require.Equal(t, "rfc822;A@X.example", env.Rcpts[0].ORCPT)
	require.Equal(t, "rfc822;list@x.example", env.Rcpts[1].ORCPT)
}
