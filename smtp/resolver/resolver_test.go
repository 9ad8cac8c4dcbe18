package resolver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/smx-mta/smx/log"
	"github.com/smx-mta/smx/smtp/maps"
	"github.com/smx-mta/smx/smtp/resolver/dnsclient"
	"github.com/smx-mta/smx/smtp/resolver/dnsclient/dnstest"
	"github.com/stretchr/testify/require"
)

var testMailertable = map[string]string{
	"localhost":          "lmtp:",
	"my.dom":             "lmtp:",
	"first.dom":          "lmtp:",
	"second.dom":         "lmtp:",
	"spam.filter.domain": "2525^esmtp:[127.0.0.1]",
	"lmtphost.my.domain": "{ protocol=lmtp; port = 525; ipv4= { 127.0.0.13 } }",
	"relay.example":      "esmtp:gw.example",
	"multi.example":      "esmtp:[127.0.0.31] gw.example nx.example",
	".sub.example":       "esmtp:[127.0.0.99]",
	"bad.example":        "esmtp:[1.2.3]",
}

func startDNS(t *testing.T) *dnstest.Server {
	srv := dnstest.Start(t)
	srv.Add(t,
		"example.com. 300 IN MX 10 mx1.example.com.",
		"example.com. 300 IN MX 20 mx2.example.com.",
		"mx1.example.com. 300 IN A 127.0.0.21",
		"mx2.example.com. 300 IN A 127.0.0.22",
		"gw.example. 300 IN A 127.0.0.50",
		"nullmx.example. 300 IN MX 0 .",
		"ipmx.example. 300 IN MX 10 127.0.0.1.",
		"servfail.example. 300 IN A 127.0.0.1",
	)
	srv.Rcode("servfail.example", dns.TypeMX, dns.RcodeServerFailure)
	return srv
}

func newResolver(t *testing.T, srv *dnstest.Server, aliases map[string]string, mod func(*Options)) *Resolver {
	t.Helper()
	dc, err := dnsclient.New(dnsclient.Options{
		Nameservers: []string{srv.Addr}, Attempts: 1, Timeout: 2 * time.Second,
		Rand: rand.New(rand.NewPCG(1, 1)),
	})
	require.NoError(t, err)
	opts := Options{
		Mailertable: maps.NewStatic("mailertable", testMailertable),
		DNS:         dc,
		Hostname:    "localhost",
		LMTPSocket:  "/var/spool/smx/lmtpsock",
	}
	if aliases != nil {
		opts.Aliases = maps.NewStatic("aliases", aliases)
	}
	if mod != nil {
		mod(&opts)
	}
	return New(opts)
}

// summary renders a Result in one line for table tests.
func summary(r Result) string {
	switch {
	case r.Failure != nil:
		return "fail " + r.Failure.Error()
	case r.Expansion != nil:
		s := "expand " + strings.Join(r.Expansion, " ")
		if r.Owner != "" {
			s += " owner=" + r.Owner
		}
		return s
	}
	s := "deliver " + r.Mailer
	if r.Port != 0 {
		s += fmt.Sprintf(" port=%d", r.Port)
	}
	if r.Socket != "" {
		s += " socket=" + r.Socket
	}
	for _, h := range r.Hops {
		s += fmt.Sprintf(" %s/%d%v", h.Host, h.Preference, h.Addrs)
	}
	if r.Local {
		s += " local"
	}
	return s + " dest=" + r.Destination
}

func runCases(t *testing.T, r *Resolver, cases [][2]string) {
	t.Helper()
	for _, tc := range cases {
		var trace []string
		got := summary(r.ResolveTrace(context.Background(), tc[0], func(s string) { trace = append(trace, s) }))
		require.Equal(t, tc[1], got, "%s\ntrace:\n%s", tc[0], strings.Join(trace, "\n"))
	}
}

func TestResolveRouting(t *testing.T) {
	srv := startDNS(t)
	r := newResolver(t, srv, nil, nil)
	runCases(t, r, [][2]string{
		{"<user@my.dom>", "deliver lmtp socket=/var/spool/smx/lmtpsock local dest=lmtp:/var/spool/smx/lmtpsock"},
		{"user", "deliver lmtp socket=/var/spool/smx/lmtpsock local dest=lmtp:/var/spool/smx/lmtpsock"},
		{"u@spam.filter.domain", "deliver esmtp port=2525 127.0.0.1/0[127.0.0.1] dest=esmtp:[127.0.0.1]:2525"},
		{"u@lmtphost.my.domain", "deliver lmtp port=525 127.0.0.13/0[127.0.0.13] local dest=lmtp:[127.0.0.13]:525"},
		{"u@relay.example", "deliver esmtp gw.example/0[127.0.0.50] dest=esmtp:gw.example:25"},
		{"u@multi.example", "deliver esmtp 127.0.0.31/0[127.0.0.31] gw.example/0[127.0.0.50] dest=esmtp:[127.0.0.31],gw.example,nx.example:25"},
		{"u@a.b.sub.example", "deliver esmtp 127.0.0.99/0[127.0.0.99] dest=esmtp:[127.0.0.99]:25"},
		{"u@sub.example", "fail 550 5.1.2 Host unknown: sub.example"}, // ".sub.example" matches subdomains only
		{"u@Example.COM", "deliver esmtp mx1.example.com/10[127.0.0.21] mx2.example.com/20[127.0.0.22] dest=esmtp:example.com:25"},
		{"u@[127.0.0.7]", "deliver esmtp 127.0.0.7/0[127.0.0.7] dest=esmtp:[127.0.0.7]:25"},
		{"u@nx.example", "fail 550 5.1.2 Host unknown: nx.example"},
		{"u@nullmx.example", "fail 556 5.1.10 Recipient address has null MX"},
		{"u@ipmx.example", "fail 550 5.1.2 MX record for ipmx.example names an IP address"},
		{"u@servfail.example", "fail 451 4.4.3 Host name lookup failure for servfail.example"},
		{"u@bad.example", `fail 451 4.3.5 Configuration error in mailertable entry bad.example: mailertable: bad IPv4 literal "[1.2.3]"`},
		{"<>", "fail 553 5.1.3 Bad recipient address syntax: null address"},
		{"a b@x", "fail 553 5.1.3 Bad recipient address syntax: bad local part \"a b\""},
	})

	// The default entry "." catches everything the mailertable does not
	// name.
	withDefault := map[string]string{".": "esmtp:gw.example", "my.dom": "lmtp:"}
	r = newResolver(t, srv, nil, func(o *Options) { o.Mailertable = maps.NewStatic("mt", withDefault) })
	runCases(t, r, [][2]string{
		{"u@example.com", "deliver esmtp gw.example/0[127.0.0.50] dest=esmtp:gw.example:25"},
		{"u@my.dom", "deliver lmtp socket=/var/spool/smx/lmtpsock local dest=lmtp:/var/spool/smx/lmtpsock"},
	})

	// Without the dot flag the default entry is not used.
	r = newResolver(t, srv, nil, func(o *Options) {
		o.Mailertable = maps.NewStatic("mt", withDefault)
		o.MailertableFlags = maps.DomainPart | maps.DotSubdomain
	})
	runCases(t, r, [][2]string{
		{"u@example.com", "deliver esmtp mx1.example.com/10[127.0.0.21] mx2.example.com/20[127.0.0.22] dest=esmtp:example.com:25"},
	})

	// Address entries in the mailertable with the full_address flag.
	r = newResolver(t, srv, nil, func(o *Options) {
		o.Mailertable = maps.NewStatic("mt", map[string]string{"special@example.com": "esmtp:[127.0.0.77]"})
		o.MailertableFlags = maps.MailertableDefault | maps.FullAddress
	})
	runCases(t, r, [][2]string{
		{"special@example.com", "deliver esmtp 127.0.0.77/0[127.0.0.77] dest=esmtp:[127.0.0.77]:25"},
		{"other@example.com", "deliver esmtp mx1.example.com/10[127.0.0.21] mx2.example.com/20[127.0.0.22] dest=esmtp:example.com:25"},
	})
}

func TestAliasesLocalPart(t *testing.T) {
	srv := startDNS(t)
	aliases := map[string]string{
		"myalias":      "localuser",
		"mylist":       "<user1@my.dom> <user2@my.dom> <localuser@localhost>",
		"owner-mylist": "someuser",
		"postmaster":   "<root@my.dom>",
		"abuse":        "user+abuse",
		"user++":       "local:",
		"user":         "local:",
		"localuser":    "local:",
		"root":         "local:",
		"nest1":        "nest2",
		"nest2":        "<nest3@my.dom> <root@my.dom>",
		"nest3":        "<x@example.com>",
		"loop1":        "loop2",
		"loop2":        "<a@example.com> loop1@localhost",
		"self":         "self",
		"dup":          "<x@example.com> <X@Example.com> dupsub",
		"dupsub":       "<x@example.com> <y@example.com>",
		"broken":       "<unterminated@my.dom",
		"d1":           "d2",
		"d2":           "d3",
		"d3":           "d4",
		"d4":           "d5",
		"d5":           "d6",
		"d6":           "<end@example.com>",
	}
	r := newResolver(t, srv, aliases, nil)
	runCases(t, r, [][2]string{
		{"myalias@my.dom", "expand localuser@localhost"},
		{"MyAlias@localhost", "expand localuser@localhost"},
		{"myalias@example.com", "deliver esmtp mx1.example.com/10[127.0.0.21] mx2.example.com/20[127.0.0.22] dest=esmtp:example.com:25"},
		{"mylist@my.dom", "expand user1@my.dom user2@my.dom localuser@localhost owner=owner-mylist@my.dom"},
		{"postmaster@my.dom", "expand root@my.dom"},
		{"abuse@my.dom", "expand user+abuse@localhost"},
		{"user@my.dom", "deliver lmtp socket=/var/spool/smx/lmtpsock local dest=lmtp:/var/spool/smx/lmtpsock"},
		{"user+x@my.dom", "deliver lmtp socket=/var/spool/smx/lmtpsock local dest=lmtp:/var/spool/smx/lmtpsock"},
		{"user+@my.dom", "fail 550 5.1.1 User unknown"},
		{"nobody@my.dom", "fail 550 5.1.1 User unknown"},
		{"nest1@my.dom", "expand x@example.com root@my.dom"},
		{"loop1@my.dom", "fail 554 5.4.6 Alias loop"},
		{"self@localhost", "fail 554 5.4.6 Alias loop"},
		{"dup@my.dom", "expand x@example.com y@example.com"},
		{"broken@my.dom", `fail 451 4.3.5 Configuration error in aliases entry broken: unbalanced quotes or brackets in "<unterminated@my.dom"`},
		{"d1@my.dom", "fail 554 5.4.6 Alias nesting too deep"},
		{"d2@my.dom", "expand end@example.com"},
	})
	r = newResolver(t, srv, aliases, func(o *Options) { o.MaxAliasDepth = 6 })
	runCases(t, r, [][2]string{{"d1@my.dom", "expand end@example.com"}})
	r = newResolver(t, srv, aliases, func(o *Options) { o.MaxExpansion = 1 })
	runCases(t, r, [][2]string{{"dup@my.dom", "fail 554 5.5.3 Alias expands to too many recipients"}})
}

func TestAliasesLocalDomains(t *testing.T) {
	srv := startDNS(t)
	// The seed's example: two local domains, an alias in each.
	aliases := map[string]string{
		"myalias@first.dom":  "user1",
		"another@second.dom": "user2",
		"catch@.dom":         "<sub-catch@example.com>",
	}
	r := newResolver(t, srv, aliases, func(o *Options) { o.AliasFlags = AliasLocalDomains })
	runCases(t, r, [][2]string{
		{"myalias@first.dom", "expand user1@localhost"},
		{"another@second.dom", "expand user2@localhost"},
		{"myalias@second.dom", "fail 550 5.1.1 User unknown"},
		{"another@first.dom", "fail 550 5.1.1 User unknown"},
		{"catch@my.dom", "expand sub-catch@example.com"},
	})
	r = newResolver(t, srv, aliases, func(o *Options) { o.AliasFlags = AliasLocalDomains | AliasPreserveDomain })
	runCases(t, r, [][2]string{
		{"myalias@first.dom", "expand user1@first.dom"},
	})
}

func TestAliasesAllDomainsAndMacros(t *testing.T) {
	srv := startDNS(t)
	aliases := map[string]string{
		// The seed's macro example.
		"alias*@.domain":      "user${extension}@${subdomain}.domain",
		"remote@example.com":  "<x@relay.example>",
		"m*@my.dom":           "<${user}.${detail}.x${tag}@${domain}>",
		"a*@my.dom":           "<b${delimiter}c@my.dom>",
		"typo@my.dom":         "<${usr}@my.dom>",
		"user@example.com":    "<plain@relay.example>",
		"owner-list@.example": "nobody",
	}
	r := newResolver(t, srv, aliases, func(o *Options) {
		o.AliasFlags = AliasAllDomains | AliasReplaceMacros
		o.Mailertable = maps.NewStatic("mt", map[string]string{
			".domain": "esmtp:[127.0.0.1]", "my.dom": "lmtp:", "relay.example": "esmtp:gw.example"})
	})
	runCases(t, r, [][2]string{
		{"alias@host.domain", "expand user@host.domain"},
		{"alias+detail@host2.domain", "expand user+detail@host2.domain"},
		{"remote@example.com", "expand x@relay.example"},
		{"m+d@my.dom", "expand m.d.x@my.dom"},
		{"typo@my.dom", "fail 451 4.3.5 Configuration error in aliases entry typo@my.dom: unknown macro ${usr}"},
		{"user+x@example.com", "deliver esmtp mx1.example.com/10[127.0.0.21] mx2.example.com/20[127.0.0.22] dest=esmtp:example.com:25"},
	})
	r = newResolver(t, srv, aliases, func(o *Options) {
		o.AliasFlags = AliasAllDomains | AliasReplaceMacros | AliasImplicitDetail
		o.AddressDelimiters = "-+"
		o.Mailertable = maps.NewStatic("mt", map[string]string{"my.dom": "lmtp:", "relay.example": "esmtp:gw.example"})
	})
	runCases(t, r, [][2]string{
		{"user+x@example.com", "expand plain@relay.example"},
		{"a-x@my.dom", "expand b-c@my.dom"},
	})
}

func TestLocalUserMap(t *testing.T) {
	srv := startDNS(t)
	users := maps.NewStatic("password", map[string]string{"carol": "carol:1000:1000::/home/carol:/bin/sh"})
	r := newResolver(t, srv, nil, func(o *Options) { o.LocalUsers = users })
	runCases(t, r, [][2]string{
		{"carol@my.dom", "deliver lmtp socket=/var/spool/smx/lmtpsock local dest=lmtp:/var/spool/smx/lmtpsock"},
		{"carol+x@my.dom", "fail 550 5.1.1 User unknown"},
		{"dave@my.dom", "fail 550 5.1.1 User unknown"},
		{"dave@example.com", "deliver esmtp mx1.example.com/10[127.0.0.21] mx2.example.com/20[127.0.0.22] dest=esmtp:example.com:25"},
	})
	r = newResolver(t, srv, map[string]string{"alias": "carol"}, func(o *Options) { o.LocalUsers = users; o.LocalUserImplicitDetail = true })
	runCases(t, r, [][2]string{
		{"carol+x@my.dom", "deliver lmtp socket=/var/spool/smx/lmtpsock local dest=lmtp:/var/spool/smx/lmtpsock"},
		{"alias@my.dom", "expand carol@localhost"},
	})
}

type failingMap struct{}

func (failingMap) Lookup(context.Context, string) (string, bool, error) {
	return "", false, &maps.LookupError{Map: "sock", Temporary: true, Err: fmt.Errorf("down")}
}

func TestMapFailureIsTemporary(t *testing.T) {
	srv := startDNS(t)
	r := newResolver(t, srv, nil, func(o *Options) { o.Aliases = failingMap{} })
	runCases(t, r, [][2]string{{"x@my.dom", "fail 451 4.3.0 Temporary aliases lookup failure"}})
	r = newResolver(t, srv, nil, func(o *Options) { o.Mailertable = failingMap{} })
	runCases(t, r, [][2]string{{"x@my.dom", "fail 451 4.3.0 Temporary mailertable lookup failure"}})
}

func TestEvent(t *testing.T) {
	srv := startDNS(t)
	r := newResolver(t, srv, map[string]string{"list": "<a@example.com> <b@example.com>", "owner-list": "admin"}, nil)
	ctx := context.Background()
	orig := log.Recipient{Addr: "list@my.dom", Notify: log.NotifyFailure}
	ev := r.Resolve(ctx, "list@my.dom").Event(3, orig)
	require.Equal(t, &log.RcptResolved{
		Expansion: []log.ExpandedRcpt{
			{Rcpt: 3, Addr: "a@example.com", ORCPT: "rfc822;list@my.dom", Notify: log.NotifyFailure},
			{Rcpt: 4, Addr: "b@example.com", ORCPT: "rfc822;list@my.dom", Notify: log.NotifyFailure},
		},
		Owner: "owner-list@my.dom",
	}, ev)

	ev = r.Resolve(ctx, "u@example.com").Event(0, log.Recipient{Addr: "u@example.com"})
	require.Equal(t, &log.RcptResolved{
		Mailer: log.MailerESMTP,
		Hops: []log.NextHop{
			{Host: "mx1.example.com", Preference: 10, Addrs: []string{"127.0.0.21"}},
			{Host: "mx2.example.com", Preference: 20, Addrs: []string{"127.0.0.22"}},
		},
		Destination: "esmtp:example.com:25",
	}, ev)

	ev = r.Resolve(ctx, "list@my.dom").Event(0, log.Recipient{})
	require.NotNil(t, ev)
	res := r.Resolve(ctx, "nobody@my.dom")
	require.Nil(t, res.Event(0, log.Recipient{}))
	require.Equal(t, &log.RcptFailed{Stage: "resolve", Code: 550, Enhanced: "5.1.1", Reason: "User unknown"}, res.Failure.RcptFailed())
}

func BenchmarkResolveWarmCache(b *testing.B) {
	srv := dnstest.Start(b)
	srv.Add(b,
		"example.com. 3600 IN MX 10 mx1.example.com.",
		"example.com. 3600 IN MX 10 mx2.example.com.",
		"mx1.example.com. 3600 IN A 127.0.0.21",
		"mx2.example.com. 3600 IN A 127.0.0.22",
		"mx1.example.com. 3600 IN AAAA ::1",
	)
	dc, err := dnsclient.New(dnsclient.Options{Nameservers: []string{srv.Addr}})
	require.NoError(b, err)
	mt := map[string]string{"my.dom": "lmtp:"}
	r := New(Options{Mailertable: maps.NewStatic("mt", mt), DNS: dc,
		Aliases: maps.NewStatic("aliases", map[string]string{"postmaster": "local:"})})
	ctx := context.Background()
	if res := r.Resolve(ctx, "user+tag@example.com"); res.Failure != nil || len(res.Hops) != 2 {
		b.Fatalf("warm-up: %+v", res)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := r.Resolve(ctx, "user+tag@example.com"); res.Failure != nil {
				b.Fatal(res.Failure)
			}
		}
	})
	if q := srv.Queries("example.com", dns.TypeMX); q != 1 {
		b.Fatalf("%d MX queries: the cache was not warm", q)
	}
}
