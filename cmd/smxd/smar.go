package main

import (
	"context"
	"fmt"
	"time"

	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/cmd/smxd/wire"
	"github.com/smx-mta/smx/smtp"
	"github.com/smx-mta/smx/smtp/maps"
	"github.com/smx-mta/smx/smtp/policy"
	"github.com/smx-mta/smx/smtp/resolver"
	"github.com/smx-mta/smx/smtp/server"
)

// smarState is one generation of SMAR: the maps, the resolver and the
// policy checker of every smtps section, built from one configuration.
// A reload builds a new one and swaps it in; sessions and resolutions
// that started with the old one finish with it.
type smarState struct {
	smar     *wire.SMAR
	checkers map[string]*policy.Checker // by smtps section name
}

func buildSMAR(c *conf.Config) (*smarState, error) {
	s, err := wire.OpenSMAR(c)
	if err != nil {
		return nil, err
	}
	st := &smarState{smar: s, checkers: map[string]*policy.Checker{}}
	for i := range c.SMTPS {
		ch, err := s.NewChecker(c, &c.SMTPS[i])
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: %w", wire.Title(&c.SMTPS[i]), err)
		}
		st.checkers[c.SMTPS[i].Name] = ch
	}
	return st, nil
}

// smarService is the smar component: it publishes a SMAR generation and
// holds it until stopped.
type smarService struct {
	d    *daemon
	stop chan struct{}
}

func (d *daemon) startSMAR(ctx context.Context) (*smarService, error) {
	st, err := buildSMAR(d.config())
	if err != nil {
		return nil, err
	}
	for _, n := range st.smar.Notes {
		d.debug.Info("smar: " + n)
	}
	d.swapSMAR(st)
	return &smarService{d: d, stop: make(chan struct{})}, nil
}

// swapSMAR publishes st. The old generation's socket map connections are
// closed a while later, when the sessions that use it have moved on.
func (d *daemon) swapSMAR(st *smarState) {
	if old := d.smar.Swap(st); old != nil {
		time.AfterFunc(10*time.Minute, func() { old.smar.Close() })
	}
}

func (s *smarService) Run() error {
	<-s.stop
	return nil
}

func (s *smarService) Stop(ctx context.Context) error {
	close(s.stop)
	return nil
}

// smarResolver is the resolver the scheduler asks: always the current
// generation's.
type smarResolver struct{ d *daemon }

func (r smarResolver) Resolve(ctx context.Context, rcpt string) resolver.Result {
	return r.d.smar.Load().smar.Resolver.Resolve(ctx, rcpt)
}

// smtpsPolicy adapts the policy checker of one smtps section to the SMTP
// server's Policy. Each session keeps the checker it connected with.
type smtpsPolicy struct {
	d    *daemon
	name string
}

func (p smtpsPolicy) Connect(ctx context.Context, info policy.ClientInfo) (server.PolicySession, policy.Decision) {
	st := p.d.smar.Load()
	ch := st.checkers[p.name]
	s, d := ch.Connect(ctx, info)
	return &policySession{checker: ch, s: s, resolver: st.smar.Resolver}, d
}

type policySession struct {
	checker  *policy.Checker
	s        *policy.Session
	resolver *resolver.Resolver
}

func (p *policySession) ClientName() string    { return p.s.ClientName() }
func (p *policySession) ClientResolve() string { return p.s.ClientResolve() }
func (p *policySession) Quick() bool           { return p.s.Quick() }

func (p *policySession) TLS(ctx context.Context, cert *policy.CertInfo) {
	if cert == nil {
		return // no certificate: nothing for the checker to verify
	}
	p.checker.StartTLS(ctx, p.s, *cert)
}

func (p *policySession) Authenticated(ctx context.Context, mechanism, user string) {
	p.checker.Auth(p.s, mechanism)
}

func (p *policySession) Mail(ctx context.Context, sender string, args smtp.MailArgs) policy.Decision {
	return p.checker.Mail(ctx, p.s, sender)
}

func (p *policySession) Rcpt(ctx context.Context, rcpt string, args smtp.RcptArgs) policy.Decision {
	return p.checker.Rcpt(ctx, p.s, rcpt)
}

// Reset does nothing: Mail starts a new transaction in the checker.
func (p *policySession) Reset() {}

// Verify answers VRFY (when the smtps flag VRFY is on) from local
// recipient validation.
func (p *policySession) Verify(ctx context.Context, addr string) policy.Decision {
	a, err := maps.ParseAddress(addr)
	if err != nil {
		return policy.Decision{Action: policy.Reject, Code: 501, Enhanced: "5.1.3", Text: "Bad address syntax"}
	}
	ok, f := p.resolver.ValidLocal(ctx, a)
	switch {
	case f != nil && f.Temporary():
		return policy.Decision{Action: policy.Reject, Code: 451, Enhanced: "4.3.0", Text: f.Error()}
	case f != nil || !ok:
		return policy.Decision{Action: policy.Reject, Code: 550, Enhanced: "5.1.1", Text: "User unknown"}
	}
	return policy.Decision{Action: policy.Accept}
}
