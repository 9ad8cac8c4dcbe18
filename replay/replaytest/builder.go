// Package replaytest builds event logs for tests: a Builder writes the
// events smxd would write for a story ("receive A to x and y; defer x;
// deliver y") with a clock the test drives. It is used by the tests of
// replay, smxctl and the scheduler; nothing else imports it.
package replaytest

import (
	"context"
	"fmt"
	"time"

	"github.com/smx-mta/smx/log"
)

// Epoch is where a Builder's clock starts unless told otherwise.
var Epoch = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// Builder accumulates events with sequence numbers from 1 and the time of
// its clock.
type Builder struct {
	Now    time.Time
	events []log.Event
}

// New returns a Builder whose clock is at Epoch.
func New() *Builder { return &Builder{Now: Epoch} }

// Events returns the events so far.
func (b *Builder) Events() []log.Event { return b.events }

// Advance moves the clock.
func (b *Builder) Advance(d time.Duration) *Builder {
	b.Now = b.Now.Add(d)
	return b
}

// Add appends an event at the clock's time.
func (b *Builder) Add(txn string, rcpt int32, p log.Payload) *Builder {
	b.events = append(b.events, log.Event{Seq: uint64(len(b.events)) + 1, Time: b.Now, Txn: txn, Rcpt: rcpt, Payload: p})
	return b
}

// Receive records a transaction from sender to rcpts with a body of size
// bytes stored under the content reference txn.
func (b *Builder) Receive(txn, sender string, size int64, rcpts ...string) *Builder {
	p := &log.TxnReceived{
		Session:     "S" + txn,
		Listener:    "MTA",
		Sender:      sender,
		ClientIP:    "127.0.0.1",
		ClientPort:  40000 + len(b.events),
		HELO:        "client.example",
		Protocol:    "ESMTP",
		MessageID:   fmt.Sprintf("<%s@client.example>", txn),
		Content:     txn,
		ContentSize: size,
		ReceivedAt:  b.Now,
	}
	for _, r := range rcpts {
		p.Rcpts = append(p.Rcpts, log.Recipient{Addr: r})
	}
	return b.Add(txn, log.NoRcpt, p)
}

// Resolve routes recipient rcpt to host over ESMTP; the destination is
// "esmtp:[ip]:25".
func (b *Builder) Resolve(txn string, rcpt int32, host, ip string) *Builder {
	return b.Add(txn, rcpt, &log.RcptResolved{
		Mailer:      log.MailerESMTP,
		Hops:        []log.NextHop{{Host: host, Preference: 10, Addrs: []string{ip}}},
		Destination: Dest(ip),
	})
}

// Dest is the destination Resolve names for ip.
func Dest(ip string) string { return "esmtp:[" + ip + "]:25" }

// Attempt records a delivery transaction to host for rcpts, started and
// finished with code.
func (b *Builder) Attempt(txn, host, ip string, code int, rcpts ...int32) *Builder {
	b.Add(txn, log.NoRcpt, &log.AttemptStarted{DATxn: "C" + txn, Rcpts: rcpts, Mailer: log.MailerESMTP, Host: host, IP: ip, Port: 25})
	return b.Add(txn, log.NoRcpt, &log.AttemptFinished{DATxn: "C" + txn, Host: host, IP: ip, Port: 25, Stage: "done", Code: code, Duration: 120 * time.Millisecond})
}

// Start records only the start of an attempt, as a crash leaves it.
func (b *Builder) Start(txn, host, ip string, rcpts ...int32) *Builder {
	return b.Add(txn, log.NoRcpt, &log.AttemptStarted{DATxn: "C" + txn, Rcpts: rcpts, Mailer: log.MailerESMTP, Host: host, IP: ip, Port: 25})
}

// Deliver records a delivery.
func (b *Builder) Deliver(txn string, rcpt int32, host, ip string) *Builder {
	return b.Add(txn, rcpt, &log.RcptDelivered{DATxn: "C" + txn, Host: host, IP: ip, Code: 250, Enhanced: "2.0.0", Reply: "250 2.0.0 Ok: queued"})
}

// Defer records a temporary failure with the next try after next.
func (b *Builder) Defer(txn string, rcpt int32, ip string, next time.Duration, reply string) *Builder {
	return b.Add(txn, rcpt, &log.RcptDeferred{NextTry: b.Now.Add(next), Reason: reply, Code: 421, Enhanced: "4.3.0", Destination: Dest(ip), Host: ip})
}

// Fail records a permanent failure.
func (b *Builder) Fail(txn string, rcpt int32, ip string, reply string) *Builder {
	return b.Add(txn, rcpt, &log.RcptFailed{Host: ip, IP: ip, Stage: "rcpt", Code: 550, Enhanced: "5.1.1", Reason: reply})
}

// Bounce queues a failure DSN dsn for txn's rcpts and receives it.
func (b *Builder) Bounce(txn, dsn, to string, rcpts ...int32) *Builder {
	b.Add(dsn, log.NoRcpt, &log.TxnReceived{Sender: "", Rcpts: []log.Recipient{{Addr: to}}, Content: dsn, ContentSize: 1500, ReceivedAt: b.Now, DSNOf: txn, Protocol: "LOCAL"})
	return b.Add(txn, log.NoRcpt, &log.DSNQueued{DSN: dsn, Kind: log.DSNFailure, Rcpts: rcpts})
}

// Release records that txn's content was released.
func (b *Builder) Release(txn string) *Builder {
	return b.Add(txn, log.NoRcpt, &log.ContentReleased{Content: txn})
}

// WriteTo appends the events to l in batches, keeping their times, and
// checks that the log numbered them as the Builder did.
func (b *Builder) WriteTo(ctx context.Context, l *log.Log) error {
	for i := 0; i < len(b.events); i += 512 {
		batch := make([]log.Event, 0, 512)
		for _, e := range b.events[i:min(i+512, len(b.events))] {
			e.Seq = 0
			batch = append(batch, e)
		}
		last, err := l.Append(ctx, batch...)
		if err != nil {
			return err
		}
		if want := uint64(min(i+512, len(b.events))); last != want {
			return fmt.Errorf("replaytest: log numbered up to %d, builder to %d", last, want)
		}
	}
	return nil
}
