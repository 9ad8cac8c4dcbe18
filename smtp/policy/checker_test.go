package policy

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/smx-mta/smx/smtp/maps"
	"github.com/smx-mta/smx/smtp/policy/greylist"
	"github.com/smx-mta/smx/smtp/resolver"
	"github.com/smx-mta/smx/smtp/resolver/dnsclient"
	"github.com/smx-mta/smx/smtp/resolver/dnsclient/dnstest"
	"github.com/stretchr/testify/require"
)

// The access map of the tests: the seed's examples on loopback addresses.
var testAccess = map[string]string{
	"cltresolve:tempptr":                              "error:451 4.7.1 reverse lookup failed",
	"mxbadip:127.0.0.66":                              "error:551 5.7.1 Bad IP address 127.0.0.66 in MX/A list",
	"from:@spammer.example":                           "error:551 5.7.1 No spammers",
	"from:@.spammer.example":                          "error:551 5.7.1 No spammers in subdomains either",
	"from:quick@spammer2.dom":                         "quick:error:551 5.7.1 Quick no",
	"from:ok@good.dom":                                "ok",
	"from:dropme@good.dom":                            "discard",
	"to:root":                                         "error:551 5.7.1 No mail to root",
	"to:abuse":                                        "quick:ok",
	"to:postmaster":                                   "ok",
	"cltaddr:127.0.10":                                "error:551 5.7.1 No direct mail from 127.0.10.x",
	"cltname:spammer.example.":                        "quick:error:551 5.7.1 No mail from spammers",
	"cltname:.bad.example.":                           "error:550 5.7.1 Bad neighbourhood",
	"to:@primary.example":                             "relay",
	"to:bad@primary.example":                          "reject",
	"to:temp@primary.example":                         "error:451 4.3.3 Try main MX server",
	"cltaddr:127.0.20":                                "relay",
	"cltaddr:127.0.0.1":                               "quick:relay",
	"cltaddr:127.0.30.1":                              "discard",
	"cltaddr:127.0.30.2":                              "quick:ok",
	"cltaddr:127.0.30.3":                              "ok",
	"to:dropme@my.dom":                                "discard",
	"to:dropall@my.dom":                               "quick:discard",
	"cltaddr:127.0.40":                                "cont",
	"cltaddr:127.0.10.9":                              "cont",
	"cltresolve:tempa":                                "error:451 4.7.1 forward lookup failed",
	"from:relayer@good.dom":                           "relay",
	"cltaddr:127.0.70.1":                              "bogus",
	"dnsbltest:127.0.0.2":                             "error:550 5.7.1 listed at dnsbl.test as spam source",
	"dnsbltest:temp":                                  "error:451 4.7.1 temporary lookup failure at dnsbl.test",
	"certissuer:/C=US/O=Example+20CA/CN=Relay+20CA":   "relay",
	"certissuer:/C=US/O=Example+20CA/CN=Partial+20CA": "cont",
	"certsubject:/CN=deathstar.example":               "relay",
	"protectedrcpt:list1@my.dom":                      "list:<list1@my.dom>",
	"protectedrcpt:list3":                             "from:<moderator3@my.dom> cltaddr:127.0.0.9 cltaddr:127.0.60",
}

var testAliases = map[string]string{
	"user":       "local:",
	"root":       "local:",
	"abuse":      "local:",
	"dropme":     "local:",
	"dropall":    "local:",
	"postmaster": "local:",
	"list1":      "<user1-1@l1-1.dom> <user2-1@l1-1.dom> <list2@my.dom>",
	"list2":      "<user1-2@l2-1.dom> <user2-2@l2-2.dom>",
	"list3":      "<user1-3@l3-1.dom> <user2-3@l3-2.dom>",
}

type fixture struct {
	srv      *dnstest.Server
	dns      *dnsclient.Client
	resolver *resolver.Resolver
}

func newFixture(t *testing.T) *fixture {
	srv := dnstest.Start(t)
	srv.Add(t,
		"example.com. 300 IN MX 10 mx.example.com.",
		"mx.example.com. 300 IN A 127.0.0.21",
		"spammer.example. 300 IN A 127.0.0.22",
		"a.spammer.example. 300 IN A 127.0.0.23",
		"nullmx.example. 300 IN MX 0 .",
		"ipmx.example. 300 IN MX 10 127.0.0.1.",
		"badmx.example. 300 IN MX 10 mx.badmx.example.",
		"mx.badmx.example. 300 IN A 127.0.0.66",
		"servfail.example. 300 IN A 127.0.0.1",
		// Client names: forward and reverse agree for .50.1 and .50.2.
		"1.50.0.127.in-addr.arpa. 300 IN PTR spammer.example.",
		"2.50.0.127.in-addr.arpa. 300 IN PTR host.bad.example.",
		"host.bad.example. 300 IN A 127.0.50.2",
		"3.50.0.127.in-addr.arpa. 300 IN PTR liar.example.",
		"liar.example. 300 IN A 127.0.0.99",
		"5.0.0.127.in-addr.arpa. 300 IN PTR client.example.",
		"client.example. 300 IN A 127.0.0.5",
		"6.50.0.127.in-addr.arpa. 300 IN PTR flaky.example.",
		// A blacklist.
		"2.80.0.127.dnsbl.test. 300 IN A 127.0.0.2",
		"4.80.0.127.dnsbl.test. 300 IN A 127.0.0.4",
	)
	srv.Add(t, "spammer.example. 300 IN A 127.0.50.1")
	srv.Rcode("servfail.example", dns.TypeMX, dns.RcodeServerFailure)
	srv.Rcode("4.50.0.127.in-addr.arpa", dns.TypePTR, dns.RcodeServerFailure)
	srv.Rcode("flaky.example", dns.TypeA, dns.RcodeServerFailure)
	srv.Rcode("3.80.0.127.dnsbl.test", dns.TypeA, dns.RcodeServerFailure)
	dc, err := dnsclient.New(dnsclient.Options{Nameservers: []string{srv.Addr}, Attempts: 1, Timeout: 2 * time.Second})
	require.NoError(t, err)
	r := resolver.New(resolver.Options{
		Mailertable: maps.NewStatic("mt", map[string]string{"my.dom": "lmtp:", ".dom": "esmtp:[127.0.0.1]",
			"primary.example": "esmtp:[127.0.0.1]"}),
		Aliases: maps.NewStatic("aliases", testAliases),
		DNS:     dc,
	})
	return &fixture{srv: srv, dns: dc, resolver: r}
}

func (f *fixture) checker(t *testing.T, mod func(*Options)) *Checker {
	opts := Options{Access: maps.NewStatic("access", testAccess), Resolver: f.resolver, DNS: f.dns}
	if mod != nil {
		mod(&opts)
	}
	c, err := New(opts)
	require.NoError(t, err)
	return c
}

// run plays a session script: each line is "connect IP", "mail ADDR",
// "rcpt ADDR", "vrfy ADDR", "tls ISSUER|SUBJECT", "auth MECH", followed by " => " and
// the expected decision (Decision.String()), or for tls and auth the
// expected RelayAllowed.
func run(t *testing.T, c *Checker, script string) *Session {
	t.Helper()
	ctx := context.Background()
	var s *Session
	for _, line := range strings.Split(strings.TrimSpace(script), "\n") {
		line = strings.TrimSpace(line)
		cmdArg, want, _ := strings.Cut(line, " => ")
		cmd, arg, _ := strings.Cut(cmdArg, " ")
		var got string
		switch cmd {
		case "connect":
			var d Decision
			s, d = c.Connect(ctx, ClientInfo{Addr: netip.MustParseAddr(arg)})
			got = d.String()
		case "mail":
			got = c.Mail(ctx, s, arg).String()
		case "rcpt":
			got = c.Rcpt(ctx, s, arg).String()
		case "vrfy":
			got = c.Verify(ctx, arg).String()
		case "tls":
			issuer, subject, _ := strings.Cut(arg, "|")
			c.StartTLS(ctx, s, CertInfo{Verified: !strings.HasPrefix(issuer, "!"), Issuer: strings.TrimPrefix(issuer, "!"), Subject: subject})
			got = fmt.Sprint(s.RelayAllowed())
		case "auth":
			c.Auth(s, arg)
			got = fmt.Sprint(s.RelayAllowed())
		default:
			t.Fatalf("bad script line %q", line)
		}
		require.Equal(t, want, got, line)
	}
	return s
}

func TestNoAccessMap(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t, func(o *Options) {
		o.Access = nil
		o.RelayClients = []netip.Prefix{netip.MustParsePrefix("127.0.99.0/24")}
	})
	s := run(t, c, `
		connect 127.0.0.5 => ok
		mail sender@example.com => ok
		mail <> => ok
		rcpt user@my.dom => ok
		rcpt user+x@my.dom => reject 550 5.1.1 User unknown
		rcpt nobody@my.dom => reject 550 5.1.1 User unknown
		rcpt someone@example.com => reject 550 5.7.1 Relaying denied
		rcpt root@my.dom => ok
		rcpt <> => reject 553 5.1.3 Bad address syntax: empty recipient
		mail x@spammer.example => ok
		mail unqualified => reject 553 5.1.7 Bad address syntax: sender address must be fully qualified`)
	require.Equal(t, "", s.ClientResolve(), "no name lookups without the access map")
	run(t, c, `
		connect 127.0.99.3 => ok
		rcpt someone@example.com => ok`)
}

func TestConnectChecks(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t, nil)
	run(t, c, `connect 127.0.10.5 => reject 551 5.7.1 No direct mail from 127.0.10.x`)
	s := run(t, c, `
		connect 127.0.0.1 => quick:relay
		mail x@spammer.example => ok
		rcpt someone@example.com => ok
		rcpt root@my.dom => ok`)
	require.True(t, s.RelayAllowed())
	run(t, c, `
		connect 127.0.20.7 => relay
		mail x@spammer.example => reject 551 5.7.1 No spammers
		rcpt someone@example.com => ok
		rcpt root@my.dom => reject 551 5.7.1 No mail to root`)
	s = run(t, c, `
		connect 127.0.50.1 => quick:reject 551 5.7.1 No mail from spammers`)
	require.Equal(t, "spammer.example", s.ClientName())
	require.Equal(t, ResolveOK, s.ClientResolve())
	run(t, c, `connect 127.0.50.2 => reject 550 5.7.1 Bad neighbourhood`)
	s = run(t, c, `connect 127.0.50.3 => ok`)
	require.Equal(t, ResolveNo, s.ClientResolve(), "PTR name whose A record is elsewhere")
	require.Equal(t, "", s.ClientName())
	run(t, c, `connect 127.0.50.4 => reject 451 4.7.1 reverse lookup failed`)
	s = run(t, c, `connect 127.0.50.6 => reject 451 4.7.1 forward lookup failed`)
	require.Equal(t, ResolveTempA, s.ClientResolve())
	// cont stops the cltaddr: lookup (the net 127.0.10 is not consulted)
	// and lets the other checks go on.
	run(t, c, `
		connect 127.0.10.9 => ok
		mail someone@example.com => ok`)
	run(t, c, `connect 127.0.40.1 => ok`)
	s = run(t, c, `
		connect 127.0.30.1 => discard
		mail a@example.com => discard
		rcpt user@my.dom => discard`)
	require.True(t, s.Discarded())
	require.True(t, s.TransactionDiscarded())
	// quick:ok skips the MAIL checks; relaying still needs authorization.
	run(t, c, `
		connect 127.0.30.2 => quick:ok
		mail x@spammer.example => ok
		rcpt root@my.dom => reject 551 5.7.1 No mail to root
		rcpt someone@example.com => reject 550 5.7.1 Relaying denied`)
	// A malformed entry is a temporary failure, never a bounce.
	run(t, c, `connect 127.0.70.1 => reject 451 4.3.5 Configuration error in access map entry cltaddr:127.0.70.1`)
}

func TestDNSBL(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t, func(o *Options) {
		o.DNSBL = []DNSBL{{Domain: "unused.test", Tag: "unused"}, {Domain: "dnsbl.test", Tag: "dnsbltest"}}
	})
	run(t, c, `connect 127.0.80.2 => reject 550 5.7.1 listed at dnsbl.test as spam source`)
	run(t, c, `connect 127.0.80.3 => reject 451 4.7.1 temporary lookup failure at dnsbl.test`)
	run(t, c, `connect 127.0.80.4 => ok`) // listed, but no access map entry for 127.0.0.4
	run(t, c, `connect 127.0.80.5 => ok`) // not listed
	// cltaddr: decides before the blacklists are looked at, and the
	// client they exempt is not even looked up in them.
	f.srv.Add(t, "6.80.0.127.dnsbl.test. 300 IN A 127.0.0.2")
	c.opts.Access = maps.NewStatic("access", map[string]string{"cltaddr:127.0.80.2": "ok", "cltaddr:127.0.80.6": "relay",
		"dnsbltest:127.0.0.2": "error:550 5.7.1 listed"})
	run(t, c, `connect 127.0.80.2 => ok`)
	s := run(t, c, `connect 127.0.80.6 => relay`)
	require.Zero(t, f.srv.Queries("6.80.0.127.dnsbl.test", dns.TypeA), "blacklist queried for a client cltaddr: decided")
	require.Equal(t, ResolveNo, s.ClientResolve(), "the client name is still looked up")
	require.Equal(t, "2.80.0.127", reverseName(netip.MustParseAddr("127.0.80.2")))
	require.Equal(t, "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2",
		reverseName(netip.MustParseAddr("2001:db8::1")))
}

func TestMailChecks(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t, nil)
	run(t, c, `
		connect 127.0.0.5 => ok
		mail x@spammer.example => reject 551 5.7.1 No spammers
		mail x@a.spammer.example => reject 551 5.7.1 No spammers in subdomains either
		mail ok@good.dom => ok
		mail relayer@good.dom => ok
		rcpt x@example.com => reject 550 5.7.1 Relaying denied
		mail someone@example.com => ok
		mail x@nx.example => reject 553 5.1.8 Sender address does not exist
		mail x@ipmx.example => reject 553 5.1.8 Sender address does not exist
		mail x@nullmx.example => reject 550 5.7.27 Sender address has null MX
		mail x@servfail.example => reject 451 4.1.8 Sender address does not resolve
		mail x@badmx.example => reject 551 5.7.1 Bad IP address 127.0.0.66 in MX/A list
		mail nobody@my.dom => reject 553 5.1.8 Sender address does not exist
		mail user+x@my.dom => reject 553 5.1.8 Sender address does not exist
		mail user@my.dom => ok
		mail dropme@good.dom => discard
		rcpt user@my.dom => discard
		mail user@my.dom => ok
		rcpt user@my.dom => ok`)
}

func TestRcptChecks(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t, nil)
	s := run(t, c, `
		connect 127.0.0.5 => ok
		mail someone@example.com => ok
		rcpt user@my.dom => ok
		rcpt root@my.dom => reject 551 5.7.1 No mail to root
		rcpt abuse@my.dom => quick:ok
		rcpt postmaster@my.dom => ok
		rcpt x@primary.example => ok
		rcpt bad@primary.example => reject 550 5.7.0 Rejected
		rcpt temp@primary.example => reject 451 4.3.3 Try main MX server
		rcpt x@example.com => reject 550 5.7.1 Relaying denied
		rcpt dropme@my.dom => discard
		rcpt user@my.dom => ok
		rcpt dropall@my.dom => quick:discard
		rcpt user@my.dom => discard`)
	require.True(t, s.TransactionDiscarded())
	require.Equal(t, "client.example", s.ClientName())
	run(t, c, `
		connect 127.0.0.5 => ok
		mail someone@example.com => ok
		rcpt user@my.dom => ok`)
}

func TestDelayChecks(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t, func(o *Options) { o.DelayChecks = true })
	run(t, c, `
		connect 127.0.10.5 => ok
		mail someone@example.com => ok
		rcpt user@my.dom => reject 551 5.7.1 No direct mail from 127.0.10.x
		rcpt abuse@my.dom => quick:ok
		rcpt x@example.com => reject 550 5.7.1 Relaying denied`)
	run(t, c, `
		connect 127.0.0.5 => ok
		mail x@spammer.example => ok
		rcpt user@my.dom => reject 551 5.7.1 No spammers
		rcpt abuse@my.dom => quick:ok
		mail someone@example.com => ok
		rcpt user@my.dom => ok
		mail quick@spammer2.dom => quick:reject 551 5.7.1 Quick no`)
	// quick:error is not delayed at connect either.
	run(t, c, `connect 127.0.50.1 => quick:reject 551 5.7.1 No mail from spammers`)
}

func TestRelayOptions(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t, func(o *Options) { o.SoftBounce = true })
	run(t, c, `
		connect 127.0.0.5 => ok
		mail someone@example.com => ok
		rcpt x@example.com => reject 450 4.7.1 Relaying denied
		rcpt nobody@my.dom => reject 450 4.1.1 User unknown
		rcpt temp@primary.example => reject 451 4.3.3 Try main MX server`)

	c = f.checker(t, func(o *Options) { o.LMTPDoesNotImplyRelaying = true })
	run(t, c, `
		connect 127.0.0.5 => ok
		mail someone@example.com => ok
		rcpt user@my.dom => reject 550 5.7.1 Relaying denied
		rcpt nobody@my.dom => reject 550 5.1.1 User unknown`)
	run(t, c, `
		connect 127.0.20.1 => relay
		mail someone@example.com => ok
		rcpt user@my.dom => ok`)

	c = f.checker(t, func(o *Options) { o.TrustedMechanisms = []string{"CRAM-MD5", "PLAIN"} })
	run(t, c, `
		connect 127.0.0.5 => ok
		auth LOGIN => false
		rcpt x@example.com => reject 550 5.7.1 Relaying denied
		auth plain => true
		mail someone@example.com => ok
		rcpt x@example.com => ok`)

	c = f.checker(t, func(o *Options) { o.CheckAccessMapForRelaying = true })
	run(t, c, `
		connect 127.0.0.5 => ok
		tls !/C=US/O=Example CA/CN=Relay CA|/CN=x => false
		tls /C=US/O=Example CA/CN=Other CA|/CN=x => false
		tls /C=US/O=Example CA/CN=Partial CA|/CN=x => false
		tls /C=US/O=Example CA/CN=Partial CA|/CN=deathstar.example => true`)
	run(t, c, `
		connect 127.0.0.5 => ok
		tls /C=US/O=Example CA/CN=Relay CA|/CN=x => true
		mail someone@example.com => ok
		rcpt x@example.com => ok`)
	c = f.checker(t, func(o *Options) { o.AllowRelayingIfVerified = true })
	run(t, c, `
		connect 127.0.0.5 => ok
		tls !/CN=unverified|/CN=x => false
		tls /CN=any|/CN=x => true`)
}

func TestProtectedRecipients(t *testing.T) {
	f := newFixture(t)
	exact := f.checker(t, func(o *Options) {
		o.Protected = ProtectedRecipients{AllowBySender: true, AllowByClientIP: true}
	})
	run(t, exact, `
		connect 127.0.0.5 => ok
		mail user1-1@l1-1.dom => ok
		rcpt list1@my.dom => ok
		rcpt list3@my.dom => reject 550 5.7.1 Protected recipient
		rcpt user@my.dom => ok
		mail user2-1@l1-1.dom => ok
		rcpt list1@my.dom => ok
		mail user1-2@l2-1.dom => ok
		rcpt list1@my.dom => reject 550 5.7.1 Protected recipient
		mail moderator3@my.dom => reject 553 5.1.8 Sender address does not exist`)
	run(t, exact, `
		connect 127.0.0.9 => ok
		mail someone@example.com => ok
		rcpt list3@my.dom => ok
		rcpt list1@my.dom => reject 550 5.7.1 Protected recipient`)
	// cltaddr:127.0.60 is a net: it needs generic_lookup.
	run(t, exact, `
		connect 127.0.60.5 => ok
		mail someone@example.com => ok
		rcpt list3@my.dom => reject 550 5.7.1 Protected recipient`)
	generic := f.checker(t, func(o *Options) {
		o.Protected = ProtectedRecipients{AllowBySender: true, AllowByClientIP: true, MatchType: MatchGeneric}
	})
	run(t, generic, `
		connect 127.0.60.5 => ok
		mail someone@example.com => ok
		rcpt list3@my.dom => ok
		mail user1-1+x@l1-1.dom => ok
		rcpt list1@my.dom => reject 550 5.7.1 Protected recipient`)
	implicit := f.checker(t, func(o *Options) {
		o.Protected = ProtectedRecipients{AllowBySender: true, MatchType: MatchImplicitDetail}
	})
	run(t, implicit, `
		connect 127.0.0.9 => ok
		mail user1-1+x@l1-1.dom => ok
		rcpt list1@my.dom => ok
		rcpt list3@my.dom => reject 550 5.7.1 Protected recipient`)
}

// TestVerify checks VRFY's answers: local addresses by local recipient
// validation, anything else cannot be verified.
func TestVerify(t *testing.T) {
	f := newFixture(t)
	c := f.checker(t, nil)
	run(t, c, `
		vrfy user@my.dom => ok
		vrfy <Root@My.Dom> => ok
		vrfy list1@my.dom => ok
		vrfy nobody@my.dom => reject 550 5.1.1 User unknown
		vrfy user+x@my.dom => reject 550 5.1.1 User unknown
		vrfy someone@example.com => cont
		vrfy user => cont
		vrfy <> => reject 501 5.1.3 Bad address syntax: empty address
		vrfy a b@my.dom => reject 501 5.1.3 Bad address syntax: bad local part "a b"`)
	soft := f.checker(t, func(o *Options) { o.SoftBounce = true })
	run(t, soft, `
		vrfy nobody@my.dom => reject 450 4.1.1 User unknown
		vrfy <> => reject 501 5.1.3 Bad address syntax: empty address`)
	r := resolver.New(resolver.Options{Mailertable: maps.NewStatic("mt", map[string]string{"my.dom": "lmtp:"}),
		Aliases: failingMap{}})
	broken, err := New(Options{Resolver: r})
	require.NoError(t, err)
	run(t, broken, `vrfy user@my.dom => reject 451 4.3.0 Temporary aliases lookup failure`)
}

type failingMap struct{}

func (failingMap) Lookup(context.Context, string) (string, bool, error) {
	return "", false, &maps.LookupError{Map: "aliases", Temporary: true, Err: fmt.Errorf("down")}
}

func TestNewValidates(t *testing.T) {
	f := newFixture(t)
	_, err := New(Options{})
	require.Error(t, err)
	_, err = New(Options{Resolver: f.resolver, Access: maps.NewStatic("a", nil)})
	require.ErrorContains(t, err, "needs DNS")
	_, err = New(Options{Resolver: f.resolver, DNS: f.dns, Access: maps.NewStatic("a", nil), DNSBL: []DNSBL{{Domain: "x"}}})
	require.ErrorContains(t, err, "domain and tag")
}

func TestIPv6Client(t *testing.T) {
	f := newFixture(t)
	f.srv.Add(t,
		"5.0.0.0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa. 300 IN PTR v6host.example.",
		"v6host.example. 300 IN AAAA 2001:db8::1:5",
	)
	access := map[string]string{
		"cltaddr:2001:db8:0:0:0:0:0": "error:550 5.7.1 No mail from this /112",
		"cltaddr:2001:db8::7":        "quick:relay",
		"cltname:v6host.example.":    "relay",
	}
	c := f.checker(t, func(o *Options) { o.Access = maps.NewStatic("access", access) })
	s := run(t, c, `connect 2001:db8::1:5 => relay`)
	require.Equal(t, "v6host.example", s.ClientName())
	require.Equal(t, ResolveOK, s.ClientResolve())
	run(t, c, `connect 2001:db8::6 => reject 550 5.7.1 No mail from this /112`)
	run(t, c, `
		connect 2001:db8::7 => quick:relay
		mail someone@example.com => ok
		rcpt x@example.com => ok`)
}

type testClock struct{ now time.Time }

func (c *testClock) Now() time.Time { return c.now }

func TestGreylisting(t *testing.T) {
	f := newFixture(t)
	clock := &testClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g, err := greylist.Open(greylist.Options{Dir: t.TempDir(), Now: clock.Now})
	require.NoError(t, err)
	defer g.Close()
	c := f.checker(t, func(o *Options) { o.Greylist = g; o.TrustedMechanisms = []string{"PLAIN"} })
	run(t, c, `
		connect 127.0.0.5 => ok
		mail someone@example.com => ok
		rcpt nobody@my.dom => reject 550 5.1.1 User unknown
		rcpt x@example.com => reject 550 5.7.1 Relaying denied
		rcpt user@my.dom => reject 421 4.7.0 Greylisted, try again later`)
	d := func() Decision {
		s, _ := c.Connect(context.Background(), ClientInfo{Addr: netip.MustParseAddr("127.0.0.5")})
		c.Mail(context.Background(), s, "someone@example.com")
		return c.Rcpt(context.Background(), s, "user@my.dom")
	}()
	require.True(t, d.Greylisted)
	clock.now = clock.now.Add(time.Minute)
	run(t, c, `
		connect 127.0.0.5 => ok
		mail someone@example.com => ok
		rcpt user@my.dom => reject 421 4.7.0 Greylisted, try again later`)
	clock.now = clock.now.Add(5 * time.Minute)
	run(t, c, `
		connect 127.0.0.5 => ok
		mail someone@example.com => ok
		rcpt user@my.dom => ok
		rcpt root@my.dom => reject 551 5.7.1 No mail to root`)
	// Sessions marked ok or relay are not greylisted.
	run(t, c, `
		connect 127.0.20.1 => relay
		mail someone@example.com => ok
		rcpt user@my.dom => ok`)
	run(t, c, `
		connect 127.0.30.3 => ok
		mail someone@example.com => ok
		rcpt user@my.dom => ok`)
	run(t, c, `
		connect 127.0.0.6 => ok
		auth PLAIN => true
		mail someone@example.com => ok
		rcpt user@my.dom => ok`)
	require.Equal(t, 1, g.Len())

	// Full greylisting: each client, sender and recipient tuple waits.
	full := f.checker(t, func(o *Options) { o.Greylist = g; o.FullGreylisting = true })
	run(t, full, `
		connect 127.0.0.5 => ok
		mail someone@example.com => ok
		rcpt user@my.dom => reject 421 4.7.0 Greylisted, try again later
		rcpt root@my.dom => reject 551 5.7.1 No mail to root`)
	clock.now = clock.now.Add(6 * time.Minute)
	run(t, full, `
		connect 127.0.0.5 => ok
		mail someone@example.com => ok
		rcpt user@my.dom => ok
		rcpt postmaster@my.dom => reject 421 4.7.0 Greylisted, try again later`)
}
