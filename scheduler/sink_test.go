package scheduler

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/smtp/client"
	"github.com/stretchr/testify/require"
)

// startSmtpSink runs Postfix's smtp-sink on a loopback port, or skips the
// test when it is not installed.
func startSmtpSink(t *testing.T, args ...string) int {
	t.Helper()
	path, err := exec.LookPath("smtp-sink")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/smtp-sink"); serr != nil {
			t.Skip("smtp-sink not installed (Debian package postfix: apt-get install postfix)")
		}
		path = "/usr/sbin/smtp-sink"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	args = append(args, fmt.Sprintf("127.0.0.1:%d", port), "64")
	cmd := exec.Command(path, args...)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Wait (bounded) until it listens.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), time.Second)
		if err == nil {
			c.Close()
			return port
		}
		if time.Now().After(deadline) {
			t.Fatalf("smtp-sink does not listen: %v", err)
		}
		time.Sleep(20 * time.Millisecond) // polling a process we do not control
	}
}

// TestRunSmtpSink relays messages through the scheduler and the client to
// Postfix's smtp-sink, over ESMTP and over LMTP.
func TestRunSmtpSink(t *testing.T) {
	for _, lmtp := range []bool{false, true} {
		t.Run(map[bool]string{false: "esmtp", true: "lmtp"}[lmtp], func(t *testing.T) {
			var args []string
			mailer := log.MailerESMTP
			if lmtp {
				args = append(args, "-L")
				mailer = log.MailerLMTP
			}
			port := startSmtpSink(t, args...)
			ml := newMemLog(clockReal{})
			content := newMemContent()
			ids := atomic.Int32{}
			sched, err := New(projections.New(), Options{
				Hostname: "mx.smx.test", Log: ml, Feed: ml, Content: content,
				Resolver: loopbackResolver{port: port, mailer: mailer},
				Client:   client.New(client.Options{HeloName: "mx.smx.test", IOTimeout: 10 * time.Second}),
				NewTxnID: func() (string, error) { return fmt.Sprintf("D%d", ids.Add(1)), nil },
			})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			runErr := make(chan error, 1)
			go func() { runErr <- sched.Run(ctx) }()
			const n = 200
			for i := 0; i < n; i++ {
				body := fmt.Sprintf("Subject: m%d\r\n\r\n.dot line\r\nbody %d\r\n", i, i)
				ref := content.put(body)
				_, err := ml.Append(ctx, log.Event{Txn: fmt.Sprintf("T%03d", i), Rcpt: log.NoRcpt, Payload: &log.TxnReceived{
					Sender: "a@a.test", Rcpts: []log.Recipient{{Addr: fmt.Sprintf("u%d@b.test", i)}, {Addr: fmt.Sprintf("v%d@b.test", i)}},
					Content: ref, ContentSize: int64(len(body)), ReceivedAt: time.Now(),
				}})
				require.NoError(t, err)
			}
			waitFor(t, ml, "deliveries", func(evs []log.Event) bool { return count(evs, log.TypeRcptDelivered) == 2*n })
			waitFor(t, ml, "releases", func(evs []log.Event) bool { return count(evs, log.TypeContentReleased) == n })
			cancel()
			<-runErr
		})
	}
}
