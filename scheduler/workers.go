package scheduler

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/scheduler/dsn"
	"github.com/smx-mta/smx/smtp/client"
)

// txnReceived reads the TxnReceived event of a message.
func (s *Scheduler) txnReceived(seq uint64) (*log.TxnReceived, error) {
	ev, err := s.opts.Log.Get(seq)
	if err != nil {
		return nil, err
	}
	tr, ok := ev.Payload.(*log.TxnReceived)
	if !ok {
		return nil, fmt.Errorf("scheduler: event %d is %s, not TxnReceived", seq, ev.Type())
	}
	return tr, nil
}

// runResolve asks SMAR about each recipient of a job, each within
// SMAR_timeout, and returns the events that record the answers.
func (s *Scheduler) runResolve(ctx context.Context, job *resolveJob) []log.Event {
	tr, _ := s.txnReceived(job.seq)
	results := make([]resolveResult, len(job.rcpts))
	for i, r := range job.rcpts {
		rctx, cancel := context.WithTimeout(ctx, s.opts.SMARTimeout)
		results[i] = resolveResult{rcpt: r, result: s.opts.Resolver.Resolve(rctx, r.Addr)}
		cancel()
	}
	return resolveEvents(job, tr, results, s.opts.Clock.Now(), s.core.retry)
}

// sessionID returns the da_sess of an open session, making one for a new
// session.
func (s *Scheduler) sessionID(sess *client.Session) string {
	s.sessMu.Lock()
	defer s.sessMu.Unlock()
	id, ok := s.sessIDs[sess]
	if !ok {
		id = s.opts.ClientIDs.Next(0).String()
		s.sessIDs[sess] = id
	}
	return id
}

// runDelivery runs one delivery transaction: AttemptStarted, a session
// (reused, verified by an RSET sent with the transaction, or new), the
// transaction, then AttemptFinished and
// the recipients' outcomes in one append, and the mail log lines.
func (s *Scheduler) runDelivery(ctx context.Context, job *deliveryJob) deliveryDone {
	done := deliveryDone{job: job}
	tr, err := s.txnReceived(job.msg.Seq)
	if err != nil {
		s.opts.Logger.Error("scheduler: read message for delivery", "txn", job.msg.Txn, "err", err)
		if job.session != nil {
			job.session.Close()
		}
		return done
	}
	env := envelopeOf(job, tr, s.opts.Content)
	daTxn := s.opts.ClientIDs.Next(0).String()
	var rcptIdx []int32
	for _, r := range job.rcpts {
		rcptIdx = append(rcptIdx, r.Rcpt)
	}
	host, ip := "", ""
	if len(job.route.Hops) > 0 {
		host = job.route.Hops[0].Host
		if len(job.route.Hops[0].Addrs) > 0 {
			ip = job.route.Hops[0].Addrs[0]
		}
	}
	started := &log.AttemptStarted{DATxn: daTxn, Rcpts: rcptIdx, Mailer: job.route.Mailer, Host: host, IP: ip, Port: job.route.Port}
	if _, err := s.opts.Log.Append(ctx, log.Event{Txn: job.msg.Txn, Rcpt: log.NoRcpt, Payload: started}); err != nil {
		s.opts.Logger.Error("scheduler: append AttemptStarted", "txn", job.msg.Txn, "err", err)
		if job.session != nil {
			job.session.Close()
		}
		return done
	}

	dctx, cancel := context.WithTimeout(ctx, s.opts.DeliveryTimeout)
	defer cancel()
	var res *client.Result
	sess := job.session
	if sess != nil {
		// The RSET that verifies a cached session goes out with MAIL
		// (PIPELINING): one round trip less per reused session.
		var err error
		if res, err = sess.ResetAndSend(dctx, env); err != nil {
			// The RSET failed and closed the session, and nothing was
			// delivered: a new session takes its place.
			s.sessMu.Lock()
			delete(s.sessIDs, sess)
			s.sessMu.Unlock()
			sess, res = nil, nil
		}
	}
	var attempts []client.Attempt
	newSession := false
	if sess == nil {
		var err error
		sess, attempts, err = s.opts.Client.Connect(dctx, job.route)
		if err != nil {
			res = client.FailedResult(env, attempts, err)
			done.destDown = !res.Reply.Permanent()
		}
		newSession = err == nil
	}
	for _, a := range attempts {
		if sess == nil || a.IP != sess.IP {
			done.unreachable = append(done.unreachable, a.IP)
		}
	}
	var daSess string
	if sess != nil {
		done.sessionIP = sess.IP
		daSess = s.sessionID(sess)
		if newSession {
			s.logConnectFailures(daSess, attempts)
			s.logSession(daSess, sess)
		}
		if res == nil {
			res = sess.Send(dctx, env)
		}
		res.Attempts = attempts
		done.connected = true
		if res.Reply.Code == 421 {
			done.destDown = true
		}
	} else {
		// The session never opened: its id still names the connections
		// that failed and the recipients' lines, as the seed's SMTPC
		// gives a session its id before it connects.
		daSess = s.opts.ClientIDs.Next(0).String()
		failed := attempts
		if len(failed) == 0 {
			// Nothing to connect to (the route named no address).
			failed = []client.Attempt{{Host: res.Host, IP: res.IP, Port: res.Port, Stage: res.Stage, Reply: res.Reply}}
		}
		s.logConnectFailures(daSess, failed)
	}
	events := outcomeEvents(job, daSess, daTxn, res, done.destDown, s.opts.Clock.Now(), s.core.retry)
	if _, err := s.opts.Log.Append(ctx, events...); err != nil {
		s.opts.Logger.Error("scheduler: append delivery outcome", "txn", job.msg.Txn, "err", err)
	}
	s.logTxn(daSess, daTxn, job, res)
	for _, rr := range res.Rcpts {
		if rr.Delivered() {
			done.delivered++
		}
	}
	if sess != nil && sess.Usable() && !s.opts.NoReuseConnection {
		done.session = sess
	} else if sess != nil {
		s.sessMu.Lock()
		delete(s.sessIDs, sess)
		s.sessMu.Unlock()
		sess.Close()
	}
	return done
}

// logConnectFailures writes a session line for each connection of
// session daSess that failed before the session opened (an address that
// refused, a 4xx greeting): status=failed, where the attempt ended, the
// peer and the reply.
func (s *Scheduler) logConnectFailures(daSess string, attempts []client.Attempt) {
	for _, a := range attempts {
		ip, _ := netip.ParseAddr(a.IP)
		ln := s.opts.MailLog.ClientSession(daSess).Status("failed").Where(a.Stage)
		if a.Port != 0 {
			ln = ln.Port(a.Port)
		}
		ln.Relay(a.Host, ip).Stat(a.Reply.Code).Reply(a.Reply.String()).Write()
	}
}

// logSession writes the seed's session lines: status=connected and, with
// STARTTLS, where=connection, starttls=successful.
func (s *Scheduler) logSession(daSess string, sess *client.Session) {
	ml := s.opts.MailLog
	ip, _ := netip.ParseAddr(sess.IP)
	ml.ClientSession(daSess).Status("connected").Port(sess.Port).Relay(sess.Host, ip).Write()
	if sess.TLS != nil {
		ml.ClientSession(daSess).Where("connection").Str("starttls", "successful").
			Str("tls_version", sess.TLS.Version).Str("cipher", sess.TLS.Cipher).
			Int("bits", int64(sess.TLS.Bits)).Str("verify", sess.TLS.Verify).Write()
	}
}

// logTxn writes the seed's transaction lines: one per recipient with its
// reply, and the final dot's.
func (s *Scheduler) logTxn(daSess, daTxn string, job *deliveryJob, res *client.Result) {
	ml := s.opts.MailLog
	ip, _ := netip.ParseAddr(res.IP)
	now := s.opts.Clock.Now()
	for _, rr := range res.Rcpts {
		ml.ClientTxn(daSess, daTxn, job.msg.Txn).Rcpt(rr.Rcpt.Addr).Idx(int(rr.Rcpt.Index)).
			Stat(rr.Reply.Code).Reply(rr.Reply.String()).Where(rr.Stage).Relay(res.Host, ip).
			XDelay(res.Duration()).Delay(now.Sub(job.msg.ReceivedAt)).Write()
	}
	if res.Stage == client.StageDone || res.Stage == client.StageDot {
		ml.ClientTxn(daSess, daTxn, job.msg.Txn).Where("final_dot").Size(job.msg.Size).
			Stat(res.Reply.Code).Reply(res.Reply.String()).Write()
	}
}

// runDSN builds one DSN, stores it in the content store and queues it:
// its TxnReceived, for a delay warning the DelayNotified that marks its
// recipients warned, and the DSNQueued that links it to the original, in
// one append.
func (s *Scheduler) runDSN(ctx context.Context, job *dsnJob) error {
	now := s.opts.Clock.Now()
	tr, err := s.txnReceived(job.orig.Seq)
	if err != nil {
		return err
	}
	id, err := s.opts.NewTxnID()
	if err != nil {
		return fmt.Errorf("scheduler: new DSN id: %w", err)
	}
	host := s.opts.Hostname
	rep := &dsn.Report{
		ReportingMTA: host, To: job.to, MessageID: id + ".dsn@" + host, Date: now,
		Boundary: "=_" + id + "/" + host, QueueID: job.orig.Txn, ENVID: tr.ENVID, Sender: tr.Sender,
		Arrival: tr.ReceivedAt, Return: dsn.ReturnHeaders,
	}
	if job.kind == log.DSNFailure && job.full && !strings.EqualFold(tr.RET, "HDRS") {
		rep.Return = dsn.ReturnFull
	}
	var indexes []int32
	for _, r := range job.rcpts {
		rc := dsn.Recipient{Addr: r.Addr, ORCPT: orcptOf(tr, r)}
		s.describe(&rc, r.LastSeq, job.kind, isLMTPDestination(r.Destination))
		if job.kind == log.DSNDelay {
			rc.WillRetryUntil = tr.ReceivedAt.Add(s.opts.QueueReturnTimeout)
		}
		rep.Recipients = append(rep.Recipients, rc)
		indexes = append(indexes, r.Rcpt)
	}
	listener := ListenerDSN
	if job.doubleBounce {
		listener = ListenerDoubleBounce
	}
	body := "7BIT"
	if (tr.Body != "" && !strings.EqualFold(tr.Body, "7BIT")) || tr.SMTPUTF8 {
		body = "8BITMIME"
	}
	msg := &log.TxnReceived{
		Listener: listener, Sender: "", Rcpts: []log.Recipient{{Addr: job.to}},
		Body: body, SMTPUTF8: tr.SMTPUTF8 && !isASCII(job.to), Protocol: "LOCAL",
		MessageID: "<" + rep.MessageID + ">", ReceivedAt: now, DSNOf: job.orig.Txn,
	}
	ref, size, err := s.opts.Content.Store(ctx, id, msg, func(w io.Writer) error {
		var original io.Reader
		if rep.Return != dsn.ReturnNone {
			rc, err := s.opts.Content.Open(job.orig.Content)
			if err != nil {
				rep.Return = dsn.ReturnNone
			} else {
				defer rc.Close()
				original = rc
			}
		}
		_, err := dsn.Write(w, rep, original)
		return err
	})
	if err != nil {
		return fmt.Errorf("scheduler: store DSN for %s: %w", job.orig.Txn, err)
	}
	msg.Content, msg.ContentSize, msg.Size = ref, size, size
	events := []log.Event{{Txn: id, Rcpt: log.NoRcpt, Time: now, Payload: msg}}
	if job.kind == log.DSNDelay {
		// DelayNotified is the mark that each recipient was warned once.
		// It goes before the DSNQueued that links the warning, which marks
		// them too (for logs from before DelayNotified was written) but
		// would make this one look like a second warning if it came first.
		events = append(events, log.Event{Txn: job.orig.Txn, Rcpt: log.NoRcpt, Time: now, Payload: &log.DelayNotified{Rcpts: indexes, DSN: id}})
	}
	events = append(events, log.Event{Txn: job.orig.Txn, Rcpt: log.NoRcpt, Time: now, Payload: &log.DSNQueued{DSN: id, Kind: job.kind, Rcpts: indexes}})
	if _, err := s.opts.Log.Append(ctx, events...); err != nil {
		return fmt.Errorf("scheduler: queue DSN for %s: %w", job.orig.Txn, err)
	}
	s.opts.MailLog.Line(8).Func("q_dsn_queued").SSTa(job.orig.Txn).Str("dsn", id).
		Str("kind", job.kind).Int("rcpts", int64(len(indexes))).Str("to", job.to).Write()
	return nil
}

// describe fills a DSN recipient from the event that last changed it.
// Last-Attempt-Date is the time of that event when it records the reply of
// a delivery attempt (it names the host that answered); an expiry, a
// resolution failure or a deferral without a connection made no attempt
// then, and the field is left out (it is optional, RFC 3464 2.3.7).
func (s *Scheduler) describe(rc *dsn.Recipient, seq uint64, kind string, lmtp bool) {
	switch kind {
	case log.DSNFailure:
		rc.Action, rc.Status = dsn.ActionFailed, "5.0.0"
	case log.DSNDelay:
		rc.Action, rc.Status = dsn.ActionDelayed, "4.0.0"
	default:
		rc.Action, rc.Status = dsn.ActionRelayed, "2.0.0"
		if lmtp {
			rc.Action = dsn.ActionDelivered
		}
	}
	if seq == 0 {
		return
	}
	ev, err := s.opts.Log.Get(seq)
	if err != nil {
		return
	}
	switch p := ev.Payload.(type) {
	case *log.RcptFailed:
		rc.RemoteMTA, rc.Stage = p.Host, p.Stage
		if p.Enhanced != "" {
			rc.Status = p.Enhanced
		}
		rc.Diagnostic = p.Reason
		if p.Stage == "resolve" {
			rc.Diagnostic = p.Reason
			if p.Code > 0 {
				rc.Diagnostic = fmt.Sprintf("%d %s %s", p.Code, p.Enhanced, p.Reason)
			}
		}
		if p.Host == "" {
			rc.DiagnosticType = "x-local"
		}
	case *log.RcptExpired:
		rc.Status = "4.4.7"
		rc.Diagnostic = "delivery time expired"
		if p.LastReason != "" {
			rc.Diagnostic += "; last error: " + p.LastReason
		}
		rc.DiagnosticType = "x-local"
	case *log.RcptDeferred:
		if p.Enhanced != "" {
			rc.Status = p.Enhanced
		}
		rc.RemoteMTA, rc.Diagnostic = p.Host, p.Reason
		if p.Host == "" || p.Code == 0 {
			rc.DiagnosticType = "x-local"
		}
	case *log.RcptDelivered:
		if p.Enhanced != "" {
			rc.Status = p.Enhanced
		}
		rc.RemoteMTA, rc.Diagnostic = p.Host, p.Reply
	}
	if rc.RemoteMTA != "" {
		rc.LastAttempt = ev.Time
	}
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}
