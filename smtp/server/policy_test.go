package server

import (
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/smx-mta/smx/smtp/maps"
	"github.com/smx-mta/smx/smtp/policy"
	"github.com/smx-mta/smx/smtp/policy/greylist"
	"github.com/smx-mta/smx/smtp/resolver"
	"github.com/smx-mta/smx/smtp/resolver/dnsclient"
	"github.com/smx-mta/smx/smtp/resolver/dnsclient/dnstest"
)

// TestRealPolicy runs the server with SMAR's checker: relaying is denied
// except to local domains, for relay clients and after a trusted AUTH;
// unknown local users are refused.
func TestRealPolicy(t *testing.T) {
	checker := realChecker(t, nil)
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

// realChecker is SMAR's checker over a small mailertable, local users
// and access map: local.example is local (alice and postmaster exist),
// relay.example is not.
func realChecker(t *testing.T, mod func(*policy.Options)) *policy.Checker {
	t.Helper()
	res := resolver.New(resolver.Options{
		Mailertable: maps.NewStatic("mailertable", map[string]string{"local.example": "lmtp:", "relay.example": "esmtp:[127.0.0.1]", "bad.example": "esmtp:[127.0.0.1]"}),
		LocalUsers:  maps.NewStatic("users", map[string]string{"alice": "", "postmaster": ""}),
		Hostname:    "mx.test.example",
	})
	opts := policy.Options{
		Resolver: res,
		Access: maps.NewStatic("access", map[string]string{
			"from:spammer@bad.example": "error:550 5.7.1 no spam",
		}),
		DNS:               nilDNS{},
		TrustedMechanisms: []string{"PLAIN"},
	}
	if mod != nil {
		mod(&opts)
	}
	checker, err := policy.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return checker
}

// nilDNS answers every lookup with "no such name", for a checker whose
// tests need no DNS.
type nilDNS struct{}

func (nilDNS) LookupPTR(context.Context, netip.Addr) ([]string, error)  { return nil, errNoDNS }
func (nilDNS) LookupA(context.Context, string) ([]netip.Addr, error)    { return nil, errNoDNS }
func (nilDNS) LookupAAAA(context.Context, string) ([]netip.Addr, error) { return nil, errNoDNS }

var errNoDNS = errors.New("no DNS in this test")

// TestVRFY answers VRFY from the real checker's local recipient
// validation when VRFY is enabled, and 252 otherwise.
func TestVRFY(t *testing.T) {
	checker := realChecker(t, nil)
	ts := startServer(t, func(o *Options) { o.Policy = NewPolicy(checker); o.VRFY = true; o.SoftBounce = true })
	r := ts.hello()
	r.cmd("VRFY alice@local.example", "250 2.1.5 <alice@local.example>")
	r.cmd("VRFY <Postmaster@local.example>", "250 2.1.5 <Postmaster@local.example>")
	r.cmd("VRFY nobody@local.example", "450 4.1.1 User unknown") // soft_bounce
	r.cmd("VRFY x@relay.example", "252 2.5.2")                   // not local: cannot verify
	r.cmd("VRFY <>", "501 5.1.3")                                // syntax errors stay 5xx
	r.cmd("VRFY", "501 5.5.4")

	off := startServer(t, func(o *Options) { o.Policy = NewPolicy(checker) })
	r = off.hello()
	r.cmd("VRFY alice@local.example", "252 2.5.2")
	r.cmd("VRFY nobody@local.example", "252 2.5.2")
}

// TestRealGreylisting runs the real checker with the real greylisting
// database: the session ends with the 421 at RCPT (the seed), or at DATA
// with DelayGreylistingErrorUntilDATA; a retry after grey_wait passes.
func TestRealGreylisting(t *testing.T) {
	clk := &clock{t: time.Now()}
	g, err := greylist.Open(greylist.Options{Dir: t.TempDir(), Now: clk.now, GreyWait: 5 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	checker := realChecker(t, func(o *policy.Options) { o.Greylist = g })
	ts := startServer(t, func(o *Options) { o.Policy = NewPolicy(checker) })
	r := ts.hello()
	r.cmd("MAIL FROM:<s@relay.example>", "250")
	r.cmd("RCPT TO:<nobody@local.example>", "550 5.1.1") // not greylisted: invalid
	r.cmd("RCPT TO:<alice@local.example>", "421 4.7.0 Greylisted")
	r.closed()

	// Too early: still greylisted.
	clk.advance(time.Minute)
	r = ts.hello()
	r.cmd("MAIL FROM:<s@relay.example>", "250")
	r.cmd("RCPT TO:<alice@local.example>", "421 4.7.0")
	r.closed()

	// With the error delayed until DATA a sender callback (RCPT, then
	// QUIT) gets its 250, and DATA gets the 421.
	delayed := startServerOn(t, openStores(t, t.TempDir()), func(o *Options) {
		o.Policy = NewPolicy(checker)
		o.DelayGreylistingErrorUntilDATA = true
	})
	r = delayed.hello()
	r.cmd("MAIL FROM:<s@relay.example>", "250")
	r.cmd("RCPT TO:<alice@local.example>", "250 2.1.5")
	r.cmd("QUIT", "221")
	r = delayed.hello()
	r.cmd("MAIL FROM:<s@relay.example>", "250")
	r.cmd("RCPT TO:<alice@local.example>", "250 2.1.5")
	r.cmd("DATA", "421 4.7.0 Greylisted")
	r.closed()
	if n := len(delayed.st.received(t)); n != 0 {
		t.Errorf("%d greylisted messages stored", n)
	}

	// After grey_wait the client passes, and stays whitelisted.
	clk.advance(5 * time.Minute)
	r = ts.hello()
	for range 2 {
		r.cmd("MAIL FROM:<s@relay.example>", "250")
		r.cmd("RCPT TO:<alice@local.example>", "250")
		r.cmd("DATA", "354")
		r.cmd("Subject: g\r\n\r\nbody\r\n.", "250 2.0.0")
	}
	if n := len(ts.st.received(t)); n != 2 {
		t.Errorf("%d messages stored, want 2", n)
	}
	if !strings.Contains(ts.log.all(), "status=greylisted") {
		t.Error("greylisting not in the mail log")
	}
}

// TestWaitForSMAR holds the DNS answer a MAIL check waits for: the reply
// comes when WaitForSMAR runs out, a temporary failure, and the session
// goes on.
func TestWaitForSMAR(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t, "slow.example. 300 IN MX 10 mx.slow.example.", "mx.slow.example. 300 IN A 127.0.0.1")
	srv.Hold("slow.example")
	defer srv.Release("slow.example")
	dc, err := dnsclient.New(dnsclient.Options{Nameservers: []string{srv.Addr}, Timeout: time.Hour, Attempts: 1})
	if err != nil {
		t.Fatal(err)
	}
	checker, err := policy.New(policy.Options{Resolver: resolver.New(resolver.Options{DNS: dc})})
	if err != nil {
		t.Fatal(err)
	}
	ts := startServer(t, func(o *Options) { o.Policy = NewPolicy(checker); o.WaitForSMAR = 100 * time.Millisecond })
	r := ts.hello()
	r.cmd("MAIL FROM:<s@slow.example>", "451 4.1.8 Sender address does not resolve")
	r.cmd("NOOP", "250")
}
