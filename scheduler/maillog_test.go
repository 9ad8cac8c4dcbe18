package scheduler

import (
	"context"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/log/maillog"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/scheduler/clock"
	"github.com/smx-mta/smx/smtp/client"
)

// A delivery whose connection fails has the mail log lines of the seed's
// SMTPC: the session (which never opened) has a da_sess all the same,
// named by the line that says why it failed and by the recipients' lines.
func TestMailLogConnectFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close() // nothing listens there now: the connection is refused

	ml := newMemLog(clock.Real{})
	content := newMemContent()
	var buf strings.Builder
	var mu sync.Mutex
	sched, err := New(projections.New(), Options{
		Hostname: "mx.smx.test", Log: ml, Feed: ml, Content: content,
		Resolver: loopbackResolver{port: port},
		Client:   client.New(client.Options{HeloName: "mx.smx.test", IOTimeout: 10 * time.Second}),
		NewTxnID: func() (string, error) { return "", fmt.Errorf("no DSN expected") },
		MailLog: maillog.New(maillog.Options{Sink: maillog.NewWriterSink(writerFunc(func(p []byte) (int, error) {
			mu.Lock()
			defer mu.Unlock()
			return buf.Write(p)
		}))}),
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- sched.Run(ctx) }()

	ref := content.put("Subject: x\r\n\r\nbody\r\n")
	_, err = ml.Append(ctx, log.Event{Txn: "T1", Rcpt: log.NoRcpt, Payload: &log.TxnReceived{
		Sender: "alice@a.test", Rcpts: []log.Recipient{{Addr: "u@b.test"}}, Content: ref, ReceivedAt: time.Now(),
	}})
	require.NoError(t, err)
	waitFor(t, ml, "the deferral", func(evs []log.Event) bool { return count(evs, log.TypeRcptDeferred) == 1 })
	cancel()
	require.ErrorIs(t, <-runErr, context.Canceled)

	mu.Lock()
	logged := buf.String()
	mu.Unlock()
	sess := regexp.MustCompile(`da_sess=(C[0-9A-F]+), status=failed, where=connect, port=` + fmt.Sprint(port) +
		`, relay=mx\.b\.test \[127\.0\.0\.1\], stat=451, reply=451 4\.4\.1 connect to mx\.b\.test\[127\.0\.0\.1\]: `).FindStringSubmatch(logged)
	require.NotNil(t, sess, "no session line for the failed connection in:\n%s", logged)
	require.Regexp(t, `da_sess=`+sess[1]+`, da_ta=C[0-9A-F]+, ss_ta=T1, rcpt=<u@b\.test>, idx=0, stat=451, reply=451 4\.4\.1 .*, where=connect`, logged)
	require.NotContains(t, logged, "da_sess=,")

	// The attempt's events name the same session.
	for _, ev := range ml.since(0) {
		if p, ok := ev.Payload.(*log.AttemptFinished); ok {
			require.Equal(t, sess[1], p.DASession)
		}
	}
}
