package maillog

import (
	"net/netip"
	"strconv"
	"time"
)

// The field names of the seed's log lines, and the few smx adds. docs/maillog.md
// describes each.
const (
	FieldSev        = "sev"         // CRIT, ERR or WARN; absent on other lines
	FieldFunc       = "func"        // what logged the line, e.g. "smxd_start"
	FieldSSSess     = "ss_sess"     // SMTP server session id
	FieldSSTa       = "ss_ta"       // SMTP server transaction id
	FieldDASess     = "da_sess"     // delivery agent (client) session id
	FieldDATa       = "da_ta"       // delivery agent transaction id
	FieldClientIPv4 = "client_ipv4" // address of the SMTP client
	FieldClientIPv6 = "client_ipv6"
	FieldClientName = "client_name" // verified host name of the SMTP client
	FieldWhere      = "where"       // the protocol stage, e.g. connection, final_dot
	FieldStatus     = "status"      // a state word, e.g. connected, closed
	FieldMail       = "mail"        // envelope sender, in angle brackets
	FieldRcpt       = "rcpt"        // envelope recipient, in angle brackets
	FieldIdx        = "idx"         // recipient index within the transaction
	FieldStat       = "stat"        // 0 for success, else the SMTP reply code
	FieldReply      = "reply"       // an SMTP reply text
	FieldSize       = "size"        // message size in bytes
	FieldMsgID      = "msgid"       // Message-Id header field
	FieldDelay      = "delay"       // seconds since the message was received
	FieldXDelay     = "xdelay"      // seconds this delivery attempt took
	FieldRelay      = "relay"       // host and [address] of the peer
	FieldPort       = "port"        // TCP port of the peer
	FieldAddr       = "addr"        // IP address of the peer
	FieldStartTLS   = "starttls"    // STARTTLS outcome
	FieldListener   = "listener"    // the smtps section that accepted a session
)

// SSSess appends ss_sess=id.
func (ln *Line) SSSess(id string) *Line { return ln.Str(FieldSSSess, id) }

// SSTa appends ss_ta=id.
func (ln *Line) SSTa(id string) *Line { return ln.Str(FieldSSTa, id) }

// DASess appends da_sess=id.
func (ln *Line) DASess(id string) *Line { return ln.Str(FieldDASess, id) }

// DATa appends da_ta=id.
func (ln *Line) DATa(id string) *Line { return ln.Str(FieldDATa, id) }

// Func appends func=name.
func (ln *Line) Func(name string) *Line { return ln.Str(FieldFunc, name) }

// Where appends where=stage.
func (ln *Line) Where(stage string) *Line { return ln.Str(FieldWhere, stage) }

// Status appends status=word.
func (ln *Line) Status(word string) *Line { return ln.Str(FieldStatus, word) }

// Client appends client_ipv4= or client_ipv6= (as the address is) and,
// when name is not empty, client_name=.
func (ln *Line) Client(addr netip.Addr, name string) *Line {
	if ln == nil {
		return nil
	}
	addr = addr.Unmap()
	if addr.Is6() {
		ln.Addr(FieldClientIPv6, addr)
	} else {
		ln.Addr(FieldClientIPv4, addr)
	}
	if name != "" {
		ln.Str(FieldClientName, name)
	}
	return ln
}

func (ln *Line) angle(name, addr string) *Line {
	if ln == nil {
		return nil
	}
	ln.name(name)
	ln.buf = append(ln.buf, '<')
	ln.buf = AppendEscaped(ln.buf, addr)
	ln.buf = append(ln.buf, '>')
	return ln
}

// Mail appends mail=<addr>; addr is given without angle brackets and ""
// is the null sender.
func (ln *Line) Mail(addr string) *Line { return ln.angle(FieldMail, addr) }

// Rcpt appends rcpt=<addr>; addr is given without angle brackets.
func (ln *Line) Rcpt(addr string) *Line { return ln.angle(FieldRcpt, addr) }

// MsgID appends msgid=value; the Message-Id is written as found,
// including its angle brackets.
func (ln *Line) MsgID(value string) *Line { return ln.Str(FieldMsgID, value) }

// Idx appends idx=i, the recipient's index in its transaction.
func (ln *Line) Idx(i int) *Line { return ln.Int(FieldIdx, int64(i)) }

// Stat appends stat=0 when code is a success (2xx, or 0) and stat=code
// otherwise, as the seed does ("0 is used instead of 250").
func (ln *Line) Stat(code int) *Line {
	if code >= 200 && code < 300 {
		code = 0
	}
	return ln.Int(FieldStat, int64(code))
}

// Reply appends reply=text (the reply line(s) as received, escaped).
func (ln *Line) Reply(text string) *Line { return ln.Str(FieldReply, text) }

// Size appends size=n (bytes).
func (ln *Line) Size(n int64) *Line { return ln.Int(FieldSize, n) }

// Delay appends delay=seconds (total time since the message was received).
func (ln *Line) Delay(d time.Duration) *Line { return ln.Seconds(FieldDelay, d) }

// XDelay appends xdelay=seconds (time taken by this delivery attempt).
func (ln *Line) XDelay(d time.Duration) *Line { return ln.Seconds(FieldXDelay, d) }

// Relay appends relay=host [ip], the peer a delivery went to. Either part
// may be empty.
func (ln *Line) Relay(host string, ip netip.Addr) *Line {
	if ln == nil {
		return nil
	}
	ln.name(FieldRelay)
	ln.buf = AppendEscaped(ln.buf, host)
	if ip.IsValid() {
		if host != "" {
			ln.buf = append(ln.buf, ' ')
		}
		ln.buf = append(ln.buf, '[')
		ln.buf = ip.AppendTo(ln.buf)
		ln.buf = append(ln.buf, ']')
	}
	return ln
}

// Port appends port=n.
func (ln *Line) Port(n int) *Line { return ln.Int(FieldPort, int64(n)) }

// The constructors of the four kinds of line the seed's examples show. Each
// starts a line at LevelInfo with the ids that identify it; the caller adds
// the rest and calls Write.

// ServerSession starts a line about an SMTP server session:
// ss_sess=ID, ...
func (l *Logger) ServerSession(sess string) *Line {
	return l.Line(LevelInfo).SSSess(sess)
}

// ServerTxn starts a line about a transaction (or one of its recipients)
// in an SMTP server session: ss_sess=ID, ss_ta=ID, ...
func (l *Logger) ServerTxn(sess, txn string) *Line {
	return l.Line(LevelInfo).SSSess(sess).SSTa(txn)
}

// ClientSession starts a line about a delivery agent session:
// da_sess=ID, ...
func (l *Logger) ClientSession(sess string) *Line {
	return l.Line(LevelInfo).DASess(sess)
}

// ClientTxn starts a line about a delivery transaction (or one of its
// recipients): da_sess=ID, da_ta=ID, ss_ta=ID, ... where ss_ta is the
// server transaction that received the message, so that a postmaster can
// follow a message from reception to delivery.
func (l *Logger) ClientTxn(sess, txn, serverTxn string) *Line {
	return l.Line(LevelInfo).DASess(sess).DATa(txn).SSTa(serverTxn)
}

// Recipient starts the queue manager's line about a recipient's fate:
// func=name, rcpt_id=ss_ta-IDX, ... as in the seed's
// "func=q_upd_rcpt_ok, rcpt_id=S00000000407EAE4E00-000000".
func (l *Logger) Recipient(funcName, serverTxn string, idx int) *Line {
	ln := l.Line(LevelInfo).Func(funcName)
	if ln == nil {
		return nil
	}
	ln.name("rcpt_id")
	ln.buf = AppendEscaped(ln.buf, serverTxn)
	ln.buf = append(ln.buf, '-')
	var digits [20]byte
	d := strconv.AppendInt(digits[:0], int64(idx), 10)
	for i := len(d); i < 6; i++ {
		ln.buf = append(ln.buf, '0')
	}
	ln.buf = append(ln.buf, d...)
	return ln
}
