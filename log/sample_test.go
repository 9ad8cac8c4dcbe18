package log

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// t0 is the time the sample events happen at.
var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.UTC)

// everyType returns one event of every type in the catalogue with every
// field set, so that a field the codec forgets shows up as a difference.
func everyType() []Event {
	tls := &TLSInfo{Version: "TLSv1.3", Cipher: "TLS_AES_256_GCM_SHA384", Bits: 256, Verify: "OK",
		PeerSubject: "CN=mx.example.net", PeerIssuer: "CN=Example CA"}
	op := Operator{User: "postmaster", Reason: "spam run"}
	ev := func(txn string, rcpt int32, p Payload) Event {
		return Event{Time: t0, Txn: txn, Rcpt: rcpt, Payload: p}
	}
	return []Event{
		ev("S0000000000000a01", NoRcpt, &TxnReceived{
			Session: "S0000000000000901", Listener: "mta", Sender: "alice@example.org",
			Rcpts: []Recipient{
				{Addr: "bob@example.net", ORCPT: "rfc822;bob@example.net", Notify: NotifyFailure | NotifyDelay},
				{Addr: "carol@example.com", Notify: NotifyNever},
				{Addr: "dave@example.com"},
			},
			RET: "HDRS", ENVID: "QQ314159", Size: 5120, Body: "8BITMIME", SMTPUTF8: true,
			ClientIP: "127.0.0.1", ClientPort: 51234, ClientName: "localhost", ClientResolve: "ok",
			HELO: "client.example.org", Protocol: "ESMTPSA", TLS: tls,
			Auth:      &AuthInfo{Mechanism: "PLAIN", User: "alice"},
			MessageID: "<20250314092653.1@example.org>", Hops: 2, Content: "S0000000000000a01",
			ContentSize: 5301, ReceivedAt: t0, DSNOf: "S0000000000000801",
		}),
		ev("S0000000000000a01", 0, &RcptResolved{
			Mailer: MailerESMTP, Port: 25,
			Hops: []NextHop{
				{Host: "mx1.example.net", Preference: 10, Addrs: []string{"127.0.0.2", "::1"}},
				{Host: "mx2.example.net", Preference: 20, Addrs: []string{}},
			},
			Destination: "esmtp:[127.0.0.2]:25",
		}),
		ev("S0000000000000a01", 1, &RcptResolved{
			Mailer: MailerLMTP, Socket: "/var/spool/smx/lmtpsock",
			Expansion: []ExpandedRcpt{
				{Rcpt: 3, Addr: "list-a@example.com", ORCPT: "rfc822;carol@example.com", Notify: NotifyFailure},
				{Rcpt: 4, Addr: "list-b@example.com"},
			},
			Owner: "owner-list@example.com", Destination: "lmtp:/var/spool/smx/lmtpsock",
		}),
		ev("S0000000000000a01", NoRcpt, &AttemptStarted{
			DASession: "C01000000010000002a", DATxn: "C01000000020000002a", Rcpts: []int32{0, 3},
			Mailer: MailerESMTP, Host: "mx1.example.net", IP: "127.0.0.2", Port: 25,
		}),
		ev("S0000000000000a01", NoRcpt, &AttemptFinished{
			DASession: "C01000000010000002a", DATxn: "C01000000020000002a", Host: "mx1.example.net",
			IP: "127.0.0.2", Port: 25, Stage: "dot", Code: 250, Enhanced: "2.0.0",
			Reply: "250 2.0.0 Ok: queued as 4Xyz", Duration: 1234567 * time.Microsecond, TLS: tls,
			Rcpts: []RcptReply{
				{Rcpt: 0, Code: 250, Enhanced: "2.1.5", Text: "250 2.1.5 Ok"},
				{Rcpt: 3, Code: 451, Enhanced: "4.2.0", Text: "451 4.2.0 greylisted"},
			},
		}),
		ev("S0000000000000a01", 3, &RcptDeferred{
			NextTry: t0.Add(15 * time.Minute), Reason: "451 4.2.0 greylisted", Code: 451,
			Enhanced: "4.2.0", Destination: "esmtp:[127.0.0.2]:25", Host: "mx1.example.net",
			HostDownUntil: t0.Add(5 * time.Minute),
		}),
		ev("S0000000000000a01", 0, &RcptDelivered{
			DATxn: "C01000000020000002a", Host: "mx1.example.net", IP: "127.0.0.2", Code: 250,
			Enhanced: "2.0.0", Reply: "250 2.0.0 Ok: queued as 4Xyz", Relayed: true,
		}),
		ev("S0000000000000a01", 2, &RcptFailed{
			Host: "mx3.example.com", IP: "127.0.0.3", Stage: "rcpt", Code: 550, Enhanced: "5.1.1",
			Reason: "550 5.1.1 no such user",
		}),
		ev("S0000000000000a01", 4, &RcptExpired{LastReason: "421 4.4.2 timeout", Enhanced: "4.4.7"}),
		ev("S0000000000000a01", NoRcpt, &DelayNotified{Rcpts: []int32{3, 4}, DSN: "S0000000000000b01"}),
		ev("S0000000000000a01", NoRcpt, &DSNQueued{DSN: "S0000000000000b02", Kind: DSNFailure, Rcpts: []int32{2}}),
		ev("S0000000000000a01", NoRcpt, &ContentReleased{Content: "S0000000000000a01"}),
		ev("S0000000000000a02", NoRcpt, &Hold{Operator: op}),
		ev("S0000000000000a02", 1, &Release{Operator: op}),
		ev("S0000000000000a02", 2, &Delete{Operator: op}),
		ev("S0000000000000a02", NoRcpt, &Requeue{Operator: op}),
		ev("S0000000000000a02", 0, &Redirect{Operator: op, NewAddr: "bob@example.com", NewRcpt: 5}),
	}
}

// mailFlow generates the events of realistic mail traffic: each message is
// a TxnReceived with one to three recipients, their RcptResolved, an
// AttemptStarted and AttemptFinished, and one RcptDelivered (or, for one in
// eight, RcptDeferred) per recipient, then ContentReleased.
type mailFlow struct {
	rng  *rand.Rand
	n    uint64
	now  time.Time
	next []Event
}

func newMailFlow(seed uint64) *mailFlow {
	return &mailFlow{rng: rand.New(rand.NewPCG(seed, 42)), now: t0}
}

// Event returns the next event of the flow.
func (f *mailFlow) Event() Event {
	if len(f.next) == 0 {
		f.next = f.message(f.next)
	}
	e := f.next[0]
	f.next = f.next[1:]
	return e
}

// Message returns the TxnReceived of a new message, as an SMTP server
// appends it.
func (f *mailFlow) Message() Event {
	f.n++
	f.now = f.now.Add(time.Millisecond)
	return f.received(fmt.Sprintf("S%016x01", f.n), 1+f.rng.IntN(3))
}

func (f *mailFlow) received(txn string, nrcpt int) Event {
	rcpts := make([]Recipient, nrcpt)
	for i := range rcpts {
		rcpts[i] = Recipient{Addr: fmt.Sprintf("user%d@dest%d.example.net", f.rng.IntN(100000), f.rng.IntN(50))}
	}
	return Event{Txn: txn, Rcpt: NoRcpt, Time: f.now, Payload: &TxnReceived{
		Session: "S" + txn[1:15] + "00", Listener: "mta", Sender: fmt.Sprintf("sender%d@example.org", f.rng.IntN(1000)),
		Rcpts: rcpts, Size: int64(1000 + f.rng.IntN(20000)), Body: "8BITMIME",
		ClientIP: "127.0.0.1", ClientPort: 40000 + f.rng.IntN(20000), HELO: "client.example.org",
		Protocol: "ESMTP", MessageID: "<" + txn + "@example.org>", Hops: 1, Content: txn,
		ContentSize: int64(5000 + f.rng.IntN(2000)), ReceivedAt: f.now,
	}}
}

func (f *mailFlow) message(out []Event) []Event {
	first := f.Message()
	txn := first.Txn
	rcpts := first.Payload.(*TxnReceived).Rcpts
	out = append(out, first)
	at := func() time.Time { f.now = f.now.Add(time.Millisecond); return f.now }
	idx := make([]int32, len(rcpts))
	for i := range rcpts {
		idx[i] = int32(i)
		out = append(out, Event{Txn: txn, Rcpt: int32(i), Time: at(), Payload: &RcptResolved{
			Mailer: MailerESMTP, Port: 25,
			Hops:        []NextHop{{Host: "mx.dest.example.net", Preference: 10, Addrs: []string{"127.0.0.2"}}},
			Destination: "esmtp:[127.0.0.2]:25",
		}})
	}
	da := fmt.Sprintf("C01%08x00000001", f.n)
	out = append(out, Event{Txn: txn, Rcpt: NoRcpt, Time: at(), Payload: &AttemptStarted{
		DASession: da, DATxn: da, Rcpts: idx, Mailer: MailerESMTP, Host: "mx.dest.example.net", IP: "127.0.0.2", Port: 25,
	}})
	out = append(out, Event{Txn: txn, Rcpt: NoRcpt, Time: at(), Payload: &AttemptFinished{
		DASession: da, DATxn: da, Host: "mx.dest.example.net", IP: "127.0.0.2", Port: 25, Stage: "done",
		Code: 250, Enhanced: "2.0.0", Reply: "250 2.0.0 Ok: queued as 3F2A1B", Duration: 12 * time.Millisecond,
	}})
	for i := range rcpts {
		if f.rng.IntN(8) == 0 {
			out = append(out, Event{Txn: txn, Rcpt: int32(i), Time: at(), Payload: &RcptDeferred{
				NextTry: f.now.Add(15 * time.Minute), Reason: "451 4.3.0 try again later", Code: 451,
				Enhanced: "4.3.0", Destination: "esmtp:[127.0.0.2]:25", Host: "mx.dest.example.net",
			}})
			continue
		}
		out = append(out, Event{Txn: txn, Rcpt: int32(i), Time: at(), Payload: &RcptDelivered{
			DATxn: da, Host: "mx.dest.example.net", IP: "127.0.0.2", Code: 250, Enhanced: "2.0.0",
			Reply: "250 2.0.0 Ok: queued as 3F2A1B",
		}})
	}
	out = append(out, Event{Txn: txn, Rcpt: NoRcpt, Time: at(), Payload: &ContentReleased{Content: txn}})
	return out
}
