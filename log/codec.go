package log

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// schemaVersions holds the current schema version of each payload type. A
// version goes up by one when fields are added to the type (fields are never
// renamed, retyped or reinterpreted); readers of an older version keep the
// fields they do not know in Event.Unknown.
var schemaVersions = [...]uint16{
	TypeTxnReceived:     1,
	TypeRcptResolved:    1,
	TypeAttemptStarted:  1,
	TypeAttemptFinished: 1,
	TypeRcptDeferred:    1,
	TypeRcptDelivered:   1,
	TypeRcptFailed:      1,
	TypeRcptExpired:     1,
	TypeDelayNotified:   1,
	TypeDSNQueued:       1,
	TypeContentReleased: 1,
	TypeHold:            1,
	TypeRelease:         1,
	TypeDelete:          1,
	TypeRequeue:         1,
	TypeRedirect:        1,
}

// SchemaVersion returns the schema version this build writes for events of
// type t, or 0 if t is not in the catalogue.
func SchemaVersion(t EventType) uint16 {
	if int(t) < len(schemaVersions) {
		return schemaVersions[t]
	}
	return 0
}

// ErrUnknownEventType is wrapped by the error for a record whose event type
// this version does not know (a newer smx wrote it). Readers report it with
// the record's sequence number and stop; they never skip the record.
var ErrUnknownEventType = errors.New("unknown event type")

// newPayload returns an empty payload of type t, or nil if t is unknown.
func newPayload(t EventType) Payload {
	switch t {
	case TypeTxnReceived:
		return new(TxnReceived)
	case TypeRcptResolved:
		return new(RcptResolved)
	case TypeAttemptStarted:
		return new(AttemptStarted)
	case TypeAttemptFinished:
		return new(AttemptFinished)
	case TypeRcptDeferred:
		return new(RcptDeferred)
	case TypeRcptDelivered:
		return new(RcptDelivered)
	case TypeRcptFailed:
		return new(RcptFailed)
	case TypeRcptExpired:
		return new(RcptExpired)
	case TypeDelayNotified:
		return new(DelayNotified)
	case TypeDSNQueued:
		return new(DSNQueued)
	case TypeContentReleased:
		return new(ContentReleased)
	case TypeHold:
		return new(Hold)
	case TypeRelease:
		return new(Release)
	case TypeDelete:
		return new(Delete)
	case TypeRequeue:
		return new(Requeue)
	case TypeRedirect:
		return new(Redirect)
	}
	return nil
}

// encoder appends the msgpack form of an event.
type encoder struct {
	b       []byte
	unknown *UnknownFields
}

// mapEnc writes the entries of one map whose header is patched in at the
// end, once the number of non-empty entries is known. Empty values (zero
// numbers, empty strings, false, zero times, nil slices and pointers) are
// left out, as the omitempty tags say; an empty but non-nil slice is written
// as an empty array so that it decodes as an empty slice again.
type mapEnc struct {
	e     *encoder
	start int
	n     int
}

func (e *encoder) beginMap() mapEnc {
	start := len(e.b)
	e.b = append(e.b, 0x80)
	return mapEnc{e: e, start: start}
}

// end writes back the unknown entries of the map at where and patches the
// header. A map of more than 15 entries needs a 3-byte header, so the
// entries move two bytes to the right; that costs a short copy and keeps
// every smaller map at one byte of header.
func (m *mapEnc) end(where string) {
	e := m.e
	if e.unknown != nil {
		if k := e.unknown.count(where); k > 0 {
			e.b = e.unknown.appendTo(e.b, where)
			m.n += k
		}
	}
	switch {
	case m.n <= 15:
		e.b[m.start] = 0x80 | byte(m.n)
	case m.n <= 0xffff:
		e.b = append(e.b, 0, 0)
		copy(e.b[m.start+3:], e.b[m.start+1:len(e.b)-2])
		e.b[m.start], e.b[m.start+1], e.b[m.start+2] = mpMap16, byte(m.n>>8), byte(m.n)
	default:
		e.b = append(e.b, 0, 0, 0, 0)
		copy(e.b[m.start+5:], e.b[m.start+1:len(e.b)-4])
		e.b[m.start] = mpMap32
		e.b[m.start+1], e.b[m.start+2], e.b[m.start+3], e.b[m.start+4] = byte(m.n>>24), byte(m.n>>16), byte(m.n>>8), byte(m.n)
	}
}

func (m *mapEnc) key(k string) {
	m.e.b = appendString(m.e.b, k)
	m.n++
}

func (m *mapEnc) str(k, v string) {
	if v != "" {
		m.key(k)
		m.e.b = appendString(m.e.b, v)
	}
}

func (m *mapEnc) int(k string, v int64) {
	if v != 0 {
		m.key(k)
		m.e.b = appendInt(m.e.b, v)
	}
}

func (m *mapEnc) bool(k string, v bool) {
	if v {
		m.key(k)
		m.e.b = appendBool(m.e.b, v)
	}
}

func (m *mapEnc) time(k string, v time.Time) {
	if !v.IsZero() {
		m.key(k)
		m.e.b = appendTime(m.e.b, v)
	}
}

func (m *mapEnc) int32s(k string, v []int32) {
	if v != nil {
		m.key(k)
		m.e.b = appendArrayHeader(m.e.b, len(v))
		for _, x := range v {
			m.e.b = appendInt(m.e.b, int64(x))
		}
	}
}

func (m *mapEnc) strs(k string, v []string) {
	if v != nil {
		m.key(k)
		m.e.b = appendArrayHeader(m.e.b, len(v))
		for _, x := range v {
			m.e.b = appendString(m.e.b, x)
		}
	}
}

// elemPath names element i of the list of maps under key k of the payload;
// it is only built when there are unknown fields to place.
func (e *encoder) elemPath(k string, i int) string {
	if e.unknown == nil {
		return ""
	}
	return elemPath(k, i)
}

func elemPath(k string, i int) string {
	if i < 0 {
		return "p." + k
	}
	return "p." + k + "[" + strconv.Itoa(i) + "]"
}

// appendEvent appends the msgpack form of e (everything but Seq).
func appendEvent(b []byte, e *Event) ([]byte, error) {
	if e.Payload == nil {
		return b, errors.New("event has no payload")
	}
	t := e.Payload.EventType()
	version := SchemaVersion(t)
	if version == 0 {
		return b, fmt.Errorf("%w %d", ErrUnknownEventType, uint16(t))
	}
	if e.Unknown != nil && e.Unknown.Version > version {
		version = e.Unknown.Version
	}
	enc := encoder{b: b, unknown: e.Unknown}
	m := enc.beginMap()
	m.key("t")
	enc.b = appendUint(enc.b, uint64(t))
	m.key("v")
	enc.b = appendUint(enc.b, uint64(version))
	m.time("ts", e.Time)
	m.str("x", e.Txn)
	m.int("r", int64(e.Rcpt))
	m.key("p")
	if err := enc.payload(e.Payload); err != nil {
		return b, err
	}
	m.end("")
	return enc.b, nil
}

func (e *encoder) payload(p Payload) error {
	m := e.beginMap()
	switch p := p.(type) {
	case *TxnReceived:
		m.str("ss", p.Session)
		m.str("l", p.Listener)
		m.str("f", p.Sender)
		if p.Rcpts != nil {
			m.key("rc")
			e.b = appendArrayHeader(e.b, len(p.Rcpts))
			for i := range p.Rcpts {
				r := &p.Rcpts[i]
				rm := e.beginMap()
				rm.str("a", r.Addr)
				rm.str("o", r.ORCPT)
				rm.int("n", int64(r.Notify))
				rm.end(e.elemPath("rc", i))
			}
		}
		m.str("ret", p.RET)
		m.str("env", p.ENVID)
		m.int("sz", p.Size)
		m.str("b", p.Body)
		m.bool("u8", p.SMTPUTF8)
		m.str("ip", p.ClientIP)
		m.int("cp", int64(p.ClientPort))
		m.str("cn", p.ClientName)
		m.str("cr", p.ClientResolve)
		m.str("h", p.HELO)
		m.str("pr", p.Protocol)
		e.tls(&m, p.TLS)
		if p.Auth != nil {
			m.key("au")
			am := e.beginMap()
			am.str("m", p.Auth.Mechanism)
			am.str("u", p.Auth.User)
			am.end(e.elemPath("au", -1))
		}
		m.str("mid", p.MessageID)
		m.int("hc", int64(p.Hops))
		m.str("c", p.Content)
		m.int("cs", p.ContentSize)
		m.time("at", p.ReceivedAt)
		m.str("dsn", p.DSNOf)
	case *RcptResolved:
		m.str("m", p.Mailer)
		m.int("po", int64(p.Port))
		m.str("so", p.Socket)
		if p.Hops != nil {
			m.key("h")
			e.b = appendArrayHeader(e.b, len(p.Hops))
			for i := range p.Hops {
				h := &p.Hops[i]
				hm := e.beginMap()
				hm.str("h", h.Host)
				hm.int("p", int64(h.Preference))
				hm.strs("a", h.Addrs)
				hm.end(e.elemPath("h", i))
			}
		}
		if p.Expansion != nil {
			m.key("e")
			e.b = appendArrayHeader(e.b, len(p.Expansion))
			for i := range p.Expansion {
				x := &p.Expansion[i]
				xm := e.beginMap()
				xm.int("r", int64(x.Rcpt))
				xm.str("a", x.Addr)
				xm.str("o", x.ORCPT)
				xm.int("n", int64(x.Notify))
				xm.end(e.elemPath("e", i))
			}
		}
		m.str("ow", p.Owner)
		m.str("d", p.Destination)
	case *AttemptStarted:
		m.str("ds", p.DASession)
		m.str("dt", p.DATxn)
		m.int32s("rc", p.Rcpts)
		m.str("m", p.Mailer)
		m.str("h", p.Host)
		m.str("ip", p.IP)
		m.int("po", int64(p.Port))
	case *AttemptFinished:
		m.str("ds", p.DASession)
		m.str("dt", p.DATxn)
		m.str("h", p.Host)
		m.str("ip", p.IP)
		m.int("po", int64(p.Port))
		m.str("st", p.Stage)
		m.int("co", int64(p.Code))
		m.str("en", p.Enhanced)
		m.str("re", p.Reply)
		m.int("du", int64(p.Duration))
		e.tls(&m, p.TLS)
		if p.Rcpts != nil {
			m.key("rc")
			e.b = appendArrayHeader(e.b, len(p.Rcpts))
			for i := range p.Rcpts {
				r := &p.Rcpts[i]
				rm := e.beginMap()
				rm.int("r", int64(r.Rcpt))
				rm.int("co", int64(r.Code))
				rm.str("en", r.Enhanced)
				rm.str("t", r.Text)
				rm.end(e.elemPath("rc", i))
			}
		}
	case *RcptDeferred:
		m.time("nt", p.NextTry)
		m.str("re", p.Reason)
		m.int("co", int64(p.Code))
		m.str("en", p.Enhanced)
		m.str("d", p.Destination)
		m.str("h", p.Host)
		m.time("hd", p.HostDownUntil)
	case *RcptDelivered:
		m.str("dt", p.DATxn)
		m.str("h", p.Host)
		m.str("ip", p.IP)
		m.int("co", int64(p.Code))
		m.str("en", p.Enhanced)
		m.str("re", p.Reply)
		m.bool("rl", p.Relayed)
	case *RcptFailed:
		m.str("h", p.Host)
		m.str("ip", p.IP)
		m.str("st", p.Stage)
		m.int("co", int64(p.Code))
		m.str("en", p.Enhanced)
		m.str("re", p.Reason)
	case *RcptExpired:
		m.str("lr", p.LastReason)
		m.str("en", p.Enhanced)
	case *DelayNotified:
		m.int32s("rc", p.Rcpts)
		m.str("dsn", p.DSN)
	case *DSNQueued:
		m.str("dsn", p.DSN)
		m.str("k", p.Kind)
		m.int32s("rc", p.Rcpts)
	case *ContentReleased:
		m.str("c", p.Content)
	case *Hold:
		m.operator(&p.Operator)
	case *Release:
		m.operator(&p.Operator)
	case *Delete:
		m.operator(&p.Operator)
	case *Requeue:
		m.operator(&p.Operator)
	case *Redirect:
		m.operator(&p.Operator)
		m.str("na", p.NewAddr)
		m.int("nr", int64(p.NewRcpt))
	default:
		return fmt.Errorf("%w %d (%T)", ErrUnknownEventType, uint16(p.EventType()), p)
	}
	m.end("p")
	return nil
}

func (m *mapEnc) operator(o *Operator) {
	m.str("ou", o.User)
	m.str("or", o.Reason)
}

func (e *encoder) tls(m *mapEnc, t *TLSInfo) {
	if t == nil {
		return
	}
	m.key("tls")
	tm := e.beginMap()
	tm.str("v", t.Version)
	tm.str("c", t.Cipher)
	tm.int("b", int64(t.Bits))
	tm.str("vf", t.Verify)
	tm.str("s", t.PeerSubject)
	tm.str("i", t.PeerIssuer)
	tm.end(e.elemPath("tls", -1))
}

// eventDecoder decodes one event, collecting the fields it does not know.
type eventDecoder struct {
	decoder
	unknown *UnknownFields
}

// keep records the map entry that started at start (its key has been read)
// as unknown: it skips the value and keeps key and value verbatim.
func (d *eventDecoder) keep(start int, where string) {
	d.skip()
	if d.err != nil {
		return
	}
	if d.unknown == nil {
		d.unknown = new(UnknownFields)
	}
	d.unknown.add(where, d.data[start:d.pos])
}

// decodeEvent decodes the msgpack form of an event into e, which must be
// zero apart from Seq, with the strings of the event substrings of one
// copy of data (see decodeEventStrings). An event type this version does
// not know is an error wrapping ErrUnknownEventType.
func decodeEvent(data []byte, e *Event) error { return decodeEventStrings(data, e, false) }

// decodeEventStrings is decodeEvent with the choice of how the strings are
// held. By default (separate false) they are substrings of one copy of
// data: one allocation per event instead of one per string, which a
// replay that folds events and drops them wants (about 10% fewer CPU
// seconds per event in BenchmarkReplay). But a string kept after the rest
// of its event is dropped keeps that whole copy alive, so the readers whose
// events are kept (Subscribe, Get) give every string an allocation of its
// own (separate true).
func decodeEventStrings(data []byte, e *Event, separate bool) error {
	d := eventDecoder{decoder: decoder{data: data}}
	if !separate {
		d.text = string(data)
	}
	var (
		typ          EventType
		version      uint64
		payloadStart = -1
	)
	n := d.mapLen()
	for i := 0; i < n && d.err == nil; i++ {
		start := d.pos
		switch string(d.strBytes()) {
		case "t":
			typ = EventType(d.intRange(1, 0xffff))
		case "v":
			version = uint64(d.intRange(1, 0xffff))
		case "ts":
			e.Time = d.time()
		case "x":
			e.Txn = d.str()
		case "r":
			e.Rcpt = d.int32()
		case "p":
			if typ != 0 {
				if e.Payload = newPayload(typ); e.Payload == nil {
					return fmt.Errorf("%w %d", ErrUnknownEventType, uint16(typ))
				}
				d.payload(e.Payload)
			} else {
				// The type comes later in the map (this encoder writes
				// it first, another may not): decode the payload then.
				payloadStart = d.pos
				d.skip()
			}
		default:
			d.keep(start, "")
		}
	}
	if d.err == nil && d.pos != len(d.data) {
		d.fail(fmt.Errorf("%d bytes after the event", len(d.data)-d.pos))
	}
	if d.err != nil {
		return d.err
	}
	if typ == 0 {
		return errors.New("event has no type")
	}
	if e.Payload == nil {
		if e.Payload = newPayload(typ); e.Payload == nil {
			return fmt.Errorf("%w %d", ErrUnknownEventType, uint16(typ))
		}
		if payloadStart < 0 {
			return fmt.Errorf("%s event has no payload", typ)
		}
		end := d.pos
		d.pos = payloadStart
		d.payload(e.Payload)
		d.pos = end
		if d.err != nil {
			return d.err
		}
	}
	if version == 0 {
		return fmt.Errorf("%s event has no schema version", typ)
	}
	if version > uint64(SchemaVersion(typ)) {
		if d.unknown == nil {
			d.unknown = new(UnknownFields)
		}
		d.unknown.Version = uint16(version)
	}
	e.Unknown = d.unknown
	return nil
}

// key reads a map key; the returned bytes alias the input.
func (d *eventDecoder) key() []byte { return d.strBytes() }

func (d *eventDecoder) payload(p Payload) {
	n := d.mapLen()
	for i := 0; i < n && d.err == nil; i++ {
		start := d.pos
		k := d.key()
		if d.err != nil {
			return
		}
		if !d.payloadField(p, k) {
			d.keep(start, "p")
		}
	}
}

// payloadField decodes the value of key k of payload p and reports whether
// it knew the key.
func (d *eventDecoder) payloadField(p Payload, k []byte) bool {
	switch p := p.(type) {
	case *TxnReceived:
		switch string(k) {
		case "ss":
			p.Session = d.str()
		case "l":
			p.Listener = d.str()
		case "f":
			p.Sender = d.str()
		case "rc":
			if n := d.arrayLen(); n >= 0 {
				p.Rcpts = make([]Recipient, n)
				for i := range p.Rcpts {
					d.recipient(&p.Rcpts[i], i)
				}
			}
		case "ret":
			p.RET = d.str()
		case "env":
			p.ENVID = d.str()
		case "sz":
			p.Size = d.int()
		case "b":
			p.Body = d.str()
		case "u8":
			p.SMTPUTF8 = d.bool()
		case "ip":
			p.ClientIP = d.str()
		case "cp":
			p.ClientPort = int(d.int())
		case "cn":
			p.ClientName = d.str()
		case "cr":
			p.ClientResolve = d.str()
		case "h":
			p.HELO = d.str()
		case "pr":
			p.Protocol = d.str()
		case "tls":
			p.TLS = d.tls()
		case "au":
			p.Auth = d.auth()
		case "mid":
			p.MessageID = d.str()
		case "hc":
			p.Hops = int(d.int())
		case "c":
			p.Content = d.str()
		case "cs":
			p.ContentSize = d.int()
		case "at":
			p.ReceivedAt = d.time()
		case "dsn":
			p.DSNOf = d.str()
		default:
			return false
		}
	case *RcptResolved:
		switch string(k) {
		case "m":
			p.Mailer = d.str()
		case "po":
			p.Port = int(d.int())
		case "so":
			p.Socket = d.str()
		case "h":
			if n := d.arrayLen(); n >= 0 {
				p.Hops = make([]NextHop, n)
				for i := range p.Hops {
					d.nextHop(&p.Hops[i], i)
				}
			}
		case "e":
			if n := d.arrayLen(); n >= 0 {
				p.Expansion = make([]ExpandedRcpt, n)
				for i := range p.Expansion {
					d.expandedRcpt(&p.Expansion[i], i)
				}
			}
		case "ow":
			p.Owner = d.str()
		case "d":
			p.Destination = d.str()
		default:
			return false
		}
	case *AttemptStarted:
		switch string(k) {
		case "ds":
			p.DASession = d.str()
		case "dt":
			p.DATxn = d.str()
		case "rc":
			p.Rcpts = d.int32s()
		case "m":
			p.Mailer = d.str()
		case "h":
			p.Host = d.str()
		case "ip":
			p.IP = d.str()
		case "po":
			p.Port = int(d.int())
		default:
			return false
		}
	case *AttemptFinished:
		switch string(k) {
		case "ds":
			p.DASession = d.str()
		case "dt":
			p.DATxn = d.str()
		case "h":
			p.Host = d.str()
		case "ip":
			p.IP = d.str()
		case "po":
			p.Port = int(d.int())
		case "st":
			p.Stage = d.str()
		case "co":
			p.Code = int(d.int())
		case "en":
			p.Enhanced = d.str()
		case "re":
			p.Reply = d.str()
		case "du":
			p.Duration = time.Duration(d.int())
		case "tls":
			p.TLS = d.tls()
		case "rc":
			if n := d.arrayLen(); n >= 0 {
				p.Rcpts = make([]RcptReply, n)
				for i := range p.Rcpts {
					d.rcptReply(&p.Rcpts[i], i)
				}
			}
		default:
			return false
		}
	case *RcptDeferred:
		switch string(k) {
		case "nt":
			p.NextTry = d.time()
		case "re":
			p.Reason = d.str()
		case "co":
			p.Code = int(d.int())
		case "en":
			p.Enhanced = d.str()
		case "d":
			p.Destination = d.str()
		case "h":
			p.Host = d.str()
		case "hd":
			p.HostDownUntil = d.time()
		default:
			return false
		}
	case *RcptDelivered:
		switch string(k) {
		case "dt":
			p.DATxn = d.str()
		case "h":
			p.Host = d.str()
		case "ip":
			p.IP = d.str()
		case "co":
			p.Code = int(d.int())
		case "en":
			p.Enhanced = d.str()
		case "re":
			p.Reply = d.str()
		case "rl":
			p.Relayed = d.bool()
		default:
			return false
		}
	case *RcptFailed:
		switch string(k) {
		case "h":
			p.Host = d.str()
		case "ip":
			p.IP = d.str()
		case "st":
			p.Stage = d.str()
		case "co":
			p.Code = int(d.int())
		case "en":
			p.Enhanced = d.str()
		case "re":
			p.Reason = d.str()
		default:
			return false
		}
	case *RcptExpired:
		switch string(k) {
		case "lr":
			p.LastReason = d.str()
		case "en":
			p.Enhanced = d.str()
		default:
			return false
		}
	case *DelayNotified:
		switch string(k) {
		case "rc":
			p.Rcpts = d.int32s()
		case "dsn":
			p.DSN = d.str()
		default:
			return false
		}
	case *DSNQueued:
		switch string(k) {
		case "dsn":
			p.DSN = d.str()
		case "k":
			p.Kind = d.str()
		case "rc":
			p.Rcpts = d.int32s()
		default:
			return false
		}
	case *ContentReleased:
		switch string(k) {
		case "c":
			p.Content = d.str()
		default:
			return false
		}
	case *Hold:
		return d.operator(&p.Operator, k)
	case *Release:
		return d.operator(&p.Operator, k)
	case *Delete:
		return d.operator(&p.Operator, k)
	case *Requeue:
		return d.operator(&p.Operator, k)
	case *Redirect:
		switch string(k) {
		case "na":
			p.NewAddr = d.str()
		case "nr":
			p.NewRcpt = d.int32()
		default:
			return d.operator(&p.Operator, k)
		}
	default:
		return false
	}
	return true
}

func (d *eventDecoder) operator(o *Operator, k []byte) bool {
	switch string(k) {
	case "ou":
		o.User = d.str()
	case "or":
		o.Reason = d.str()
	default:
		return false
	}
	return true
}

func (d *eventDecoder) int32s() []int32 {
	n := d.arrayLen()
	if n < 0 {
		return nil
	}
	v := make([]int32, n)
	for i := range v {
		v[i] = d.int32()
	}
	return v
}

func (d *eventDecoder) strs() []string {
	n := d.arrayLen()
	if n < 0 {
		return nil
	}
	v := make([]string, n)
	for i := range v {
		v[i] = d.str()
	}
	return v
}

// nested decodes the map of a nested struct: field is called for each key
// and reports whether it knew it; unknown entries are kept under the path
// of key k (element i of a list, or -1).
func (d *eventDecoder) nested(k string, i int, field func(key []byte) bool) {
	n := d.mapLen()
	for j := 0; j < n && d.err == nil; j++ {
		start := d.pos
		key := d.key()
		if d.err != nil {
			return
		}
		if !field(key) {
			d.keep(start, elemPath(k, i))
		}
	}
}

func (d *eventDecoder) recipient(r *Recipient, i int) {
	d.nested("rc", i, func(k []byte) bool {
		switch string(k) {
		case "a":
			r.Addr = d.str()
		case "o":
			r.ORCPT = d.str()
		case "n":
			r.Notify = Notify(d.uint8())
		default:
			return false
		}
		return true
	})
}

func (d *eventDecoder) nextHop(h *NextHop, i int) {
	d.nested("h", i, func(k []byte) bool {
		switch string(k) {
		case "h":
			h.Host = d.str()
		case "p":
			h.Preference = int(d.int())
		case "a":
			h.Addrs = d.strs()
		default:
			return false
		}
		return true
	})
}

func (d *eventDecoder) expandedRcpt(x *ExpandedRcpt, i int) {
	d.nested("e", i, func(k []byte) bool {
		switch string(k) {
		case "r":
			x.Rcpt = d.int32()
		case "a":
			x.Addr = d.str()
		case "o":
			x.ORCPT = d.str()
		case "n":
			x.Notify = Notify(d.uint8())
		default:
			return false
		}
		return true
	})
}

func (d *eventDecoder) rcptReply(r *RcptReply, i int) {
	d.nested("rc", i, func(k []byte) bool {
		switch string(k) {
		case "r":
			r.Rcpt = d.int32()
		case "co":
			r.Code = int(d.int())
		case "en":
			r.Enhanced = d.str()
		case "t":
			r.Text = d.str()
		default:
			return false
		}
		return true
	})
}

func (d *eventDecoder) tls() *TLSInfo {
	if d.peekNil() {
		return nil
	}
	t := new(TLSInfo)
	d.nested("tls", -1, func(k []byte) bool {
		switch string(k) {
		case "v":
			t.Version = d.str()
		case "c":
			t.Cipher = d.str()
		case "b":
			t.Bits = int(d.int())
		case "vf":
			t.Verify = d.str()
		case "s":
			t.PeerSubject = d.str()
		case "i":
			t.PeerIssuer = d.str()
		default:
			return false
		}
		return true
	})
	return t
}

func (d *eventDecoder) auth() *AuthInfo {
	if d.peekNil() {
		return nil
	}
	a := new(AuthInfo)
	d.nested("au", -1, func(k []byte) bool {
		switch string(k) {
		case "m":
			a.Mechanism = d.str()
		case "u":
			a.User = d.str()
		default:
			return false
		}
		return true
	})
	return a
}
