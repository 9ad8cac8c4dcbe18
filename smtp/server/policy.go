package server

import (
	"context"

	"github.com/smx-mta/smx/smtp"
	"github.com/smx-mta/smx/smtp/policy"
)

// NewPolicy adapts SMAR's policy checker (*policy.Checker) to Policy. Its
// sessions are Verifiers, for VRFY.
func NewPolicy(c *policy.Checker) Policy {
	return checkerPolicy{func() *policy.Checker { return c }}
}

// NewPolicyFunc is NewPolicy for a checker that a reload may replace:
// current is asked at each connect, and the session keeps the checker it
// got until it ends.
func NewPolicyFunc(current func() *policy.Checker) Policy { return checkerPolicy{current} }

type checkerPolicy struct{ current func() *policy.Checker }

func (p checkerPolicy) Connect(ctx context.Context, client policy.ClientInfo) (PolicySession, policy.Decision) {
	c := p.current()
	s, d := c.Connect(ctx, client)
	quick := d.Quick && (d.Action == policy.Accept || d.Action == policy.Relay)
	return &checkerSession{c: c, s: s, quick: quick}, d
}

// checkerSession is one session's policy state.
type checkerSession struct {
	c     *policy.Checker
	s     *policy.Session
	quick bool
}

func (p *checkerSession) ClientName() string    { return p.s.ClientName() }
func (p *checkerSession) ClientResolve() string { return p.s.ClientResolve() }
func (p *checkerSession) Quick() bool           { return p.quick }

func (p *checkerSession) TLS(ctx context.Context, cert *policy.CertInfo) {
	if cert != nil {
		p.c.StartTLS(ctx, p.s, *cert)
	}
}

func (p *checkerSession) Authenticated(ctx context.Context, mechanism, user string) {
	p.c.Auth(p.s, mechanism)
}

func (p *checkerSession) Mail(ctx context.Context, sender string, args smtp.MailArgs) policy.Decision {
	d := p.c.Mail(ctx, p.s, sender)
	if d.Action != policy.Reject && p.s.TransactionDiscarded() {
		d.Action = policy.Discard
	}
	return d
}

func (p *checkerSession) Rcpt(ctx context.Context, rcpt string, args smtp.RcptArgs) policy.Decision {
	return p.c.Rcpt(ctx, p.s, rcpt)
}

// Reset does nothing: the checker starts a new transaction at each MAIL.
func (p *checkerSession) Reset() {}

// Verify implements Verifier with the checker's local recipient
// validation.
func (p *checkerSession) Verify(ctx context.Context, addr string) policy.Decision {
	return p.c.Verify(ctx, addr)
}
