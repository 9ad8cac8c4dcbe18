package server

import (
	"context"
	"io"

	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/log/ids"
	"github.com/smx-mta/smx/smtp"
	"github.com/smx-mta/smx/smtp/policy"
)

// ContentStore is where message bodies go: the CDB (package content). The
// server writes the message, with its Received: header in front, through
// a BodyWriter and never holds a whole message in memory.
type ContentStore interface {
	// Create starts a body for transaction txn (its ss_ta) described by
	// env.
	Create(ctx context.Context, txn string, env *Envelope) (BodyWriter, error)
	// Release gives up a committed body that no event references: the
	// server calls it when the TxnReceived event for the body could not
	// be made durable.
	Release(ref string) error
	// Accepting reports whether there is disk space for new mail (qmgr
	// min_disk_space and ok_disk_space); while it is false MAIL gets
	// 452 4.3.1.
	Accepting() bool
}

// BodyWriter streams one message body into the ContentStore.
type BodyWriter interface {
	io.Writer
	// Commit makes the body durable and returns its reference. It returns
	// only once the body is on stable storage.
	Commit(ctx context.Context) (ref string, err error)
	// Abort discards the body; nothing of it remains visible. Abort after
	// Commit does nothing.
	Abort()
}

// Envelope is what the server knows about a transaction when its body
// starts: the TxnReceived event without the facts of the body itself.
type Envelope = log.TxnReceived

// EventLog is the event log (*log.Log). Append returns once the events
// are durable; concurrent callers share fsyncs (group commit).
type EventLog interface {
	Append(ctx context.Context, events ...log.Event) (lastSeq uint64, err error)
}

// IDGenerator makes ss_sess and ss_ta ids whose counter never repeats, not
// even across restarts (ids.ServerGenerator).
type IDGenerator interface {
	Next() (ids.Server, error)
}

// Policy is SMAR's policy (package smtp/policy): the checks at connect,
// MAIL and RCPT, the relay decision and local recipient validation.
type Policy interface {
	// Connect checks a new client and returns the policy state of its
	// session with the decision. A Reject ends the session (4xx) or makes
	// the server refuse every command but QUIT (5xx); delay_checks is the
	// policy's business: a delayed rejection arrives at RCPT.
	Connect(ctx context.Context, client policy.ClientInfo) (PolicySession, policy.Decision)
}

// PolicySession is the policy state of one SMTP session.
type PolicySession interface {
	// ClientName is the verified host name of the client, or "".
	ClientName() string
	// ClientResolve is the seed's cltresolve result, or "".
	ClientResolve() string
	// Quick reports whether connect ended in quick:ok or quick:relay,
	// which exempts the client from the EHLO self-impersonation check.
	Quick() bool
	// TLS tells the policy about a completed STARTTLS: a verified
	// certificate may allow relaying (allow_relaying_if_verified,
	// check_access_map_for_relaying). cert is nil when the client sent
	// none.
	TLS(ctx context.Context, cert *policy.CertInfo)
	// Authenticated tells the policy about a successful AUTH: a trusted
	// mechanism allows relaying.
	Authenticated(ctx context.Context, mechanism, user string)
	// Mail checks the sender of a new transaction ("" is <>).
	Mail(ctx context.Context, sender string, args smtp.MailArgs) policy.Decision
	// Rcpt checks a recipient: access map, relay decision, local
	// recipient validation, any rejection held back by delay_checks, and
	// greylisting, whose 421 has Decision.Greylisted set: the server ends
	// the session with it (at RCPT, or at DATA with
	// Options.DelayGreylistingErrorUntilDATA).
	Rcpt(ctx context.Context, rcpt string, args smtp.RcptArgs) policy.Decision
	// Reset ends the transaction (RSET, final dot, EHLO).
	Reset()
}

// Verifier is implemented by a PolicySession that can validate a local
// recipient for VRFY when VRFY is enabled (policy.Checker.Verify).
type Verifier interface {
	// Verify checks addr (the VRFY argument without angle brackets):
	// Accept or Relay is answered 250, Reject with its reply, anything
	// else (the address is not local) with 252.
	Verify(ctx context.Context, addr string) policy.Decision
}

// Load is the queue manager's view of how much more mail it can take.
type Load int

// The load levels, in order of severity.
const (
	// LoadNormal: accept as fast as clients send.
	LoadNormal Load = iota
	// LoadSlow: IQDB or AQ is filling up or disk space is getting short;
	// new sessions wait Options.SlowGreetingDelay before their greeting.
	LoadSlow
	// LoadRefuse: IQDB or AQ is full or disk space is below
	// min_disk_space; new transactions get 452 4.3.1 and new sessions
	// 421 4.3.2.
	LoadRefuse
)

// String returns "normal", "slow" or "refuse".
func (l Load) String() string {
	switch l {
	case LoadNormal:
		return "normal"
	case LoadSlow:
		return "slow"
	case LoadRefuse:
		return "refuse"
	}
	return "Load(?)"
}

// LoadMonitor reports the current load (the queue manager's feedback loop
// of seed 001 "Size of Queues, Caches, and Databases", and the disk space
// monitor of the content store). It is asked at every connection and MAIL,
// so it must be cheap.
type LoadMonitor interface {
	LoadState() Load
}

// LoadFunc adapts a function to LoadMonitor.
type LoadFunc func() Load

// LoadState implements LoadMonitor.
func (f LoadFunc) LoadState() Load { return f() }

// FlushHook receives ETRN requests (RFC 1985): arg is the node name, or
// "@domain" or "#queue" as the client gave it. It returns quickly; the
// queue manager runs the queue in the background.
type FlushHook interface {
	Flush(ctx context.Context, arg string) error
}

// Authenticator checks AUTH credentials (see CredentialMap).
type Authenticator interface {
	// Authenticate reports whether password is right for user.
	Authenticate(user, password string) bool
}
