package log

import (
	"fmt"
	"time"
)

// EventType identifies the envelope transition an event records. The
// numbers are part of the on-disk format: they are never reused or
// renumbered, and new types are appended at the end.
type EventType uint16

// The event catalogue. docs/eventlog.md describes every field.
const (
	TypeTxnReceived     EventType = 1
	TypeRcptResolved    EventType = 2
	TypeAttemptStarted  EventType = 3
	TypeAttemptFinished EventType = 4
	TypeRcptDeferred    EventType = 5
	TypeRcptDelivered   EventType = 6
	TypeRcptFailed      EventType = 7
	TypeRcptExpired     EventType = 8
	TypeDelayNotified   EventType = 9
	TypeDSNQueued       EventType = 10
	TypeContentReleased EventType = 11
	TypeHold            EventType = 12
	TypeRelease         EventType = 13
	TypeDelete          EventType = 14
	TypeRequeue         EventType = 15
	TypeRedirect        EventType = 16
)

var eventTypeNames = [...]string{
	TypeTxnReceived:     "TxnReceived",
	TypeRcptResolved:    "RcptResolved",
	TypeAttemptStarted:  "AttemptStarted",
	TypeAttemptFinished: "AttemptFinished",
	TypeRcptDeferred:    "RcptDeferred",
	TypeRcptDelivered:   "RcptDelivered",
	TypeRcptFailed:      "RcptFailed",
	TypeRcptExpired:     "RcptExpired",
	TypeDelayNotified:   "DelayNotified",
	TypeDSNQueued:       "DSNQueued",
	TypeContentReleased: "ContentReleased",
	TypeHold:            "Hold",
	TypeRelease:         "Release",
	TypeDelete:          "Delete",
	TypeRequeue:         "Requeue",
	TypeRedirect:        "Redirect",
}

// String returns the catalogue name of t, for example "RcptDeferred".
func (t EventType) String() string {
	if int(t) < len(eventTypeNames) && eventTypeNames[t] != "" {
		return eventTypeNames[t]
	}
	return fmt.Sprintf("EventType(%d)", uint16(t))
}

// ParseEventType returns the type whose catalogue name is name, ignoring
// case.
func ParseEventType(name string) (EventType, error) {
	for t, n := range eventTypeNames {
		if n != "" && equalFold(n, name) {
			return EventType(t), nil
		}
	}
	return 0, fmt.Errorf("unknown event type %q", name)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		ca, cb := a[i], b[i]
		if 'A' <= ca && ca <= 'Z' {
			ca += 'a' - 'A'
		}
		if 'A' <= cb && cb <= 'Z' {
			cb += 'a' - 'A'
		}
		if ca != cb {
			return false
		}
	}
	return true
}

// NoRcpt is the recipient index of an event that concerns a whole
// transaction rather than one of its recipients.
const NoRcpt int32 = -1

// Event is one envelope transition. Seq and Time are assigned by the log
// when the event is appended; the appender fills in the ids and the payload.
//
// On disk an event is a msgpack map with the keys named in the msgpack tags
// below plus "t" (the EventType) and "v" (the schema version of the
// payload); Seq is kept beside it (see docs/eventlog.md).
//
// The strings of an event read with Log.Iter share one allocation, which a
// string kept for long keeps alive; those read with Subscribe or Get do
// not (see Log.Iter).
type Event struct {
	// Seq is the event's position in the log: monotonic and gapless,
	// starting at 1.
	Seq uint64 `msgpack:"-"`
	// Time is when the transition happened. Decoded times are in UTC.
	Time time.Time `msgpack:"ts,omitempty"`
	// Txn is the SMTP server transaction id (ss_ta) of the message the
	// event concerns. A DSN is a message of its own with its own ss_ta.
	Txn string `msgpack:"x,omitempty"`
	// Rcpt is the index of the recipient within Txn that the event
	// concerns, or NoRcpt when it concerns the whole transaction.
	// Recipients named at RCPT are numbered from 0 in the order they were
	// accepted; recipients created by alias expansion get the next free
	// indexes (see RcptResolved).
	Rcpt int32 `msgpack:"r,omitempty"`
	// Payload is the typed body; its Type names the event.
	Payload Payload `msgpack:"p"`
	// Unknown holds what a newer version of smx wrote into the record that
	// this version's catalogue does not know: fields added since, and the
	// newer schema version. Decoding keeps them and encoding writes them
	// back unchanged, so an older smx that reads and rewrites an event
	// loses nothing. It is nil for events of this version; appenders leave
	// it nil.
	Unknown *UnknownFields `msgpack:"-"`
}

// Type returns the type of e's payload.
func (e Event) Type() EventType { return e.Payload.EventType() }

// Payload is the typed body of an event.
type Payload interface {
	// EventType names the transition the payload records.
	EventType() EventType
}

// Notify is the set of RFC 3461 NOTIFY conditions of a recipient. The zero
// value means NOTIFY was not given, which is treated as FAILURE,DELAY.
type Notify uint8

// NOTIFY conditions.
const (
	NotifyNever   Notify = 1 << iota // NOTIFY=NEVER
	NotifySuccess                    // NOTIFY=SUCCESS
	NotifyFailure                    // NOTIFY=FAILURE
	NotifyDelay                      // NOTIFY=DELAY
)

// Recipient is a recipient as the client gave it at RCPT, with its DSN
// parameters.
type Recipient struct {
	// Addr is the address without angle brackets.
	Addr string `msgpack:"a,omitempty"`
	// ORCPT is the RFC 3461 original recipient, "addr-type;xtext-decoded
	// address", or empty.
	ORCPT string `msgpack:"o,omitempty"`
	// Notify is the NOTIFY parameter.
	Notify Notify `msgpack:"n,omitempty"`
}

// TLSInfo describes a TLS session, as the Received: header and the mail log
// print it.
type TLSInfo struct {
	Version string `msgpack:"v,omitempty"` // for example "TLSv1.3"
	Cipher  string `msgpack:"c,omitempty"` // cipher suite name
	Bits    int    `msgpack:"b,omitempty"` // effective key length of the symmetric cipher
	// Verify is the seed's verification result: OK, NO, NOT or FAIL.
	Verify      string `msgpack:"vf,omitempty"`
	PeerSubject string `msgpack:"s,omitempty"` // DN of the presented certificate, if any
	PeerIssuer  string `msgpack:"i,omitempty"` // DN of its issuer, if any
}

// AuthInfo describes a successful SMTP AUTH.
type AuthInfo struct {
	Mechanism string `msgpack:"m,omitempty"` // for example "PLAIN"
	User      string `msgpack:"u,omitempty"` // the authentication identity
}

// TxnReceived records a transaction the SMTP server accepted: the body is in
// the content store and the reply to the final dot is 250 once this event is
// durable. It carries everything a later bounce or audit needs.
type TxnReceived struct {
	Session  string      `msgpack:"ss,omitempty"`  // ss_sess
	Listener string      `msgpack:"l,omitempty"`   // name of the smtps section that accepted it
	Sender   string      `msgpack:"f,omitempty"`   // MAIL address without brackets; "" is the null sender
	Rcpts    []Recipient `msgpack:"rc,omitempty"`  // index i is recipient i
	RET      string      `msgpack:"ret,omitempty"` // RFC 3461 RET: "FULL", "HDRS" or ""
	ENVID    string      `msgpack:"env,omitempty"` // RFC 3461 ENVID, xtext-decoded
	Size     int64       `msgpack:"sz,omitempty"`  // SIZE= parameter of MAIL, 0 when not given
	Body     string      `msgpack:"b,omitempty"`   // BODY= parameter: "7BIT", "8BITMIME", "BINARYMIME" or ""
	SMTPUTF8 bool        `msgpack:"u8,omitempty"`  // SMTPUTF8 parameter of MAIL

	ClientIP      string    `msgpack:"ip,omitempty"` // client address
	ClientPort    int       `msgpack:"cp,omitempty"` // client port
	ClientName    string    `msgpack:"cn,omitempty"` // verified client host name, if looked up
	ClientResolve string    `msgpack:"cr,omitempty"` // cltresolve result: ok, no, tempptr, tempa, or ""
	HELO          string    `msgpack:"h,omitempty"`  // EHLO/HELO argument
	Protocol      string    `msgpack:"pr,omitempty"` // ESMTP, ESMTPS, ESMTPA, ESMTPSA, SMTP, LMTP
	TLS           *TLSInfo  `msgpack:"tls,omitempty"`
	Auth          *AuthInfo `msgpack:"au,omitempty"`

	MessageID   string    `msgpack:"mid,omitempty"` // Message-ID header field, if any
	Hops        int       `msgpack:"hc,omitempty"`  // number of Received: header fields
	Content     string    `msgpack:"c,omitempty"`   // content store reference of the body
	ContentSize int64     `msgpack:"cs,omitempty"`  // bytes stored, including the added Received: header
	ReceivedAt  time.Time `msgpack:"at,omitempty"`  // when the final dot was received

	// DSNOf is the ss_ta of the message this one reports on when the
	// message is a DSN generated by QMGR; empty otherwise.
	DSNOf string `msgpack:"dsn,omitempty"`
}

// EventType implements Payload.
func (*TxnReceived) EventType() EventType { return TypeTxnReceived }

// Mailer names a delivery agent.
const (
	MailerESMTP = "esmtp"
	MailerLMTP  = "lmtp"
)

// NextHop is one destination host for a recipient, in the order it is to be
// tried.
type NextHop struct {
	Host       string   `msgpack:"h,omitempty"` // host name, or the address of a [IPv4] literal
	Preference int      `msgpack:"p,omitempty"` // MX preference; 0 for mailertable hosts and implicit MX
	Addrs      []string `msgpack:"a,omitempty"` // IP addresses in the order they are to be tried
}

// ExpandedRcpt is a recipient created by alias expansion.
type ExpandedRcpt struct {
	Rcpt  int32  `msgpack:"r,omitempty"` // the new recipient index within the transaction
	Addr  string `msgpack:"a,omitempty"` // the address, without brackets
	ORCPT string `msgpack:"o,omitempty"` // original recipient carried over for DSNs
	// Notify is the NOTIFY inherited from the expanded recipient.
	Notify Notify `msgpack:"n,omitempty"`
}

// RcptResolved records where a recipient goes: either a delivery agent with
// its next hops, or an expansion into new recipients.
type RcptResolved struct {
	Mailer string `msgpack:"m,omitempty"`  // MailerESMTP or MailerLMTP; empty for an expansion
	Port   int    `msgpack:"po,omitempty"` // destination port; 0 means the default of the mailer
	// Socket is the LMTP unix socket when the mailertable said "lmtp:" alone.
	Socket string    `msgpack:"so,omitempty"`
	Hops   []NextHop `msgpack:"h,omitempty"`
	// Expansion lists the recipients an alias expanded into. The expanded
	// recipient itself needs no delivery; it is finished once every
	// recipient in Expansion is.
	Expansion []ExpandedRcpt `msgpack:"e,omitempty"`
	// Owner is the envelope sender for the expansion when the alias is a
	// list with an owner-LIST entry; empty keeps the original sender.
	Owner string `msgpack:"ow,omitempty"`
	// Destination is the key the scheduler groups and throttles by, for
	// example "esmtp:[192.0.2.1]:25" or "lmtp:/var/spool/smx/lmtpsock".
	Destination string `msgpack:"d,omitempty"`
}

// EventType implements Payload.
func (*RcptResolved) EventType() EventType { return TypeRcptResolved }

// AttemptStarted records that a delivery agent started a delivery
// transaction for some recipients of one message. Event.Rcpt is NoRcpt.
type AttemptStarted struct {
	DASession string  `msgpack:"ds,omitempty"` // da_sess
	DATxn     string  `msgpack:"dt,omitempty"` // da_ta
	Rcpts     []int32 `msgpack:"rc,omitempty"` // recipient indexes in this delivery transaction
	Mailer    string  `msgpack:"m,omitempty"`
	Host      string  `msgpack:"h,omitempty"`
	IP        string  `msgpack:"ip,omitempty"`
	Port      int     `msgpack:"po,omitempty"`
}

// EventType implements Payload.
func (*AttemptStarted) EventType() EventType { return TypeAttemptStarted }

// RcptReply is a reply to one recipient.
type RcptReply struct {
	Rcpt     int32  `msgpack:"r,omitempty"`
	Code     int    `msgpack:"co,omitempty"` // SMTP reply code
	Enhanced string `msgpack:"en,omitempty"` // enhanced status code, for example "2.1.5"
	Text     string `msgpack:"t,omitempty"`  // full reply text as received
}

// AttemptFinished records the end of a delivery transaction, whatever its
// outcome. The per-recipient outcome follows as RcptDelivered,
// RcptDeferred or RcptFailed events.
type AttemptFinished struct {
	DASession string `msgpack:"ds,omitempty"`
	DATxn     string `msgpack:"dt,omitempty"`
	Host      string `msgpack:"h,omitempty"`
	IP        string `msgpack:"ip,omitempty"`
	Port      int    `msgpack:"po,omitempty"`
	// Stage is the protocol step the transaction ended in: connect,
	// greeting, ehlo, starttls, mail, rcpt, data, dot, or done.
	Stage    string        `msgpack:"st,omitempty"`
	Code     int           `msgpack:"co,omitempty"` // the reply code that decided the attempt
	Enhanced string        `msgpack:"en,omitempty"` // its enhanced status code
	Reply    string        `msgpack:"re,omitempty"` // its text
	Duration time.Duration `msgpack:"du,omitempty"`
	TLS      *TLSInfo      `msgpack:"tls,omitempty"`
	Rcpts    []RcptReply   `msgpack:"rc,omitempty"` // per-recipient replies (RCPT, and after DATA for LMTP)
}

// EventType implements Payload.
func (*AttemptFinished) EventType() EventType { return TypeAttemptFinished }

// RcptDeferred records a temporary failure: the recipient moves to DEFEDB
// until NextTry.
type RcptDeferred struct {
	NextTry     time.Time `msgpack:"nt,omitempty"`
	Reason      string    `msgpack:"re,omitempty"` // reply text or local reason
	Code        int       `msgpack:"co,omitempty"`
	Enhanced    string    `msgpack:"en,omitempty"`
	Destination string    `msgpack:"d,omitempty"` // the destination that failed, for the host status cache
	Host        string    `msgpack:"h,omitempty"`
	// HostDownUntil, when not zero, marks Destination as down until then.
	HostDownUntil time.Time `msgpack:"hd,omitempty"`
}

// EventType implements Payload.
func (*RcptDeferred) EventType() EventType { return TypeRcptDeferred }

// RcptDelivered records a successful delivery; it is terminal.
type RcptDelivered struct {
	DATxn    string `msgpack:"dt,omitempty"`
	Host     string `msgpack:"h,omitempty"`
	IP       string `msgpack:"ip,omitempty"`
	Code     int    `msgpack:"co,omitempty"`
	Enhanced string `msgpack:"en,omitempty"`
	Reply    string `msgpack:"re,omitempty"`
	// Relayed is true when the next server does not offer DSN, so a
	// NOTIFY=SUCCESS recipient gets a "relayed" DSN.
	Relayed bool `msgpack:"rl,omitempty"`
}

// EventType implements Payload.
func (*RcptDelivered) EventType() EventType { return TypeRcptDelivered }

// RcptFailed records a permanent failure; it is terminal and, NOTIFY
// permitting, leads to a bounce.
type RcptFailed struct {
	Host     string `msgpack:"h,omitempty"`
	IP       string `msgpack:"ip,omitempty"`
	Stage    string `msgpack:"st,omitempty"` // protocol step, or "resolve" for a routing failure
	Code     int    `msgpack:"co,omitempty"`
	Enhanced string `msgpack:"en,omitempty"`
	Reason   string `msgpack:"re,omitempty"`
}

// EventType implements Payload.
func (*RcptFailed) EventType() EventType { return TypeRcptFailed }

// RcptExpired records that a recipient stayed in the queue longer than
// queue_return_timeout; it is terminal (status 4.4.7) and leads to a bounce.
type RcptExpired struct {
	LastReason string `msgpack:"lr,omitempty"` // the reason of the last deferral
	Enhanced   string `msgpack:"en,omitempty"` // "4.4.7"
}

// EventType implements Payload.
func (*RcptExpired) EventType() EventType { return TypeRcptExpired }

// DelayNotified records that a delay warning was queued for the recipients
// listed; each recipient gets at most one.
type DelayNotified struct {
	Rcpts []int32 `msgpack:"rc,omitempty"`
	DSN   string  `msgpack:"dsn,omitempty"` // ss_ta of the DSN message
}

// EventType implements Payload.
func (*DelayNotified) EventType() EventType { return TypeDelayNotified }

// DSN kinds.
const (
	DSNFailure = "failure"
	DSNDelay   = "delay"
	DSNSuccess = "success"
)

// DSNQueued links a message (Event.Txn) to a DSN generated for it. The DSN
// message itself enters the queue with its own TxnReceived.
type DSNQueued struct {
	DSN   string  `msgpack:"dsn,omitempty"` // ss_ta of the DSN message
	Kind  string  `msgpack:"k,omitempty"`   // DSNFailure, DSNDelay or DSNSuccess
	Rcpts []int32 `msgpack:"rc,omitempty"`  // recipients the DSN reports on
}

// EventType implements Payload.
func (*DSNQueued) EventType() EventType { return TypeDSNQueued }

// ContentReleased records that nothing references the body of Event.Txn any
// more and the content store may reclaim it.
type ContentReleased struct {
	Content string `msgpack:"c,omitempty"`
}

// EventType implements Payload.
func (*ContentReleased) EventType() EventType { return TypeContentReleased }

// Operator says who asked for an operator action and why.
type Operator struct {
	User   string `msgpack:"ou,omitempty"` // the operator's user name
	Reason string `msgpack:"or,omitempty"`
}

// Hold stops delivery of a message (Event.Rcpt NoRcpt) or one recipient
// until Release.
type Hold struct{ Operator }

// EventType implements Payload.
func (*Hold) EventType() EventType { return TypeHold }

// Release undoes Hold.
type Release struct{ Operator }

// EventType implements Payload.
func (*Release) EventType() EventType { return TypeRelease }

// Delete removes a message or recipient from the queue without a DSN; it is
// terminal.
type Delete struct{ Operator }

// EventType implements Payload.
func (*Delete) EventType() EventType { return TypeDelete }

// Requeue makes a message or recipient due now, forgetting host status.
type Requeue struct{ Operator }

// EventType implements Payload.
func (*Requeue) EventType() EventType { return TypeRequeue }

// Redirect sends a recipient to another address: the recipient is finished
// and a new one (NewRcpt, at NewAddr) takes its place in the same
// transaction, with its NOTIFY, owner and ORCPT.
//
// With Event.Rcpt NoRcpt it redirects the whole message: every recipient
// still live is finished as redirected, and ONE new recipient NewRcpt at
// NewAddr takes all their places, with the message's envelope sender, no
// ORCPT, and the NOTIFY the redirected recipients had in common (none when
// they differed). Finished recipients are left as they are. Logs written
// before this form have no Redirect with NoRcpt.
type Redirect struct {
	Operator
	NewAddr string `msgpack:"na,omitempty"`
	NewRcpt int32  `msgpack:"nr,omitempty"`
}

// EventType implements Payload.
func (*Redirect) EventType() EventType { return TypeRedirect }
