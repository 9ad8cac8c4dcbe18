package client

import (
	"io"
	"os"
	"time"

	"github.com/smx-mta/smx/log"
)

// Protocol steps as they appear in results and in AttemptFinished.Stage.
const (
	StageConnect  = "connect"
	StageGreeting = "greeting"
	StageEHLO     = "ehlo"
	StageStartTLS = "starttls"
	StageMail     = "mail"
	StageRcpt     = "rcpt"
	StageData     = "data"
	StageDot      = "dot"
	StageDone     = "done"
)

// Route says where a transaction goes: the resolver's answer for its
// recipients.
type Route struct {
	// Mailer is log.MailerESMTP or log.MailerLMTP.
	Mailer string
	// Hops are the hosts in the order they are to be tried, each with its
	// addresses in order.
	Hops []log.NextHop
	// Port is the destination port; 0 means remote_port for ESMTP. For
	// LMTP a port means TCP to the hops.
	Port int
	// Socket is the LMTP unix socket. An LMTP route with neither Socket,
	// Port nor Hops goes to Options.LMTPSocket.
	Socket string
}

// Recipient is one envelope recipient of a transaction.
type Recipient struct {
	// Index is the recipient's index within its message (log.Event.Rcpt);
	// the client only carries it into the result.
	Index int32
	// Addr is the address without angle brackets.
	Addr string
	// ORCPT is the RFC 3461 original recipient as "addr-type;address",
	// decoded; it is passed on when the server offers DSN.
	ORCPT string
	// Notify is passed on when the server offers DSN.
	Notify log.Notify
}

// Envelope is one message transaction: the envelope and the body.
type Envelope struct {
	// Txn is the SMTP server transaction id (ss_ta) of the message, for
	// logs only.
	Txn string
	// From is the envelope sender without brackets; "" is the null sender.
	From  string
	Rcpts []Recipient
	// RET and ENVID are the RFC 3461 parameters, passed on when the server
	// offers DSN.
	RET   string
	ENVID string
	// Body is the BODY= parameter the message was received with: "7BIT",
	// "8BITMIME", "BINARYMIME" or "".
	Body string
	// SMTPUTF8 is true when the message was received with SMTPUTF8.
	SMTPUTF8 bool
	// Size is the size of the body in bytes, for SIZE=.
	Size int64
	// Open returns a fresh reader of the whole message (header and body)
	// each time it is called; the caller closes it. Lines end in CRLF or
	// LF; the client sends CRLF.
	Open func() (io.ReadCloser, error)
}

// Attempt is one connection attempt that did not yield a session, or the
// facts of the session that did.
type Attempt struct {
	Host   string
	IP     string // address connected to; the socket path for unix sockets
	Port   int
	Stage  string // the step the attempt ended in
	Reply  Reply  // the reply that ended it (Local for network errors)
	TLS    *log.TLSInfo
	Start  time.Time
	Finish time.Time
}

// Duration is how long the attempt took.
func (a Attempt) Duration() time.Duration { return a.Finish.Sub(a.Start) }

// RcptResult is what happened to one recipient.
type RcptResult struct {
	Rcpt Recipient
	// Reply is the reply that decides the recipient: to RCPT when that
	// failed, otherwise to MAIL, DATA or the final dot (for LMTP, the
	// recipient's own reply after the dot).
	Reply Reply
	// Stage is the step Reply answered.
	Stage string
}

// Delivered reports whether the server took responsibility for the
// recipient.
func (r RcptResult) Delivered() bool { return r.Reply.Class() == 2 }

// Permanent reports whether the recipient failed for good.
func (r RcptResult) Permanent() bool { return r.Reply.Permanent() }

// Result is the outcome of one transaction.
type Result struct {
	// Attempts lists the connection attempts that failed before a session
	// was opened (Deliver only), in order.
	Attempts []Attempt
	// Host, IP and Port name the server the transaction ran against; they
	// repeat the last attempt when no session was opened.
	Host string
	IP   string
	Port int
	// TLS describes the session's TLS, nil without STARTTLS.
	TLS *log.TLSInfo
	// Stage is the step the transaction ended in; StageDone on success.
	Stage string
	// Reply is the reply that decided the transaction as a whole: the last
	// one read.
	Reply Reply
	// Rcpts holds one result per envelope recipient, in envelope order.
	Rcpts []RcptResult
	// DSN is true when the server offered DSN, so that NOTIFY=SUCCESS
	// recipients delivered over a session without it are "relayed".
	DSN bool
	// Start and Finish bound the transaction.
	Start  time.Time
	Finish time.Time
}

// Duration is how long the transaction took.
func (r *Result) Duration() time.Duration { return r.Finish.Sub(r.Start) }

func hostname() string {
	name, err := os.Hostname()
	if err != nil || name == "" {
		return "localhost"
	}
	return name
}
