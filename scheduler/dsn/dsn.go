// Package dsn writes delivery status notifications: bounces, delay
// warnings and success notices as RFC 3464 multipart/report messages with a
// human-readable part, a message/delivery-status part and the original
// message or its header.
//
// It only formats. Which recipients a DSN reports on, when it is sent, to
// whom, and how much of the original it returns (RET and the seed's
// DSN_handling flags) is decided by the scheduler, which also stores the
// result in the content store and queues it. The package does no I/O other
// than to the writer and reader it is given.
package dsn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// Actions of RFC 3464 2.3.3.
const (
	ActionFailed    = "failed"
	ActionDelayed   = "delayed"
	ActionDelivered = "delivered"
	ActionRelayed   = "relayed"
	ActionExpanded  = "expanded"
)

// Return says how much of the original message a DSN carries.
type Return int

// How much of the original is returned.
const (
	// ReturnHeaders returns the header as text/rfc822-headers.
	ReturnHeaders Return = iota
	// ReturnFull returns the whole message as message/rfc822.
	ReturnFull
	// ReturnNone returns nothing (the original is no longer readable).
	ReturnNone
)

// Recipient is one recipient a DSN reports on.
type Recipient struct {
	// Addr is the final recipient address.
	Addr string
	// ORCPT is the RFC 3461 original recipient "addr-type;address", or "".
	ORCPT string
	// Action is one of the Action constants.
	Action string
	// Status is the RFC 3463 status code, for example "5.1.1".
	Status string
	// RemoteMTA is the host that gave the diagnostic, or "".
	RemoteMTA string
	// Diagnostic is the reply of the remote host (for example "550 5.1.1
	// unknown user"), or a local reason; "" for none.
	Diagnostic string
	// DiagnosticType is "smtp" for a reply of a remote server (the
	// default) or "x-local" for a reason made up here.
	DiagnosticType string
	// Stage is the protocol step the diagnostic answered ("rcpt", "dot",
	// ...), shown in the human-readable part.
	Stage string
	// LastAttempt is the time of the last delivery attempt; zero for none.
	LastAttempt time.Time
	// WillRetryUntil is when a delayed recipient expires; zero for none.
	WillRetryUntil time.Time
}

// Report is everything one DSN says.
type Report struct {
	// ReportingMTA is this host's name (Reporting-MTA, From:).
	ReportingMTA string
	// To is the address the DSN goes to: the original sender, or the
	// double_bounce_address.
	To string
	// MessageID is the DSN's own Message-ID, without angle brackets.
	MessageID string
	// Date is when the DSN was made.
	Date time.Time
	// Boundary separates the MIME parts; it must not occur in the
	// original message. Callers derive it from the DSN's id.
	Boundary string

	// QueueID is the original's ss_ta, shown as X-SMX-Queue-ID.
	QueueID string
	// ENVID is the original's RFC 3461 ENVID, or "".
	ENVID string
	// Sender is the original's envelope sender.
	Sender string
	// Arrival is when the original was received.
	Arrival time.Time
	// Recipients are the recipients reported on. All share the kind of
	// the report: failed, delayed, or delivered/relayed/expanded.
	Recipients []Recipient
	// Return says how much of the original to include.
	Return Return
}

// Subject lines by kind.
const (
	subjectFailed  = "Undelivered Mail Returned to Sender"
	subjectDelayed = "Delayed Mail (still being retried)"
	subjectSuccess = "Successful Mail Delivery Report"
)

// ErrNoRecipients is returned for a report with no recipients.
var ErrNoRecipients = errors.New("dsn: report has no recipients")

// kind returns the report's kind from its first recipient.
func (r *Report) kind() string {
	switch r.Recipients[0].Action {
	case ActionFailed:
		return ActionFailed
	case ActionDelayed:
		return ActionDelayed
	}
	return ActionDelivered
}

// utf8Needed reports whether an address needs the RFC 6533 forms.
func (r *Report) utf8Needed() bool {
	if !isASCII(r.Sender) || !isASCII(r.To) {
		return true
	}
	for _, rc := range r.Recipients {
		if !isASCII(rc.Addr) || !isASCII(rc.ORCPT) {
			return true
		}
	}
	return false
}

// Write writes the DSN message for r to w, with CRLF line endings. When
// r.Return is not ReturnNone, original is read for the header or the
// whole message. It returns whether the DSN has 8-bit content (so that it
// must be sent with BODY=8BITMIME) and any error of w or original.
func Write(w io.Writer, r *Report, original io.Reader) (eightBit bool, err error) {
	if len(r.Recipients) == 0 {
		return false, ErrNoRecipients
	}
	if r.Boundary == "" {
		return false, errors.New("dsn: no MIME boundary")
	}
	bw := bufio.NewWriter(w)
	global := r.utf8Needed()
	eightBit = global
	p := func(format string, args ...any) {
		fmt.Fprintf(bw, format, args...)
		bw.WriteString("\r\n")
	}

	subject := subjectSuccess
	switch r.kind() {
	case ActionFailed:
		subject = subjectFailed
	case ActionDelayed:
		subject = subjectDelayed
	}
	p("From: Mail Delivery System <MAILER-DAEMON@%s>", r.ReportingMTA)
	if r.To == "" {
		p("To: undisclosed-recipients:;")
	} else {
		p("To: <%s>", r.To)
	}
	p("Subject: %s", subject)
	p("Date: %s", r.Date.Format(time.RFC1123Z))
	p("Message-ID: <%s>", r.MessageID)
	p("Auto-Submitted: auto-replied")
	p("MIME-Version: 1.0")
	p(`Content-Type: multipart/report; report-type=delivery-status;`)
	p(`	boundary="%s"`, r.Boundary)
	p("")
	p("This is a MIME-encapsulated message.")
	p("")

	// The human-readable part.
	p("--%s", r.Boundary)
	charset := "us-ascii"
	if global {
		charset = "utf-8"
	}
	p("Content-Type: text/plain; charset=%s", charset)
	p("Content-Description: Notification")
	p("")
	writeText(bw, r, global)
	p("")

	// The machine-readable part.
	p("--%s", r.Boundary)
	if global {
		p("Content-Type: message/global-delivery-status")
	} else {
		p("Content-Type: message/delivery-status")
	}
	p("Content-Description: Delivery report")
	p("")
	field(bw, "Reporting-MTA", "dns; "+r.ReportingMTA)
	if r.QueueID != "" {
		field(bw, "X-SMX-Queue-ID", r.QueueID)
	}
	if r.ENVID != "" {
		field(bw, "Original-Envelope-Id", clean(r.ENVID, global))
	}
	if r.Sender != "" {
		field(bw, "X-SMX-Sender", addrType(r.Sender)+"; "+r.Sender)
	}
	if !r.Arrival.IsZero() {
		field(bw, "Arrival-Date", r.Arrival.Format(time.RFC1123Z))
	}
	for _, rc := range r.Recipients {
		p("")
		field(bw, "Final-Recipient", addrType(rc.Addr)+"; "+rc.Addr)
		if typ, addr, ok := strings.Cut(rc.ORCPT, ";"); ok && addr != "" {
			field(bw, "Original-Recipient", strings.ToLower(typ)+"; "+addr)
		}
		field(bw, "Action", rc.Action)
		field(bw, "Status", rc.Status)
		if rc.RemoteMTA != "" {
			field(bw, "Remote-MTA", "dns; "+clean(rc.RemoteMTA, global))
		}
		if rc.Diagnostic != "" {
			typ := rc.DiagnosticType
			if typ == "" {
				typ = "smtp"
			}
			field(bw, "Diagnostic-Code", typ+"; "+clean(rc.Diagnostic, global))
		}
		if !rc.LastAttempt.IsZero() {
			field(bw, "Last-Attempt-Date", rc.LastAttempt.Format(time.RFC1123Z))
		}
		if !rc.WillRetryUntil.IsZero() {
			field(bw, "Will-Retry-Until", rc.WillRetryUntil.Format(time.RFC1123Z))
		}
	}
	p("")

	// The original.
	if r.Return != ReturnNone && original != nil {
		p("--%s", r.Boundary)
		if r.Return == ReturnFull {
			if global {
				p("Content-Type: message/global")
			} else {
				p("Content-Type: message/rfc822")
			}
			p("Content-Description: Undelivered Message")
		} else {
			if global {
				p("Content-Type: message/global-headers")
			} else {
				p("Content-Type: text/rfc822-headers")
			}
			p("Content-Description: Undelivered Message Headers")
		}
		p("")
		had8, err := copyOriginal(bw, original, r.Return == ReturnFull, "--"+r.Boundary)
		if err != nil {
			return false, fmt.Errorf("dsn: read original %s: %w", r.QueueID, err)
		}
		eightBit = eightBit || had8
		p("")
	}
	p("--%s--", r.Boundary)
	if err := bw.Flush(); err != nil {
		return false, fmt.Errorf("dsn: write: %w", err)
	}
	return eightBit, nil
}

// writeText writes the human-readable part; global says whether it may
// hold UTF-8 (charset utf-8) or must be ASCII.
func writeText(w *bufio.Writer, r *Report, global bool) {
	line := func(s string) {
		if strings.HasPrefix(s, "--") {
			// Never a line that could be taken for a boundary.
			w.WriteByte(' ')
		}
		w.WriteString(s + "\r\n")
	}
	line("This is the mail system at host " + r.ReportingMTA + ".")
	line("")
	switch r.kind() {
	case ActionFailed:
		line("I'm sorry to have to inform you that your message could not")
		line("be delivered to one or more recipients. It's attached below.")
	case ActionDelayed:
		line("Your message could not be delivered for some time to one or")
		line("more recipients. The mail system will keep trying; you do not")
		line("need to send it again. Delivery will be given up at the time")
		line("shown for each recipient below.")
	default:
		line("Your message was successfully delivered to the destination(s)")
		line("listed below. If the message was delivered to a mailbox you will")
		line("receive no further notifications. Otherwise you may still receive")
		line("notifications of mail delivery errors from other systems.")
	}
	line("")
	for _, rc := range r.Recipients {
		var b strings.Builder
		b.WriteString("<" + clean(rc.Addr, global) + ">: ")
		switch rc.Action {
		case ActionRelayed:
			b.WriteString("relayed to a server that does not offer delivery notifications")
		case ActionDelivered:
			b.WriteString("delivered")
		case ActionExpanded:
			b.WriteString("delivered to an alias that expanded to several recipients")
		}
		if rc.Diagnostic != "" {
			if rc.Action != ActionFailed && rc.Action != ActionDelayed {
				b.WriteString(": ")
			}
			b.WriteString(clean(rc.Diagnostic, global))
		}
		if rc.RemoteMTA != "" || rc.Stage != "" {
			b.WriteString(" (")
			if rc.RemoteMTA != "" {
				b.WriteString("host " + clean(rc.RemoteMTA, global))
				if rc.Stage != "" {
					b.WriteString(", ")
				}
			}
			if rc.Stage != "" {
				b.WriteString("in reply to " + stageName(rc.Stage))
			}
			b.WriteString(")")
		}
		if !rc.WillRetryUntil.IsZero() {
			b.WriteString("; will retry until " + rc.WillRetryUntil.Format(time.RFC1123Z))
		}
		for _, l := range wrap(b.String(), 76) {
			line(l)
		}
		line("")
	}
}

// stageName says which command a stage's reply answered.
func stageName(stage string) string {
	switch stage {
	case "connect":
		return "connect"
	case "greeting":
		return "the greeting"
	case "ehlo":
		return "EHLO"
	case "starttls":
		return "STARTTLS"
	case "mail":
		return "MAIL FROM"
	case "rcpt":
		return "RCPT TO"
	case "data":
		return "DATA"
	case "dot", "done":
		return "end of data"
	case "resolve":
		return "address resolution"
	}
	return stage
}

// field writes "Name: value" folded at spaces to keep lines near 78
// characters (RFC 5322 2.2.3).
func field(w *bufio.Writer, name, value string) {
	lines := wrap(name+": "+value, 78)
	for i, l := range lines {
		if i > 0 {
			w.WriteString("\t")
		}
		w.WriteString(l)
		w.WriteString("\r\n")
	}
}

// wrap splits s at spaces into lines of at most width bytes where it can.
func wrap(s string, width int) []string {
	var lines []string
	for len(s) > width {
		cut := strings.LastIndexByte(s[:width], ' ')
		if cut <= 0 {
			cut = strings.IndexByte(s, ' ')
			if cut <= 0 {
				break
			}
		}
		lines = append(lines, s[:cut])
		s = strings.TrimLeft(s[cut:], " ")
	}
	return append(lines, s)
}

// clean makes untrusted text safe for one header field or text line:
// control characters (CR and LF among them) become spaces and invalid
// UTF-8 becomes U+FFFD. Unless allowUTF8 says so (a report with the RFC 6533
// types and charset utf-8), every other byte above 127 becomes '?': a
// remote server's reply in UTF-8 must not make a us-ascii report 8-bit,
// which it would then be sent as 7BIT.
func clean(s string, allowUTF8 bool) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	return strings.Map(func(r rune) rune {
		switch {
		case r < 0x20 || r == 0x7f:
			return ' '
		case r >= utf8.RuneSelf && !allowUTF8:
			return '?'
		}
		return r
	}, s)
}

// addrType is the RFC 3464/6533 address type for addr.
func addrType(addr string) string {
	if isASCII(addr) {
		return "rfc822"
	}
	return "utf-8"
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return false
		}
	}
	return true
}

// copyOriginal copies the original message (all of it, or up to the empty
// line that ends the header) with CRLF line endings, and reports whether it
// had a byte above 127. A line that begins with the DSN's boundary
// delimiter (which the caller makes unlikely by deriving the boundary from
// the DSN's fresh id) gets a leading space so that it cannot end the part.
func copyOriginal(w *bufio.Writer, original io.Reader, full bool, delimiter string) (eightBit bool, err error) {
	r := bufio.NewReaderSize(original, 32<<10)
	midLine := false
	for {
		line, err := r.ReadSlice('\n')
		if !midLine && bytes.HasPrefix(line, []byte(delimiter)) {
			w.WriteByte(' ')
		}
		if err == bufio.ErrBufferFull {
			// A long line: copy it in pieces.
			eightBit = eightBit || !isASCII(string(line))
			w.Write(line)
			midLine = true
			continue
		}
		midLine = false
		if len(line) > 0 {
			body := line
			if n := len(body); body[n-1] == '\n' {
				body = body[:n-1]
				if n := len(body); n > 0 && body[n-1] == '\r' {
					body = body[:n-1]
				}
				if !full && len(body) == 0 {
					return eightBit, nil
				}
				eightBit = eightBit || !isASCII(string(body))
				w.Write(body)
				w.WriteString("\r\n")
			} else {
				eightBit = eightBit || !isASCII(string(body))
				w.Write(body)
				w.WriteString("\r\n")
			}
		}
		if err == io.EOF {
			return eightBit, nil
		}
		if err != nil {
			return eightBit, err
		}
	}
}
