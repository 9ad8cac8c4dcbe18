package client

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/textproto"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/smx-mta/smx/log"
)

// maxHeaderPeek is how much of a message is looked at to decide whether
// its header needs SMTPUTF8.
const maxHeaderPeek = 64 << 10

// txn is the state of one transaction on a session.
type txn struct {
	s   *Session
	env *Envelope
	res *Result
	// decided marks recipients whose result is final.
	decided []bool
	// verify says the session came from a cache and starts with RSET to
	// verify it (ResetAndSend); resetErr is set when that RSET failed.
	verify   bool
	resetErr error
}

// decide sets the result of recipient i unless it is already decided.
func (t *txn) decide(i int, rep Reply, stage string) {
	if t.decided[i] {
		return
	}
	t.decided[i] = true
	t.res.Rcpts[i].Reply = rep
	t.res.Rcpts[i].Stage = stage
}

// decideRest sets the result of every undecided recipient and ends the
// transaction in stage.
func (t *txn) decideRest(rep Reply, stage string) *Result {
	for i := range t.res.Rcpts {
		t.decide(i, rep, stage)
	}
	return t.end(rep, stage)
}

func (t *txn) end(rep Reply, stage string) *Result {
	t.res.Reply, t.res.Stage = rep, stage
	t.res.Finish = t.s.opts.Now()
	return t.res
}

// broke ends the transaction after a network or protocol error in stage:
// the session is gone and undecided recipients get a reply that says so.
func (t *txn) broke(err error, stage string) *Result {
	t.s.close()
	return t.decideRest(t.s.failure(err, stage), stage)
}

// Send runs one transaction for env. Recipients that the server refuses at
// RCPT keep that reply; the others get the reply to MAIL, DATA or the final
// dot (LMTP: their own reply after the dot). A network error ends the
// session (Usable turns false) and defers the undecided recipients.
func (s *Session) Send(ctx context.Context, env *Envelope) *Result {
	res, _ := s.send(ctx, env, false)
	return res
}

// ResetAndSend is Reset followed by Send, for a session taken from a
// cache: the RSET that verifies the session goes out in one write with
// MAIL and RCPT when the server offers PIPELINING (RFC 2920 lets RSET
// stand anywhere in a group), which saves a round trip per reused
// session. If the RSET fails (the connection is gone, or the reply is not
// 250) the session is closed, nothing of the transaction was delivered,
// and the error says so, as Reset's does: the caller connects anew.
// Otherwise the result is Send's.
func (s *Session) ResetAndSend(ctx context.Context, env *Envelope) (*Result, error) {
	if s.broken {
		return nil, fmt.Errorf("client: reset %s: %w", s.peer(), errSessionBroken)
	}
	res, t := s.send(ctx, env, true)
	if t.resetErr != nil {
		return nil, t.resetErr
	}
	return res, nil
}

func (s *Session) send(ctx context.Context, env *Envelope, verify bool) (*Result, *txn) {
	t := &txn{s: s, env: env, decided: make([]bool, len(env.Rcpts)), verify: verify}
	res := t.start(ctx)
	return res, t
}

func (t *txn) start(ctx context.Context) *Result {
	s, env := t.s, t.env
	t.res = &Result{
		Host: s.Host, IP: s.IP, Port: s.Port, TLS: s.TLS,
		DSN: s.Ext.Has("DSN"), Start: s.opts.Now(),
		Rcpts: make([]RcptResult, len(env.Rcpts)),
	}
	for i, r := range env.Rcpts {
		t.res.Rcpts[i].Rcpt = r
	}
	if s.broken {
		return t.decideRest(localReply(451, "4.4.2", "connection with %s is closed", s.peer()), StageMail)
	}
	if err := ctx.Err(); err != nil {
		return t.decideRest(localReply(451, "4.4.2", "delivery to %s cancelled: %v", s.peer(), err), StageMail)
	}
	stop := context.AfterFunc(ctx, s.interrupt)
	defer stop()
	s.transactions++
	return t.run()
}

func (t *txn) run() *Result {
	s, env := t.s, t.env
	if len(env.Rcpts) == 0 {
		return t.end(localReply(554, "5.5.1", "no recipients"), StageMail)
	}
	if env.Body == "BINARYMIME" && !(s.Ext.Has("BINARYMIME") && s.Ext.Has("CHUNKING")) {
		return t.decideRest(localReply(554, "5.6.3", "%s does not support BINARYMIME, which this message needs", s.peer()), StageMail)
	}
	if limit, ok := s.Ext.Size(); ok && limit > 0 && env.Size > limit {
		return t.decideRest(localReply(552, "5.3.4", "message size %d exceeds size limit %d of %s", env.Size, limit, s.peer()), StageMail)
	}
	needUTF8 := !isASCII(env.From)
	for _, r := range env.Rcpts {
		needUTF8 = needUTF8 || !isASCII(r.Addr)
	}
	if needUTF8 && !s.Ext.Has("SMTPUTF8") {
		return t.decideRest(localReply(550, "5.6.7", "SMTPUTF8 is required, but was not offered by %s", s.peer()), StageMail)
	}
	rc, err := env.Open()
	if err != nil {
		return t.decideRest(localReply(451, "4.3.0", "cannot read the message: %v", err), StageMail)
	}
	defer rc.Close()
	body := s.bodyReader(rc)
	defer body.Reset(nil) // rc is closed: no reference to it stays with the session
	useUTF8 := s.Ext.Has("SMTPUTF8") && (needUTF8 || env.SMTPUTF8)
	if env.SMTPUTF8 && !useUTF8 && headerHas8Bit(body) {
		return t.decideRest(localReply(550, "5.6.7", "SMTPUTF8 is required, but was not offered by %s", s.peer()), StageMail)
	}

	chunking := s.ESMTP && s.Ext.Has("CHUNKING")
	pipelining := s.ESMTP && s.Ext.Has("PIPELINING")
	// RSET clears what the last transaction left on the server when it
	// stopped after MAIL, and verifies a session from a cache. With
	// PIPELINING it goes out with MAIL; otherwise it takes a round trip
	// of its own.
	rset := s.dirty || t.verify
	if rset && !pipelining {
		rep, err := s.roundTrip(s.opts.Timeouts.Rset, "RSET")
		if failed := t.rsetFailed(rep, err); failed != nil {
			return failed
		}
		s.dirty = false
		rset = false
	}
	if rset {
		s.cmd("RSET")
	}
	s.cmd("MAIL FROM:<%s>%s", env.From, t.mailParams(useUTF8))
	if !pipelining {
		if err := s.flush(s.opts.Timeouts.Mail); err != nil {
			return t.broke(err, StageMail)
		}
		rep, err := s.read(s.opts.Timeouts.Mail)
		if err != nil {
			return t.broke(err, StageMail)
		}
		if rep.Class() != 2 {
			return t.decideRest(rep, StageMail)
		}
	}
	// From here on the server holds a transaction until a final reply.
	s.dirty = true

	var mailReply Reply
	if pipelining {
		// RFC 2920: MAIL, every RCPT and DATA go out in one write; the
		// replies come back in order.
		for _, r := range env.Rcpts {
			s.cmd("RCPT TO:<%s>%s", r.Addr, t.rcptParams(r, useUTF8))
		}
		if !chunking {
			s.cmd("DATA")
		}
		if err := s.flush(s.opts.Timeouts.Mail); err != nil {
			if rset && t.verify {
				return t.rsetFailed(Reply{}, err)
			}
			return t.broke(err, StageMail)
		}
		if rset {
			// The replies to MAIL, RCPT and DATA are not read: the
			// session is closed, so the server drops the transaction.
			rep, err := s.read(s.opts.Timeouts.Rset)
			if failed := t.rsetFailed(rep, err); failed != nil {
				return failed
			}
		}
		rep, err := s.read(s.opts.Timeouts.Mail)
		if err != nil {
			return t.broke(err, StageMail)
		}
		mailReply = rep
	}

	accepted := 0
	var last Reply
	for i, r := range env.Rcpts {
		var rep Reply
		var err error
		if pipelining {
			rep, err = s.read(s.opts.Timeouts.Rcpt)
		} else {
			rep, err = s.roundTrip(s.opts.Timeouts.Rcpt, "RCPT TO:<%s>%s", r.Addr, t.rcptParams(r, useUTF8))
		}
		if err != nil {
			return t.broke(err, StageRcpt)
		}
		last = rep
		if pipelining && mailReply.Class() != 2 {
			continue
		}
		if rep.Class() == 2 {
			accepted++
			continue
		}
		t.decide(i, rep, StageRcpt)
	}

	if pipelining && mailReply.Class() != 2 {
		if !chunking {
			if _, err := t.abortData(); err != nil {
				return t.broke(err, StageData)
			}
		}
		return t.decideRest(mailReply, StageMail)
	}
	if accepted == 0 {
		if pipelining && !chunking {
			if _, err := t.abortData(); err != nil {
				return t.broke(err, StageData)
			}
		}
		return t.end(last, StageRcpt)
	}
	if chunking {
		return t.sendChunks(body, accepted)
	}
	var rep Reply
	if pipelining {
		rep, err = s.read(s.opts.Timeouts.DataInit)
	} else {
		rep, err = s.roundTrip(s.opts.Timeouts.DataInit, "DATA")
	}
	if err != nil {
		return t.broke(err, StageData)
	}
	if rep.Code != 354 {
		return t.decideRest(rep, StageData)
	}
	return t.sendData(body, accepted)
}

// rsetFailed returns nil when RSET was answered with 250. Otherwise it
// closes the session and ends the transaction: for a session being
// verified (ResetAndSend) with resetErr set, so that the caller connects
// anew; else with the recipients deferred by the error or refused by the
// reply, as after any command that failed.
func (t *txn) rsetFailed(rep Reply, err error) *Result {
	if err == nil && rep.Code == 250 {
		return nil
	}
	s := t.s
	if t.verify {
		s.close()
		if err == nil {
			err = fmt.Errorf("client: RSET to %s: %s", s.peer(), rep)
		}
		t.resetErr = fmt.Errorf("client: reset %s: %w", s.peer(), err)
		return t.decideRest(localReply(451, "4.4.2", "connection with %s is closed", s.peer()), StageMail)
	}
	if err != nil {
		return t.broke(err, StageMail)
	}
	s.close()
	return t.decideRest(rep, StageMail)
}

// abortData reads the reply to a pipelined DATA after MAIL or every RCPT
// failed. If the server still said 354, an empty message is ended with a
// lone dot: the server has no recipients to deliver it to.
func (t *txn) abortData() (Reply, error) {
	rep, err := t.s.read(t.s.opts.Timeouts.DataInit)
	if err != nil || rep.Code != 354 {
		return rep, err
	}
	t.s.cmd(".")
	if err := t.s.flush(t.s.opts.Timeouts.DataBlock); err != nil {
		return rep, err
	}
	return t.s.read(t.s.opts.Timeouts.DataFinal)
}

// readError marks an error reading the message, as opposed to writing it.
type readError struct{ err error }

func (e readError) Error() string { return "read message: " + e.err.Error() }
func (e readError) Unwrap() error { return e.err }

// errReader tags the errors of r as readErrors.
type errReader struct{ r io.Reader }

func (e errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		err = readError{err}
	}
	return n, err
}

// bodyFailed handles an error while sending the body. A message that could
// not be read is never ended with a dot: the connection is dropped so that
// the server discards what it got.
func (t *txn) bodyFailed(err error, stage string) *Result {
	var re readError
	if errors.As(err, &re) {
		t.s.close()
		return t.decideRest(localReply(451, "4.3.0", "cannot read the message: %v", re.err), stage)
	}
	return t.broke(err, stage)
}

// sendData sends the body after 354, dot-stuffed, and reads the final
// reply or replies.
func (t *txn) sendData(body io.Reader, accepted int) *Result {
	s := t.s
	s.dw.timeout = s.opts.Timeouts.DataBlock
	dot := textproto.NewWriter(s.w).DotWriter()
	if _, err := io.Copy(dot, errReader{body}); err != nil {
		return t.bodyFailed(err, StageData)
	}
	if err := dot.Close(); err != nil {
		return t.broke(err, StageData)
	}
	if err := s.flush(s.opts.Timeouts.DataBlock); err != nil {
		return t.broke(err, StageData)
	}
	return t.finalReplies(accepted)
}

// sendChunks sends the body with BDAT (RFC 3030) in chunks of ChunkSize,
// lines ending in CRLF, and reads the final reply or replies.
func (t *txn) sendChunks(body *bufio.Reader, accepted int) *Result {
	s := t.s
	raw, chunk := s.chunkBuffers(t.env.Size)
	prevCR := false
	for {
		n, err := io.ReadFull(body, raw)
		if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
			return t.bodyFailed(readError{err}, StageData)
		}
		last := err != nil
		if !last {
			if _, perr := body.Peek(1); perr == io.EOF {
				last = true
			} else if perr != nil {
				return t.bodyFailed(readError{perr}, StageData)
			}
		}
		chunk, prevCR = toCRLF(chunk[:0], raw[:n], prevCR)
		if last && (len(chunk) == 0 && n > 0 || len(chunk) > 0 && chunk[len(chunk)-1] != '\n') {
			chunk = append(chunk, '\r', '\n')
		}
		if last {
			s.cmd("BDAT %d LAST", len(chunk))
		} else {
			s.cmd("BDAT %d", len(chunk))
		}
		s.w.Write(chunk)
		if err := s.flush(s.opts.Timeouts.DataBlock); err != nil {
			return t.broke(err, StageData)
		}
		if last {
			return t.finalReplies(accepted)
		}
		rep, err := s.read(s.opts.Timeouts.DataBlock)
		if err != nil {
			return t.broke(err, StageData)
		}
		if rep.Class() != 2 {
			return t.decideRest(rep, StageData)
		}
	}
}

// bodyBufferSize is the size of the buffer the message is read through.
const bodyBufferSize = 32 << 10

// bodyReader returns the session's reader of the message, reading rc.
func (s *Session) bodyReader(rc io.Reader) *bufio.Reader {
	if s.body == nil {
		s.body = bufio.NewReaderSize(rc, bodyBufferSize)
	} else {
		s.body.Reset(rc)
	}
	return s.body
}

// keptChunkSize bounds the BDAT buffers a session keeps between
// transactions: a larger message gets buffers of its own, which are
// dropped after it, so that an idle cached session holds little memory.
const keptChunkSize = 64 << 10

// chunkBuffers returns the buffer a chunk is read into and the one its
// line ends are fixed in (CRLF: up to twice as long), for a message of
// about size bytes (the size recorded when it was received; 0 if
// unknown). A chunk is the smaller of ChunkSize and a little more than
// size, so that a message of the expected size goes in one BDAT LAST; a
// message longer than size is sent in more chunks, which is as correct.
func (s *Session) chunkBuffers(size int64) (raw, chunk []byte) {
	n := s.opts.ChunkSize
	if size > 0 && size < int64(n) {
		// One byte more than the body, so that ReadFull sees its end,
		// rounded up to 4 KiB.
		n = min(n, int(size+1+4095)&^4095)
	}
	if n > keptChunkSize {
		return make([]byte, n), make([]byte, 0, 2*n+2)
	}
	if cap(s.chunkRaw) < n {
		s.chunkRaw = make([]byte, n)
		s.chunk = make([]byte, 0, 2*n+2)
	}
	return s.chunkRaw[:n], s.chunk[:0]
}

// toCRLF appends src to dst with every bare LF turned into CRLF; prevCR
// says whether the byte before src was CR.
func toCRLF(dst, src []byte, prevCR bool) ([]byte, bool) {
	for len(src) > 0 {
		i := bytes.IndexByte(src, '\n')
		if i < 0 {
			dst = append(dst, src...)
			return dst, src[len(src)-1] == '\r'
		}
		dst = append(dst, src[:i]...)
		if (i == 0 && !prevCR) || (i > 0 && src[i-1] != '\r') {
			dst = append(dst, '\r')
		}
		dst = append(dst, '\n')
		src = src[i+1:]
		prevCR = false
	}
	return dst, prevCR
}

// finalReplies reads the reply to the end of data: one for SMTP, one per
// accepted recipient for LMTP (RFC 2033 4.2).
func (t *txn) finalReplies(accepted int) *Result {
	s := t.s
	s.dirty = false
	if !s.LMTP {
		rep, err := s.read(s.opts.Timeouts.DataFinal)
		if err != nil {
			return t.broke(err, StageDot)
		}
		for i := range t.res.Rcpts {
			t.decide(i, rep, StageDot)
		}
		if rep.Class() == 2 {
			return t.end(rep, StageDone)
		}
		return t.end(rep, StageDot)
	}
	var last Reply
	for i := range t.env.Rcpts {
		if t.decided[i] {
			continue
		}
		rep, err := s.read(s.opts.Timeouts.DataFinal)
		if err != nil {
			return t.broke(err, StageDot)
		}
		t.decide(i, rep, StageDot)
		last = rep
	}
	return t.end(last, StageDone)
}

// mailParams returns the ESMTP parameters of MAIL, each with a leading
// space.
func (t *txn) mailParams(smtputf8 bool) string {
	s, env := t.s, t.env
	if !s.ESMTP {
		return ""
	}
	var b strings.Builder
	if _, ok := s.Ext.Size(); ok && env.Size > 0 {
		b.WriteString(" SIZE=" + strconv.FormatInt(env.Size, 10))
	}
	switch strings.ToUpper(env.Body) {
	case "8BITMIME":
		if s.Ext.Has("8BITMIME") {
			b.WriteString(" BODY=8BITMIME")
		}
	case "BINARYMIME":
		b.WriteString(" BODY=BINARYMIME")
	}
	if smtputf8 {
		b.WriteString(" SMTPUTF8")
	}
	if s.Ext.Has("DSN") {
		if ret := strings.ToUpper(env.RET); ret == "FULL" || ret == "HDRS" {
			b.WriteString(" RET=" + ret)
		}
		if env.ENVID != "" {
			b.WriteString(" ENVID=" + xtext(env.ENVID))
		}
	}
	return b.String()
}

// rcptParams returns the ESMTP parameters of RCPT for r.
func (t *txn) rcptParams(r Recipient, smtputf8 bool) string {
	if !t.s.ESMTP || !t.s.Ext.Has("DSN") {
		return ""
	}
	var b strings.Builder
	if n := notifyParam(r.Notify); n != "" {
		b.WriteString(" NOTIFY=" + n)
	}
	if o := orcptParam(r.ORCPT, smtputf8); o != "" {
		b.WriteString(" ORCPT=" + o)
	}
	return b.String()
}

// notifyParam renders n for NOTIFY=, or "" when NOTIFY was not given.
func notifyParam(n log.Notify) string {
	if n == 0 {
		return ""
	}
	if n&log.NotifyNever != 0 {
		return "NEVER"
	}
	var parts []string
	if n&log.NotifySuccess != 0 {
		parts = append(parts, "SUCCESS")
	}
	if n&log.NotifyFailure != 0 {
		parts = append(parts, "FAILURE")
	}
	if n&log.NotifyDelay != 0 {
		parts = append(parts, "DELAY")
	}
	return strings.Join(parts, ",")
}

// orcptParam encodes "type;address" for ORCPT=: xtext (RFC 3461 4.2) for
// ASCII; an address with UTF-8 goes as utf-8-addr-unitext (RFC 6533 3)
// when SMTPUTF8 is in use and is left out otherwise.
func orcptParam(orcpt string, smtputf8 bool) string {
	typ, addr, ok := strings.Cut(orcpt, ";")
	if !ok || typ == "" || addr == "" {
		return ""
	}
	if isASCII(addr) {
		return typ + ";" + xtext(addr)
	}
	if !smtputf8 || !utf8.ValidString(addr) {
		return ""
	}
	var b strings.Builder
	b.WriteString("utf-8;")
	for _, r := range addr {
		if r < 0x21 || r == 0x7f || r == '+' || r == '=' || r == '\\' {
			fmt.Fprintf(&b, `\x{%X}`, r)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// xtext encodes s as RFC 3461 4 xtext.
func xtext(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 33 || c > 126 || c == '+' || c == '=' {
			fmt.Fprintf(&b, "+%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// headerHas8Bit reports whether the header of the message in r (up to the
// first empty line, at most maxHeaderPeek bytes and the reader's buffer) has
// a byte above 127. It does not consume r.
func headerHas8Bit(r *bufio.Reader) bool {
	head, _ := r.Peek(min(maxHeaderPeek, r.Size()))
	if end := bytes.Index(head, []byte("\n\r\n")); end >= 0 {
		head = head[:end]
	} else if end := bytes.Index(head, []byte("\n\n")); end >= 0 {
		head = head[:end]
	}
	return !isASCII(string(head))
}
