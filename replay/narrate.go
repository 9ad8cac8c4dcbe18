package replay

import (
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/projections"
)

// payload returns e's payload, or nil when it has none: a missing payload
// or a nil pointer of a payload type, which a damaged or hand-made event
// could carry, must not crash a reader.
func payload(e log.Event) log.Payload {
	if e.Payload == nil {
		return nil
	}
	if v := reflect.ValueOf(e.Payload); v.Kind() == reflect.Pointer && v.IsNil() {
		return nil
	}
	return e.Payload
}

// field is one name=value pair of an event's description.
type field struct{ name, value string }

// addrOf returns the address of recipient idx of e's transaction, from the
// event itself or from the state before it; "" when unknown.
func addrOf(e log.Event, q *projections.Queue, idx int32) string {
	if p, ok := e.Payload.(*log.TxnReceived); ok && p != nil && idx >= 0 && int(idx) < len(p.Rcpts) {
		return p.Rcpts[idx].Addr
	}
	if q != nil {
		if r, ok := q.Recipient(e.Txn, idx); ok {
			return r.Addr
		}
	}
	return ""
}

// quote renders v for a name=value pair: bare when it is a plain token,
// quoted Go-style when it holds spaces, quotes, '=', control characters
// or bytes that are not UTF-8.
func quote(v string) string {
	if v == "" {
		return `""`
	}
	if !utf8.ValidString(v) {
		return strconv.Quote(v)
	}
	for _, c := range v {
		if c <= ' ' || c == '"' || c == '=' || c == '\\' || c == 0x7f || c >= 0x80 && !strconv.IsPrint(c) {
			return strconv.Quote(v)
		}
	}
	return v
}

// printable makes text from the network (a server's reply, a Message-ID,
// an address) safe to print on the operator's terminal where it is not
// quoted: control characters and bytes that are not UTF-8 are written as
// Go escapes (\x1b), so that a hostile reply cannot move the cursor or
// rewrite what smxctl shows. Plain text is returned as it is.
func printable(s string) string {
	plain := utf8.ValidString(s)
	for _, c := range s {
		if !plain {
			break
		}
		plain = c >= ' ' && c != 0x7f && (c < 0x80 || strconv.IsPrint(c))
	}
	if plain {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\x%02x`, s[i])
		case c < ' ' || c == 0x7f:
			fmt.Fprintf(&b, `\x%02x`, c)
		case c >= 0x80 && !strconv.IsPrint(c):
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteString(s[i : i+size])
		}
		i += size
	}
	return b.String()
}

func timeString(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func rcptList(list []int32) string {
	parts := make([]string, len(list))
	for i, r := range list {
		parts[i] = strconv.Itoa(int(r))
	}
	return strings.Join(parts, ",")
}

// describe returns a verb for the audit timeline and the event's fields.
func describe(e log.Event, q *projections.Queue) (verb string, fields []field) {
	add := func(name, value string) {
		if value != "" {
			fields = append(fields, field{name, value})
		}
	}
	num := func(name string, v int64) {
		if v != 0 {
			add(name, strconv.FormatInt(v, 10))
		}
	}
	switch p := payload(e).(type) {
	case *log.TxnReceived:
		verb = "received"
		add("from", "<"+p.Sender+">")
		addrs := make([]string, len(p.Rcpts))
		for i, r := range p.Rcpts {
			addrs[i] = "<" + r.Addr + ">"
			if n := projections.NotifyString(r.Notify); n != "" {
				addrs[i] += " NOTIFY=" + n
			}
			if r.ORCPT != "" {
				addrs[i] += " ORCPT=" + r.ORCPT
			}
		}
		add("to", strings.Join(addrs, ","))
		num("size", p.ContentSize)
		if p.ClientIP != "" {
			add("client", fmt.Sprintf("[%s]:%d", p.ClientIP, p.ClientPort))
		}
		add("client_name", p.ClientName)
		add("helo", p.HELO)
		add("proto", p.Protocol)
		if p.TLS != nil {
			add("tls", p.TLS.Version+" "+p.TLS.Cipher)
		}
		if p.Auth != nil {
			add("auth", p.Auth.Mechanism+" "+p.Auth.User)
		}
		add("msgid", p.MessageID)
		add("listener", p.Listener)
		add("session", p.Session)
		add("content", p.Content)
		add("ret", p.RET)
		add("envid", p.ENVID)
		add("dsn_of", p.DSNOf)
	case *log.RcptResolved:
		if p.Mailer == "" {
			verb = "expanded"
			kids := make([]string, len(p.Expansion))
			for i, k := range p.Expansion {
				kids[i] = fmt.Sprintf("%d:<%s>", k.Rcpt, k.Addr)
			}
			add("into", strings.Join(kids, ","))
			if p.Owner != "" {
				add("owner", "<"+p.Owner+">")
			}
			break
		}
		verb = "resolved"
		add("mailer", p.Mailer)
		add("dest", p.Destination)
		hops := make([]string, len(p.Hops))
		for i, h := range p.Hops {
			hops[i] = fmt.Sprintf("%s(%d)[%s]", h.Host, h.Preference, strings.Join(h.Addrs, ","))
		}
		add("hops", strings.Join(hops, ","))
		num("port", int64(p.Port))
		add("socket", p.Socket)
	case *log.AttemptStarted:
		verb = "attempt started"
		add("da_ta", p.DATxn)
		add("mailer", p.Mailer)
		add("host", p.Host)
		add("ip", p.IP)
		num("port", int64(p.Port))
		add("rcpts", rcptList(p.Rcpts))
	case *log.AttemptFinished:
		verb = "attempt finished"
		add("da_ta", p.DATxn)
		add("host", p.Host)
		add("ip", p.IP)
		add("stage", p.Stage)
		num("code", int64(p.Code))
		add("enhanced", p.Enhanced)
		add("reply", p.Reply)
		if p.Duration != 0 {
			add("duration", p.Duration.String())
		}
		replies := make([]string, len(p.Rcpts))
		for i, r := range p.Rcpts {
			replies[i] = fmt.Sprintf("%d:%d", r.Rcpt, r.Code)
		}
		add("rcpt_replies", strings.Join(replies, ","))
	case *log.RcptDeferred:
		verb = "deferred"
		num("code", int64(p.Code))
		add("enhanced", p.Enhanced)
		add("reason", p.Reason)
		add("next_try", timeString(p.NextTry))
		add("dest", p.Destination)
		add("host", p.Host)
		add("host_down_until", timeString(p.HostDownUntil))
	case *log.RcptDelivered:
		verb = "delivered"
		add("da_ta", p.DATxn)
		add("host", p.Host)
		add("ip", p.IP)
		num("code", int64(p.Code))
		add("enhanced", p.Enhanced)
		add("reply", p.Reply)
		if p.Relayed {
			add("relayed", "yes")
		}
	case *log.RcptFailed:
		verb = "failed"
		add("stage", p.Stage)
		add("host", p.Host)
		add("ip", p.IP)
		num("code", int64(p.Code))
		add("enhanced", p.Enhanced)
		add("reason", p.Reason)
	case *log.RcptExpired:
		verb = "expired"
		add("enhanced", p.Enhanced)
		add("last_reason", p.LastReason)
	case *log.DelayNotified:
		verb = "delay warning sent"
		add("rcpts", rcptList(p.Rcpts))
		add("dsn", p.DSN)
	case *log.DSNQueued:
		verb = "DSN queued"
		add("kind", p.Kind)
		add("dsn", p.DSN)
		add("rcpts", rcptList(p.Rcpts))
	case *log.ContentReleased:
		verb = "content released"
		add("content", p.Content)
	case *log.Hold:
		verb = "held by operator"
		add("user", p.User)
		add("reason", p.Reason)
	case *log.Release:
		verb = "released by operator"
		add("user", p.User)
		add("reason", p.Reason)
	case *log.Delete:
		verb = "deleted by operator"
		add("user", p.User)
		add("reason", p.Reason)
	case *log.Requeue:
		verb = "requeued by operator"
		add("user", p.User)
		add("reason", p.Reason)
	case *log.Redirect:
		verb = "redirected by operator"
		add("to", fmt.Sprintf("%d:<%s>", p.NewRcpt, p.NewAddr))
		add("user", p.User)
		add("reason", p.Reason)
	default:
		verb = "unknown event"
	}
	return verb, fields
}

func writeFields(b *strings.Builder, fields []field) {
	for _, f := range fields {
		b.WriteByte(' ')
		b.WriteString(f.name)
		b.WriteByte('=')
		b.WriteString(quote(f.value))
	}
}

// Line renders e as one line of `smxctl replay`: sequence number, time
// (RFC 3339, UTC), type, ss_ta or ss_ta:index with the recipient's address
// when known, then name=value fields. q is the state before e (nil when
// there is none); it supplies recipient addresses.
func Line(e log.Event, q *projections.Queue) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d %s %s", e.Seq, timeString(e.Time), typeName(e))
	if e.Txn != "" {
		b.WriteByte(' ')
		b.WriteString(e.Txn)
		if e.Rcpt != log.NoRcpt {
			fmt.Fprintf(&b, ":%d", e.Rcpt)
			if a := addrOf(e, q, e.Rcpt); a != "" {
				fmt.Fprintf(&b, " <%s>", printable(a))
			}
		}
	}
	_, fields := describe(e, q)
	writeFields(&b, fields)
	return b.String()
}

func typeName(e log.Event) string {
	if e.Payload == nil {
		return "none"
	}
	return e.Payload.EventType().String()
}

// JSONEvent is the form of one line of `smxctl replay --format json`. The
// names are part of smx's interface: fields are added, never renamed.
// Payload holds the event's payload with the field names of the event
// catalogue (package log, docs/eventlog.md): times in RFC 3339,
// durations in nanoseconds.
type JSONEvent struct {
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	Type string    `json:"type"`
	Txn  string    `json:"txn"`
	// Rcpt is the recipient index, -1 when the event concerns the whole
	// transaction.
	Rcpt int32 `json:"rcpt"`
	// Addr is the address of recipient Rcpt when known.
	Addr    string      `json:"addr,omitempty"`
	Payload log.Payload `json:"payload"`
}

// WriteJSON writes e as one line of JSON (a JSONEvent).
func WriteJSON(w io.Writer, e log.Event, q *projections.Queue) error {
	j := JSONEvent{Seq: e.Seq, Time: e.Time.UTC(), Type: typeName(e), Txn: e.Txn, Rcpt: e.Rcpt, Payload: e.Payload}
	if e.Rcpt != log.NoRcpt {
		j.Addr = addrOf(e, q, e.Rcpt)
	}
	b, err := json.Marshal(j)
	if err != nil {
		return fmt.Errorf("replay: encode seq %d: %w", e.Seq, err)
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// Filter selects events for `smxctl replay`. A zero Filter selects all.
// Fields combine with "and".
type Filter struct {
	Txn string // ss_ta
	// Rcpt is a recipient address (case-insensitive): events that concern
	// a recipient with that address, and transaction events that list one.
	Rcpt string
	// Sender is an envelope sender address (case-insensitive; "<>" for the
	// null sender): the events of the messages it sent.
	Sender string
	// Types are the event types to keep; empty keeps all.
	Types []log.EventType
}

// Match reports whether e passes f. q is the state before e.
func (f Filter) Match(e log.Event, q *projections.Queue) bool {
	if f.Txn != "" && e.Txn != f.Txn {
		return false
	}
	if len(f.Types) > 0 {
		found := false
		for _, t := range f.Types {
			if e.Payload != nil && e.Payload.EventType() == t {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if f.Sender != "" && !f.matchSender(e, q) {
		return false
	}
	if f.Rcpt != "" && !f.matchRcpt(e, q) {
		return false
	}
	return true
}

func (f Filter) matchSender(e log.Event, q *projections.Queue) bool {
	want := f.Sender
	if want == "<>" {
		want = ""
	}
	if p, ok := e.Payload.(*log.TxnReceived); ok && p != nil {
		return strings.EqualFold(p.Sender, want)
	}
	if q == nil {
		return false
	}
	m, ok := q.Message(e.Txn)
	return ok && strings.EqualFold(m.Sender, want)
}

func (f Filter) matchRcpt(e log.Event, q *projections.Queue) bool {
	is := func(idx int32) bool { return strings.EqualFold(addrOf(e, q, idx), f.Rcpt) }
	anyOf := func(list []int32) bool {
		for _, idx := range list {
			if is(idx) {
				return true
			}
		}
		return false
	}
	switch p := payload(e).(type) {
	case *log.TxnReceived:
		for _, r := range p.Rcpts {
			if strings.EqualFold(r.Addr, f.Rcpt) {
				return true
			}
		}
		return false
	case *log.RcptResolved:
		for _, k := range p.Expansion {
			if strings.EqualFold(k.Addr, f.Rcpt) {
				return true
			}
		}
	case *log.Redirect:
		if strings.EqualFold(p.NewAddr, f.Rcpt) {
			return true
		}
	case *log.AttemptStarted:
		return anyOf(p.Rcpts)
	case *log.AttemptFinished:
		for _, r := range p.Rcpts {
			if is(r.Rcpt) {
				return true
			}
		}
		return false
	case *log.DelayNotified:
		return anyOf(p.Rcpts)
	case *log.DSNQueued:
		return anyOf(p.Rcpts)
	}
	if e.Rcpt != log.NoRcpt {
		return is(e.Rcpt)
	}
	// An event on the whole transaction concerns every recipient.
	if q == nil {
		return false
	}
	for _, r := range q.Recipients(e.Txn) {
		if strings.EqualFold(r.Addr, f.Rcpt) {
			return true
		}
	}
	return false
}
