package server

import (
	"context"
	"errors"
	"net/netip"
	"testing"

	"github.com/smx-mta/smx/smtp/maps"
	"github.com/smx-mta/smx/smtp/policy"
	"github.com/smx-mta/smx/smtp/resolver"
)

// TestRealPolicy runs the server with SMAR's checker: relaying is denied
// except to local domains, for relay clients and after a trusted AUTH;
// unknown local users are refused.
func TestRealPolicy(t *testing.T) {
	res := resolver.New(resolver.Options{
		Mailertable: maps.NewStatic("mailertable", map[string]string{"local.example": "lmtp:", "relay.example": "esmtp:[127.0.0.1]", "bad.example": "esmtp:[127.0.0.1]"}),
		LocalUsers:  maps.NewStatic("users", map[string]string{"alice": "", "postmaster": ""}),
		Hostname:    "mx.test.example",
	})
	checker, err := policy.New(policy.Options{
		Resolver: res,
		Access: maps.NewStatic("access", map[string]string{
			"from:spammer@bad.example": "error:550 5.7.1 no spam",
		}),
		DNS:               nilDNS{},
		TrustedMechanisms: []string{"PLAIN"},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(o *Options) {
		o.Policy = NewPolicy(checker)
		o.Auth = fixedCreds{"alice": "secret"}
		o.AllowPlaintextAuth = true
	})
	r := ts.hello()
	r.cmd("MAIL FROM:<spammer@bad.example>", "550 5.7.1 no spam")
	r.cmd("MAIL FROM:<s@relay.example>", "250")
	r.cmd("RCPT TO:<alice@local.example>", "250")
	r.cmd("RCPT TO:<nobody@local.example>", "550 5.1.1")
	r.cmd("RCPT TO:<x@relay.example>", "550 5.7.1")
	r.cmd("RSET", "250")
	r.cmd("AUTH PLAIN AGFsaWNlAHNlY3JldA==", "235")
	r.cmd("MAIL FROM:<alice@local.example>", "250")
	r.cmd("RCPT TO:<x@relay.example>", "250 2.1.5")
}

// nilDNS answers every lookup with "no such name", for a checker whose
// tests need no DNS.
type nilDNS struct{}

func (nilDNS) LookupPTR(context.Context, netip.Addr) ([]string, error)  { return nil, errNoDNS }
func (nilDNS) LookupA(context.Context, string) ([]netip.Addr, error)    { return nil, errNoDNS }
func (nilDNS) LookupAAAA(context.Context, string) ([]netip.Addr, error) { return nil, errNoDNS }

var errNoDNS = errors.New("no DNS in this test")
