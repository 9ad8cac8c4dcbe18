// Package policy is the anti-spam and relay policy of SMAR: it decides
// whether a session, a sender or a recipient may pass. It owns the access
// map checks (every tag and right-hand side of the seed, the quick:
// modifier, delay_checks), the relay decision, protected recipients, DNS
// based blacklists and the seed's certificate DN encoding. It reads maps
// and asks the resolver and DNS; it never writes to the log, never talks
// SMTP and keeps no state between sessions: the per-session state lives in
// the Session the SMTP server holds.
package policy

import (
	"fmt"
	"net/netip"
	"strings"
)

// Action is what a check decided.
type Action uint8

// The actions. The zero value is Continue, which only appears inside the
// checker; the Checker's methods return one of the others, except Verify,
// whose Continue means "cannot verify this address".
const (
	// Continue means the check had nothing to say (the seed's cont or no
	// entry); the next check runs.
	Continue Action = iota
	// Accept lets the command pass (the seed's ok).
	Accept
	// Relay lets the command pass and allows relaying (the seed's relay).
	Relay
	// Reject refuses the command with Code, Enhanced and Text; a 4xx
	// Code is a temporary rejection.
	Reject
	// Discard accepts the command but silently drops its effect: at
	// connect the whole session's mail, at MAIL the transaction, at RCPT
	// the recipient (or the transaction when Quick is set).
	Discard
)

var actionNames = [...]string{"cont", "ok", "relay", "reject", "discard"}

// String returns the access map word for a: cont, ok, relay, reject or
// discard.
func (a Action) String() string {
	if int(a) < len(actionNames) {
		return actionNames[a]
	}
	return fmt.Sprintf("Action(%d)", uint8(a))
}

// Decision is the answer to one check: what to do and, for a rejection, the
// SMTP reply.
type Decision struct {
	Action Action
	// Quick is set when the deciding access map entry carried the quick:
	// modifier. For Discard at RCPT it means the whole transaction is
	// discarded.
	Quick bool
	// Code is the SMTP reply code of a rejection, for example 550 or 451.
	Code int
	// Enhanced is the RFC 3463 enhanced status code of a rejection, for
	// example "5.7.1".
	Enhanced string
	// Text is the reply text without code and enhanced code.
	Text string
	// Reason says, for the mail log and smxctl, which check decided, for
	// example "access to:@example.com" or "relay denied".
	Reason string
	// Greylisted marks the 421 of greylisting. The seed aborts the
	// session with it; with delay_greylisting_error_until_DATA the server
	// accepts the recipient and gives the 421 at DATA instead.
	Greylisted bool
}

// Temporary reports whether d is a temporary (4xx) rejection.
func (d Decision) Temporary() bool { return d.Action == Reject && d.Code/100 == 4 }

// Reply renders a rejection as an SMTP reply line without CRLF, for example
// "550 5.7.1 Relaying denied". It returns "" for any other action: the SMTP
// server chooses its own success replies.
func (d Decision) Reply() string {
	if d.Action != Reject {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%03d", d.Code)
	if d.Enhanced != "" {
		b.WriteByte(' ')
		b.WriteString(d.Enhanced)
	}
	if d.Text != "" {
		b.WriteByte(' ')
		b.WriteString(d.Text)
	}
	return b.String()
}

// String renders d for logs and tests, for example "reject 550 5.7.1
// Relaying denied" or "quick:ok".
func (d Decision) String() string {
	s := d.Action.String()
	if d.Quick {
		s = "quick:" + s
	}
	if d.Action == Reject {
		s += " " + d.Reply()
	}
	return s
}

// ClientInfo is what the SMTP server knows about a client when it connects.
type ClientInfo struct {
	// Addr is the client's IP address.
	Addr netip.Addr
	// Port is the client's TCP port, for logs only.
	Port int
	// Listener names the smtps section that accepted the connection.
	Listener string
}

// CertInfo describes the certificate a client presented during STARTTLS.
type CertInfo struct {
	// Verified is true when the certificate chain verified against the
	// server's CA certificates (CAcert_file, CAcert_directory).
	Verified bool
	// Issuer and Subject are the DNs in OpenSSL's one-line form
	// ("/C=US/O=Example/CN=Example CA"), not yet encoded: see
	// OneLineDN and EncodeDN.
	Issuer  string
	Subject string
}
