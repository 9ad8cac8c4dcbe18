package scheduler

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/scheduler/clock"
	"github.com/smx-mta/smx/smtp/client"
	"github.com/smx-mta/smx/smtp/resolver"
	"github.com/stretchr/testify/require"
)

// hangingResolver routes hang.test to 127.0.0.1 and hangs on any other
// domain until its context ends, as SMAR does when DNS does not answer;
// it reports how long the context had left when the call came.
type hangingResolver struct{ left chan time.Duration }

func (r hangingResolver) Resolve(ctx context.Context, rcpt string) resolver.Result {
	deadline, ok := ctx.Deadline()
	if !ok {
		r.left <- -1
	} else {
		r.left <- time.Until(deadline)
	}
	if strings.HasSuffix(rcpt, "@hang.test") {
		return resolver.Result{Address: rcpt, Mailer: log.MailerESMTP, Destination: "esmtp:hang.test:25",
			Hops: []resolver.Hop{{Host: "mx.hang.test", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}}}
	}
	<-ctx.Done()
	return resolver.Result{Failure: &resolver.Failure{Code: 451, Enhanced: "4.4.3", Text: "resolver: " + ctx.Err().Error()}}
}

// hangingClient hangs on every connection until its context ends, as a
// server that never answers would; it reports how long the context had
// left.
type hangingClient struct{ left chan time.Duration }

func (c hangingClient) Connect(ctx context.Context, route client.Route) (*client.Session, []client.Attempt, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		c.left <- -1
	} else {
		c.left <- time.Until(deadline)
	}
	<-ctx.Done()
	return nil, nil, ctx.Err()
}

// TestSMARAndDeliveryTimeouts: a resolution is cut off after SMAR_timeout
// and a delivery attempt after delivery_timeout; the recipients are
// deferred with the reason.
func TestSMARAndDeliveryTimeouts(t *testing.T) {
	const smarTimeout, deliveryTimeout = 300 * time.Millisecond, 400 * time.Millisecond
	ml := newMemLog(clock.Real{})
	resolveLeft, connectLeft := make(chan time.Duration, 4), make(chan time.Duration, 4)
	sched, err := New(projections.New(), Options{
		Hostname: "mx.smx.test", Log: ml, Feed: ml, Content: newMemContent(),
		Resolver: hangingResolver{left: resolveLeft}, Client: hangingClient{left: connectLeft},
		NewTxnID:    func() (string, error) { return "D1", nil },
		SMARTimeout: smarTimeout, DeliveryTimeout: deliveryTimeout,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runErr := make(chan error, 1)
	go func() { runErr <- sched.Run(ctx) }()

	for _, m := range []struct{ txn, rcpt string }{{"T1", "x@dns-down.test"}, {"T2", "y@hang.test"}} {
		_, err := ml.Append(ctx, log.Event{Txn: m.txn, Rcpt: log.NoRcpt, Payload: &log.TxnReceived{
			Sender: "s@client.test", Rcpts: []log.Recipient{{Addr: m.rcpt}}, Content: "c", ReceivedAt: time.Now(),
		}})
		require.NoError(t, err)
	}
	waitFor(t, ml, "both recipients deferred", func(evs []log.Event) bool { return count(evs, log.TypeRcptDeferred) == 2 })
	for range 2 {
		left := <-resolveLeft
		require.True(t, left > 0 && left <= smarTimeout, "a resolution may take SMAR_timeout, had %v", left)
	}
	left := <-connectLeft
	require.True(t, left > 0 && left <= deliveryTimeout, "an attempt may take delivery_timeout, had %v", left)

	reasons := map[string]string{}
	for _, ev := range ml.since(0) {
		if p, ok := ev.Payload.(*log.RcptDeferred); ok {
			reasons[ev.Txn] = p.Reason
		}
	}
	require.Contains(t, reasons["T1"], "context deadline exceeded")
	require.Contains(t, reasons["T2"], "context deadline exceeded")
	cancel()
	require.ErrorIs(t, <-runErr, context.Canceled)
}
