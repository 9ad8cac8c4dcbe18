package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/smtp"
)

// bodySink is where message data goes on its way to the content store: it
// puts the Received: header in front (and a blank line after it when the
// message does not start with a header, seed 004), watches the header
// (hops, size, Message-ID) and the size, and stops writing to the store as
// soon as the message is refused, while the session keeps reading to the
// end of the data. It never holds more than the first line in memory.
type bodySink struct {
	w        BodyWriter
	received []byte
	header   *smtp.HeaderScanner
	first    []byte // the start of the first line, until it is complete
	decided  bool
	size     int64 // octets of the message as the client sent it
	stored   int64 // octets written to the store
	maxSize  int64
	maxHdr   int64
	tooBig   bool
	hdrBig   bool
	werr     error
	aborted  bool
}

func newBodySink(w BodyWriter, received []byte, maxSize, maxHdr int64) *bodySink {
	return &bodySink{w: w, received: received, header: smtp.NewHeaderScanner(), maxSize: maxSize, maxHdr: maxHdr}
}

// firstLineMax is how much of the first line bodySink holds to decide
// whether the message starts with a header.
const firstLineMax = 1024

// Write implements io.Writer. It never fails: a refused message is
// drained so that the session stays in step.
func (b *bodySink) Write(p []byte) (int, error) {
	n := len(p)
	b.size += int64(n)
	b.header.Write(p)
	if b.aborted {
		return n, nil
	}
	if b.size > b.maxSize {
		b.tooBig = true
		b.abort()
		return n, nil
	}
	if b.header.HeaderSize() > b.maxHdr {
		b.hdrBig = true
		b.abort()
		return n, nil
	}
	if !b.decided {
		i := 0
		for i < len(p) && p[i] != '\n' && len(b.first)+i < firstLineMax {
			i++
		}
		if i == len(p) {
			b.first = append(b.first, p...)
			return n, nil
		}
		b.first = append(b.first, p[:i+min(1, len(p)-i)]...)
		p = p[i+min(1, len(p)-i):]
		b.decide()
	}
	if len(p) > 0 {
		b.store(p)
	}
	return n, nil
}

// decide writes the Received: header, a blank line if the message does
// not start with a header field, and the held first line.
func (b *bodySink) decide() {
	b.decided = true
	b.store(b.received)
	if len(b.first) > 0 && string(b.first) != "\r\n" && !smtp.IsHeaderLine(b.first) {
		b.store([]byte("\r\n"))
	}
	b.store(b.first)
	b.first = nil
}

func (b *bodySink) store(p []byte) {
	if b.aborted || len(p) == 0 {
		return
	}
	n, err := b.w.Write(p)
	b.stored += int64(n)
	if err != nil {
		b.werr = err
		b.abort()
	}
}

// end is called at the end of the data: it flushes the held first line of
// a message shorter than one line.
func (b *bodySink) end() {
	if !b.decided && !b.aborted {
		b.decide()
	}
}

func (b *bodySink) abort() {
	if !b.aborted {
		b.aborted = true
		b.w.Abort()
	}
}

func (s *session) cmdData(arg string) error {
	t := s.txn
	switch {
	case arg != "":
		return s.bad(noArgs)
	case t == nil:
		return s.bad(smtp.NewReply(503, smtp.E(5, 5, 1), "Need MAIL command"))
	case t.bdat:
		return s.bad(smtp.NewReply(503, smtp.E(5, 5, 1), "DATA not allowed after BDAT"))
	case t.accepted == 0:
		return s.bad(smtp.NewReply(554, smtp.E(5, 5, 1), "No valid recipients"))
	case t.greylisted != nil:
		return s.greylistedAtData()
	}
	if s.stuffed("DATA") {
		return errQuit
	}
	if err := s.openBody(); err != nil {
		s.write(smtp.NewReply(451, smtp.E(4, 3, 0), "Temporary failure storing the message, try again later"))
		s.failTxn(451, "content store: "+err.Error())
		return nil
	}
	s.write(smtp.NewReply(354, smtp.EnhancedCode{}, "Enter mail, end with \".\" on a line by itself"))
	if err := s.flush(); err != nil {
		return errQuit
	}
	s.dc.dataDeadline = time.Now().Add(s.opts.DataTimeout)
	dr := smtp.NewDataReader(s.br, s.opts.MaxLineLength)
	_, err := dr.WriteTo(t.body)
	s.dc.dataDeadline = time.Time{}
	if err != nil {
		return s.dataError(err)
	}
	return s.finish(dr.LongLine())
}

// dataError ends a session whose message data broke the rules or whose
// connection failed in the middle of it.
func (s *session) dataError(err error) error {
	s.abortTxn()
	var ne net.Error
	reason := err.Error()
	switch {
	case errors.Is(err, smtp.ErrBareLF), errors.Is(err, smtp.ErrBareCR):
		what := "LF"
		if errors.Is(err, smtp.ErrBareCR) {
			what = "CR"
		}
		s.writeNow("421 4.5.0 %s Bare %s in message not allowed, closing connection", s.opts.Hostname, what)
		reason = "bare " + what
	case errors.As(err, &ne) && ne.Timeout():
		s.writeNow("421 4.4.2 %s Timeout reading message data, closing connection", s.opts.Hostname)
		reason = "timeout"
	}
	s.opts.MailLog.ServerTxn(s.id, s.txn.id).Where("data").Stat(421).Reply(reason).Write()
	s.txn = nil
	return errQuit
}

// openBody starts the body of the current transaction in the content store.
func (s *session) openBody() error {
	t := s.txn
	env := s.envelope()
	w, err := s.opts.Content.Create(s.ctx, t.id, env)
	if err != nil {
		s.opts.Debug.Error("smtp server: content store", "ss_ta", t.id, "err", err)
		return err
	}
	rh := smtp.ReceivedHeader{
		HELO:       s.helo,
		ClientName: s.pol.ClientName(),
		ClientAddr: s.remote.Addr().Unmap(),
		Host:       s.opts.Hostname,
		Version:    s.opts.Version,
		Protocol:   env.Protocol,
		ID:         t.id,
		Date:       s.opts.Now(),
	}
	if rh.HELO == "" {
		rh.HELO = "[" + s.remote.Addr().Unmap().String() + "]"
	}
	if s.tlsInfo != nil {
		rh.TLS = &smtp.TLSFacts{Version: s.tlsInfo.Version, Cipher: s.tlsInfo.Cipher, Bits: s.tlsInfo.Bits, Verify: s.tlsInfo.Verify}
	}
	t.body = newBodySink(w, rh.Append(make([]byte, 0, 512)), s.opts.MaxMessageSize, s.opts.MaxHeaderSize)
	return nil
}

// envelope builds the TxnReceived of the current transaction, without the
// facts of the body.
func (s *session) envelope() *Envelope {
	t := s.txn
	env := &Envelope{
		Session:       s.id,
		Listener:      s.opts.Name,
		Sender:        t.args.From.String(),
		Rcpts:         t.rcpts,
		RET:           t.args.RET,
		ENVID:         t.args.ENVID,
		Size:          t.args.Size,
		Body:          t.args.Body,
		SMTPUTF8:      t.args.SMTPUTF8,
		ClientIP:      s.remote.Addr().Unmap().String(),
		ClientPort:    int(s.remote.Port()),
		ClientName:    s.pol.ClientName(),
		ClientResolve: s.pol.ClientResolve(),
		HELO:          s.helo,
		Protocol:      smtp.Protocol(s.ehlo, s.tlsState != nil, s.auth != nil),
		TLS:           s.tlsInfo,
		Auth:          s.auth,
	}
	return env
}

// finish is the final dot (or BDAT LAST): refuse the message if it broke a
// limit, otherwise make body and event durable and only then answer 250.
func (s *session) finish(longLine bool) error {
	o := s.opts
	t := s.txn
	b := t.body
	b.end()
	var r smtp.Reply
	switch {
	case b.tooBig:
		r = s.soft(smtp.NewReply(552, smtp.E(5, 3, 4), fmt.Sprintf("Message size exceeds fixed maximum message size (%d)", o.MaxMessageSize)))
	case b.hdrBig:
		r = s.soft(smtp.NewReply(552, smtp.E(5, 6, 0), fmt.Sprintf("Headers too large (%d max)", o.MaxHeaderSize)))
	case b.header.Hops() > o.MaxHops:
		r = s.soft(smtp.NewReply(554, smtp.E(5, 4, 6), fmt.Sprintf("Too many hops (%d max), possible mail loop", o.MaxHops)))
	case longLine:
		r = s.soft(smtp.NewReply(554, smtp.E(5, 6, 0), fmt.Sprintf("Line too long (%d octets max)", o.MaxLineLength)))
	case b.werr != nil:
		o.Debug.Error("smtp server: writing message", "ss_ta", t.id, "err", b.werr)
		r = smtp.NewReply(451, smtp.E(4, 3, 0), "Error writing message, try again later")
	}
	if r.Code != 0 {
		b.abort()
		s.write(r)
		s.failTxn(r.Code, r.String())
		return nil
	}
	if t.discard || len(t.rcpts) == 0 {
		b.abort()
		s.accepted(t, b, "discarded")
		return nil
	}
	ctx := context.WithoutCancel(s.ctx)
	commitCtx, cancel := context.WithTimeout(ctx, o.IOTimeout)
	defer cancel()
	ref, err := b.w.Commit(commitCtx)
	if err != nil {
		o.Debug.Error("smtp server: commit", "ss_ta", t.id, "err", err)
		b.abort()
		s.write(smtp.NewReply(451, smtp.E(4, 3, 0), "Error writing message, try again later"))
		s.failTxn(451, "commit: "+err.Error())
		return nil
	}
	env := s.envelope()
	now := o.Now()
	env.Content = ref
	env.ContentSize = b.stored
	env.MessageID = b.header.MessageID()
	env.Hops = b.header.Hops()
	env.ReceivedAt = now
	ev := log.Event{Time: now, Txn: t.id, Rcpt: log.NoRcpt, Payload: env}
	if _, err := o.Log.Append(commitCtx, ev); err != nil {
		o.Debug.Error("smtp server: event log", "ss_ta", t.id, "err", err)
		// Unless the disk failed, the event is not in the log and nothing
		// references the body: it is given back. After a failed write or
		// sync the event may be durable all the same, and recovery would
		// find it without its body: the body stays, and the content
		// store's release of orphans at the next start
		// (content.Store.ReleaseOrphans) gives it back if no event
		// references it.
		if !errors.Is(err, log.ErrFailed) {
			if rerr := o.Content.Release(ref); rerr != nil {
				o.Debug.Error("smtp server: release body", "ss_ta", t.id, "ref", ref, "err", rerr)
			}
		}
		s.write(smtp.NewReply(451, smtp.E(4, 3, 0), "Error queueing message, try again later"))
		s.failTxn(451, "event log: "+err.Error())
		return nil
	}
	if o.AfterDurable != nil {
		o.AfterDurable(t.id)
	}
	s.accepted(t, b, "")
	return nil
}

// accepted answers 250 to a finished transaction and starts the next.
func (s *session) accepted(t *transaction, b *bodySink, status string) {
	s.write(smtp.NewReply(250, smtp.E(2, 0, 0), "Message accepted for delivery, id="+t.id))
	if s.lr.Buffered() == 0 {
		// The client waits for this reply and nothing else is pending:
		// it goes out before the mail log line, whose write every
		// session of the log shares. Under load the sessions whose
		// events one sync made durable wake together, and the 250 of
		// the last of them waited for every other's line
		// (docs/performance.md). With pipelined commands waiting, the
		// reply goes with theirs.
		s.flush()
	}
	ln := s.opts.MailLog.ServerTxn(s.id, t.id).MsgID(b.header.MessageID()).Size(b.size).Stat(0)
	if status != "" {
		ln = ln.Status(status)
	}
	ln.Write()
	s.transactions++
	s.nopBetween = 0
	t.body = nil
	s.txn = nil
	s.pol.Reset()
}

// failTxn ends the current transaction after a refused or failed message.
func (s *session) failTxn(code int, reason string) {
	t := s.txn
	s.opts.MailLog.ServerTxn(s.id, t.id).Where("final_dot").Stat(code).Reply(reason).Write()
	s.resetTxn()
}

func (s *session) cmdBdat(arg string) error {
	size, last, err := smtp.ParseBDAT(arg)
	if err != nil {
		// The chunk size is unknown, so the data that follows cannot be
		// skipped: it must never be read as commands.
		s.writeNow("421 4.5.0 %s Syntax error in BDAT, closing connection", s.opts.Hostname)
		s.logSession("bad_bdat", arg)
		return errQuit
	}
	t := s.txn
	if t != nil && t.greylisted != nil && !s.opts.NoChunking {
		// The chunk is not read: the session ends here.
		return s.greylistedAtData()
	}
	s.dc.dataDeadline = time.Now().Add(s.opts.DataTimeout)
	defer func() { s.dc.dataDeadline = time.Time{} }()
	if t == nil || t.accepted == 0 || s.opts.NoChunking {
		// The chunk is read and dropped so that its octets are never
		// taken for commands.
		if _, err := smtp.NewChunkReader(s.br, size, nil).WriteTo(discard{}); err != nil {
			return s.chunkError(err)
		}
		if s.opts.NoChunking {
			return s.bad(smtp.NewReply(502, smtp.E(5, 5, 1), "BDAT not available"))
		}
		if t == nil {
			return s.bad(smtp.NewReply(503, smtp.E(5, 5, 1), "Need MAIL command"))
		}
		return s.bad(smtp.NewReply(554, smtp.E(5, 5, 1), "No valid recipients"))
	}
	if !t.bdat {
		t.bdat = true
		t.check = smtp.NewLineChecker(s.opts.MaxLineLength)
		if err := s.openBody(); err != nil {
			if _, err := smtp.NewChunkReader(s.br, size, nil).WriteTo(discard{}); err != nil {
				return s.chunkError(err)
			}
			s.write(smtp.NewReply(451, smtp.E(4, 3, 0), "Temporary failure storing the message, try again later"))
			s.failTxn(451, "content store: "+err.Error())
			return nil
		}
	}
	if _, err := smtp.NewChunkReader(s.br, size, t.check).WriteTo(t.body); err != nil {
		return s.chunkError(err)
	}
	if last {
		if err := t.check.End(); err != nil {
			return s.chunkError(err)
		}
		return s.finish(t.check.LongLine())
	}
	b := t.body
	if b.tooBig || b.hdrBig || b.werr != nil {
		// Refuse now; RFC 3030 has the client give up the transaction.
		return s.finish(false)
	}
	s.write(smtp.NewReply(250, smtp.E(2, 0, 0), strconv.FormatInt(size, 10)+" octets received"))
	return nil
}

// chunkError ends the session after a BDAT chunk that broke the line rules
// or could not be read.
func (s *session) chunkError(err error) error {
	if s.txn == nil {
		s.writeNow("421 4.4.2 %s Error reading BDAT chunk, closing connection", s.opts.Hostname)
		return errQuit
	}
	return s.dataError(err)
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
