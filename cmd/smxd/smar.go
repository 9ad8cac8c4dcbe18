package main

import (
	"context"
	"fmt"
	"time"

	"github.com/smx-mta/smx/cmd/smxd/conf"
	"github.com/smx-mta/smx/cmd/smxd/wire"
	"github.com/smx-mta/smx/smtp/policy"
	"github.com/smx-mta/smx/smtp/policy/greylist"
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

// buildSMAR builds a generation from c; gl is the greylisting database,
// which every generation shares (nil when no smtps section greylists).
func buildSMAR(c *conf.Config, gl *greylist.Greylister) (*smarState, error) {
	s, err := wire.OpenSMAR(c)
	if err != nil {
		return nil, err
	}
	st := &smarState{smar: s, checkers: map[string]*policy.Checker{}}
	for i := range c.SMTPS {
		ch, err := s.NewChecker(c, &c.SMTPS[i], gl)
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
	st, err := buildSMAR(d.config(), d.greylist)
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

// smtpsPolicy is the SMTP server's policy for one smtps section: the
// checker of the current SMAR generation, asked for at each connect, which
// the session keeps until it ends, so that a reload takes effect with the
// next session.
func (d *daemon) smtpsPolicy(name string) server.Policy {
	return server.NewPolicyFunc(func() *policy.Checker { return d.smar.Load().checkers[name] })
}
