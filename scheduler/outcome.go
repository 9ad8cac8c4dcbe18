package scheduler

import (
	"io"
	"strings"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
	"github.com/smx-mta/smx/smtp/client"
	"github.com/smx-mta/smx/smtp/resolver"
)

// envelopeOf builds the client's envelope of a delivery job from the
// message's TxnReceived.
func envelopeOf(job *deliveryJob, tr *log.TxnReceived, content Content) *client.Envelope {
	env := &client.Envelope{
		Txn: job.msg.Txn, From: job.sender, RET: tr.RET, ENVID: tr.ENVID, Body: tr.Body,
		SMTPUTF8: tr.SMTPUTF8, Size: job.msg.Size,
	}
	ref := job.msg.Content
	env.Open = func() (io.ReadCloser, error) { return content.Open(ref) }
	for _, r := range job.rcpts {
		env.Rcpts = append(env.Rcpts, client.Recipient{Index: r.Rcpt, Addr: r.Addr, Notify: r.Notify, ORCPT: orcptOf(tr, r)})
	}
	return env
}

// orcptOf returns the RFC 3461 original recipient of r: the ORCPT given at
// RCPT for the recipients named there (in the message's TxnReceived), and
// for a recipient an alias expansion created, the one the expansion carried
// over (the projection keeps it), which the resolver fills from the
// expanded recipient, or as "rfc822;alias" when that had none.
func orcptOf(tr *log.TxnReceived, r projections.Recipient) string {
	if tr != nil && r.Rcpt >= 0 && int(r.Rcpt) < len(tr.Rcpts) {
		return tr.Rcpts[r.Rcpt].ORCPT
	}
	return r.ORCPT
}

// outcomeEvents turns the result of one delivery transaction into the
// events that record it: AttemptFinished, then per recipient RcptDelivered,
// RcptFailed, or RcptDeferred (RcptExpired once queue_return_timeout has
// passed). With destDown the deferrals mark the destination down until
// their next try, which the scheduler then uses for every recipient
// waiting for it.
func outcomeEvents(job *deliveryJob, daSess, daTxn string, res *client.Result, destDown bool, now time.Time, retry *retryPolicy) []log.Event {
	txn := job.msg.Txn
	af := &log.AttemptFinished{
		DASession: daSess, DATxn: daTxn, Host: res.Host, IP: res.IP, Port: res.Port,
		Stage: res.Stage, Code: res.Reply.Code, Enhanced: res.Reply.Enhanced, Reply: res.Reply.String(),
		Duration: res.Duration(), TLS: res.TLS,
	}
	for _, rr := range res.Rcpts {
		af.Rcpts = append(af.Rcpts, log.RcptReply{Rcpt: rr.Rcpt.Index, Code: rr.Reply.Code, Enhanced: rr.Reply.Enhanced, Text: rr.Reply.String()})
	}
	events := []log.Event{{Txn: txn, Rcpt: log.NoRcpt, Time: now, Payload: af}}
	next, expired := retry.next(now, job.msg.ReceivedAt)
	lmtp := job.route.Mailer == log.MailerLMTP
	for _, rr := range res.Rcpts {
		var p log.Payload
		rep := rr.Reply
		switch {
		case rr.Delivered():
			p = &log.RcptDelivered{
				DATxn: daTxn, Host: res.Host, IP: res.IP, Code: rep.Code, Enhanced: rep.Enhanced, Reply: rep.String(),
				// The next server cannot send the success DSN asked for: it
				// does not offer DSN, or it is the final delivery (LMTP).
				Relayed: rr.Rcpt.Notify&log.NotifySuccess != 0 && (!res.DSN || lmtp),
			}
		case rr.Permanent():
			p = &log.RcptFailed{Host: res.Host, IP: res.IP, Stage: rr.Stage, Code: rep.Code, Enhanced: rep.Enhanced, Reason: rep.String()}
		case expired:
			p = &log.RcptExpired{LastReason: rep.String(), Enhanced: "4.4.7"}
		default:
			d := &log.RcptDeferred{NextTry: next, Reason: rep.String(), Code: rep.Code, Enhanced: rep.Enhanced,
				Destination: job.dest, Host: res.Host}
			if destDown {
				d.HostDownUntil = next
			}
			p = d
		}
		events = append(events, log.Event{Txn: txn, Rcpt: rr.Rcpt.Index, Time: now, Payload: p})
	}
	return events
}

// resolveEvents turns the resolver's answers for one job into events.
func resolveEvents(job *resolveJob, tr *log.TxnReceived, results []resolveResult, now time.Time, retry *retryPolicy) []log.Event {
	var events []log.Event
	next := job.next
	for _, rr := range results {
		r := rr.rcpt
		// An expansion carries the expanded recipient's ORCPT over to the
		// recipients it creates, through any depth of nesting.
		orig := log.Recipient{Addr: r.Addr, Notify: r.Notify, ORCPT: orcptOf(tr, r)}
		var p log.Payload
		res := rr.result
		switch {
		case res.Failure != nil && res.Failure.Temporary():
			at, expired := retry.next(now, job.receivedAt)
			if expired {
				p = &log.RcptExpired{LastReason: res.Failure.Error(), Enhanced: "4.4.7"}
			} else {
				p = &log.RcptDeferred{NextTry: at, Reason: res.Failure.Error(), Code: res.Failure.Code, Enhanced: res.Failure.Enhanced}
			}
		case res.Failure != nil:
			p = res.Failure.RcptFailed()
		default:
			ev := res.Event(next, orig)
			next += int32(len(ev.Expansion))
			p = ev
		}
		events = append(events, log.Event{Txn: r.Txn, Rcpt: r.Rcpt, Time: now, Payload: p})
	}
	job.end = next
	return events
}

// resolveResult pairs a recipient with the resolver's answer.
type resolveResult struct {
	rcpt   projections.Recipient
	result resolver.Result
}

// isLMTPDestination reports whether a destination key names LMTP.
func isLMTPDestination(dest string) bool { return strings.HasPrefix(dest, log.MailerLMTP+":") }
