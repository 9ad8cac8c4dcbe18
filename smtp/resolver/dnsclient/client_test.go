package dnsclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/smx-mta/smx/smtp/resolver/dnsclient/dnstest"
	"github.com/stretchr/testify/require"
)

// fakeClock is a clock the tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newClient(t *testing.T, srv *dnstest.Server, mod func(*Options)) (*Client, *fakeClock) {
	t.Helper()
	clock := &fakeClock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	opts := Options{
		Nameservers: []string{srv.Addr},
		Timeout:     2 * time.Second,
		Now:         clock.Now,
		Rand:        rand.New(rand.NewPCG(1, 2)),
	}
	if mod != nil {
		mod(&opts)
	}
	c, err := New(opts)
	require.NoError(t, err)
	return c, clock
}

func hostNames(hosts []Host) []string {
	var out []string
	for _, h := range hosts {
		s := fmt.Sprintf("%s/%d", h.Name, h.Preference)
		for _, a := range h.Addrs {
			s += " " + a.String()
		}
		out = append(out, s)
	}
	return out
}

func kindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return 0
}

func TestRouteMX(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t,
		"example.com. 300 IN MX 20 mx2.example.com.",
		"example.com. 300 IN MX 10 mx1.example.com.",
		"mx1.example.com. 300 IN A 127.0.0.11",
		"mx1.example.com. 300 IN AAAA ::1",
		"mx2.example.com. 300 IN A 127.0.0.12",
		"mx2.example.com. 300 IN A 127.0.0.13",
	)
	c, _ := newClient(t, srv, nil)
	hosts, err := c.Route(context.Background(), "Example.COM")
	require.NoError(t, err)
	require.Equal(t, []string{"mx1.example.com/10 127.0.0.11 ::1", "mx2.example.com/20 127.0.0.12 127.0.0.13"}, hostNames(hosts))

	c6, _ := newClient(t, srv, func(o *Options) { o.NoIPv6 = true })
	hosts, err = c6.Route(context.Background(), "example.com")
	require.NoError(t, err)
	require.Equal(t, "mx1.example.com/10 127.0.0.11", hostNames(hosts)[0])
}

func TestRouteEqualPreferenceShuffled(t *testing.T) {
	srv := dnstest.Start(t)
	for i := 1; i <= 4; i++ {
		srv.Add(t, fmt.Sprintf("eq.example. 300 IN MX 10 mx%d.eq.example.", i),
			fmt.Sprintf("mx%d.eq.example. 300 IN A 127.0.1.%d", i, i))
	}
	srv.Add(t, "eq.example. 300 IN MX 5 first.eq.example.", "first.eq.example. 300 IN A 127.0.1.100")
	c, _ := newClient(t, srv, nil)
	orders := map[string]bool{}
	for range 40 {
		hosts, err := c.Route(context.Background(), "eq.example")
		require.NoError(t, err)
		require.Len(t, hosts, 5)
		require.Equal(t, "first.eq.example", hosts[0].Name, "lower preference always first")
		orders[fmt.Sprint(hostNames(hosts[1:]))] = true
	}
	require.Greater(t, len(orders), 1, "equal preferences come in varying order")

	// The same seed gives the same order: the source is what decides.
	a, _ := newClient(t, srv, nil)
	b, _ := newClient(t, srv, nil)
	ha, _ := a.Route(context.Background(), "eq.example")
	hb, _ := b.Route(context.Background(), "eq.example")
	require.Equal(t, hostNames(ha), hostNames(hb))
}

func TestRouteFailures(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t,
		"nullmx.example. 300 IN MX 0 .",
		"ipmx.example. 300 IN MX 10 192.0.2.1.",
		// One MX naming an IP among good ones still refuses the domain,
		// as the seed says ("a domain whose MX record points to an IP
		// address is not resolved").
		"mixedipmx.example. 300 IN MX 10 good.mixedipmx.example.",
		"mixedipmx.example. 300 IN MX 20 192.0.2.1.",
		"good.mixedipmx.example. 300 IN A 127.0.2.4",
		"implicit.example. 300 IN A 127.0.2.1",
		"implicit.example. 300 IN TXT \"no mx here\"",
		"noaddr.example. 300 IN MX 10 gone.noaddr.example.",
		"empty.example. 300 IN TXT \"nothing\"",
		"servfail.example. 300 IN A 127.0.0.1",
		"halfbad.example. 300 IN MX 10 bad.halfbad.example.",
		"halfbad.example. 300 IN MX 20 good.halfbad.example.",
		"good.halfbad.example. 300 IN A 127.0.2.2",
		"bad.halfbad.example. 300 IN A 127.0.2.3",
	)
	srv.Rcode("servfail.example", dns.TypeMX, dns.RcodeServerFailure)
	srv.Rcode("bad.halfbad.example", dns.TypeA, dns.RcodeServerFailure)
	srv.Rcode("bad.halfbad.example", dns.TypeAAAA, dns.RcodeServerFailure)
	c, _ := newClient(t, srv, func(o *Options) { o.Attempts = 1 })
	ctx := context.Background()

	for _, tc := range []struct {
		domain    string
		kind      Kind
		temporary bool
	}{
		{"nonexistent.example", NXDomain, false},
		{"nullmx.example", NullMX, false},
		{"ipmx.example", MXIsIP, false},
		{"mixedipmx.example", MXIsIP, false},
		{"noaddr.example", NoAddress, false},
		{"empty.example", NoAddress, false},
		{"servfail.example", ServFail, true},
	} {
		_, err := c.Route(ctx, tc.domain)
		require.Error(t, err, tc.domain)
		require.Equal(t, tc.kind, kindOf(err), "%s: %v", tc.domain, err)
		require.Equal(t, tc.temporary, IsTemporary(err), tc.domain)
	}

	hosts, err := c.Route(ctx, "implicit.example")
	require.NoError(t, err)
	require.Equal(t, []string{"implicit.example/0 127.0.2.1"}, hostNames(hosts))
	require.True(t, hosts[0].Implicit)

	hosts, err = c.Route(ctx, "halfbad.example")
	require.NoError(t, err, "an exchanger without addresses is skipped")
	require.Equal(t, []string{"good.halfbad.example/20 127.0.2.2"}, hostNames(hosts))
}

func TestRouteCaps(t *testing.T) {
	srv := dnstest.Start(t)
	for i := 0; i < 6; i++ {
		srv.Add(t, fmt.Sprintf("caps.example. 300 IN MX %d mx%d.caps.example.", i, i))
		for j := 0; j < 5; j++ {
			srv.Add(t, fmt.Sprintf("mx%d.caps.example. 300 IN A 127.0.%d.%d", i, i, j))
		}
	}
	c, _ := newClient(t, srv, func(o *Options) { o.MaxMX = 4; o.MaxAddrsPerMX = 3; o.MaxAddrs = 7 })
	hosts, err := c.Route(context.Background(), "caps.example")
	require.NoError(t, err)
	require.Equal(t, []string{
		"mx0.caps.example/0 127.0.0.0 127.0.0.1 127.0.0.2",
		"mx1.caps.example/1 127.0.1.0 127.0.1.1 127.0.1.2",
		"mx2.caps.example/2 127.0.2.0",
	}, hostNames(hosts))
}

func TestCNAME(t *testing.T) {
	for _, chase := range []bool{true, false} {
		t.Run(fmt.Sprintf("server chases %v", chase), func(t *testing.T) {
			srv := dnstest.Start(t)
			srv.NoChase = !chase
			srv.Add(t,
				"alias.example. 300 IN CNAME alias2.example.",
				"alias2.example. 300 IN CNAME real.example.",
				"real.example. 300 IN MX 10 mx.real.example.",
				"mx.real.example. 300 IN CNAME host.real.example.",
				"host.real.example. 300 IN A 127.0.3.1",
				"loop1.example. 300 IN CNAME loop2.example.",
				"loop2.example. 300 IN CNAME loop1.example.",
				"dangling.example. 300 IN CNAME nowhere.example.",
			)
			c, _ := newClient(t, srv, nil)
			ctx := context.Background()
			hosts, err := c.Route(ctx, "alias.example")
			require.NoError(t, err)
			require.Equal(t, []string{"mx.real.example/10 127.0.3.1"}, hostNames(hosts))

			_, err = c.Route(ctx, "loop1.example")
			require.Error(t, err)
			_, err = c.Route(ctx, "dangling.example")
			require.Equal(t, NXDomain, kindOf(err), "%v", err)
		})
	}
}

func TestTruncatedRetriesOverTCP(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t, "big.example. 300 IN MX 10 mx.big.example.", "mx.big.example. 300 IN A 127.0.4.1")
	srv.Truncate("big.example")
	c, _ := newClient(t, srv, nil)
	hosts, err := c.Route(context.Background(), "big.example")
	require.NoError(t, err)
	require.Equal(t, []string{"mx.big.example/10 127.0.4.1"}, hostNames(hosts))
	require.Equal(t, 2, srv.Queries("big.example", dns.TypeMX))
	require.Equal(t, 1, srv.TCPQueries("big.example", dns.TypeMX))

	tc, _ := newClient(t, srv, func(o *Options) { o.UseTCP = true })
	_, err = tc.LookupA(context.Background(), "mx.big.example")
	require.NoError(t, err)
	require.Equal(t, 1, srv.TCPQueries("mx.big.example", dns.TypeA), "use_TCP sends over TCP at once")
}

func TestTimeoutAndRetries(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t, "slow.example. 300 IN A 127.0.5.1")
	srv.Hold("slow.example")
	c, _ := newClient(t, srv, func(o *Options) { o.Timeout = 100 * time.Millisecond; o.Attempts = 2 })
	_, err := c.LookupA(context.Background(), "slow.example")
	require.Equal(t, Timeout, kindOf(err), "%v", err)
	require.True(t, IsTemporary(err))
	require.Equal(t, 2, srv.Queries("slow.example", dns.TypeA), "retries+1 queries")
	srv.Release("slow.example")

	// A temporary failure is not cached: the next try gets the answer.
	addrs, err := c.LookupA(context.Background(), "slow.example")
	require.NoError(t, err)
	require.Equal(t, []netip.Addr{netip.MustParseAddr("127.0.5.1")}, addrs)

	// The caller's context bounds the whole lookup.
	srv.Hold("slow2.example")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	c2, _ := newClient(t, srv, func(o *Options) { o.Timeout = time.Minute; o.Attempts = 3 })
	_, err = c2.LookupA(ctx, "slow2.example")
	require.True(t, IsTemporary(err))
	require.Equal(t, Timeout, kindOf(err), "%v", err)
}

func TestServfailThenNextServer(t *testing.T) {
	bad := dnstest.Start(t)
	good := dnstest.Start(t)
	bad.Add(t, "rr.example. 300 IN A 127.0.6.1")
	good.Add(t, "rr.example. 300 IN A 127.0.6.1")
	bad.Rcode("rr.example", dns.TypeA, dns.RcodeServerFailure)
	c, _ := newClient(t, bad, func(o *Options) { o.Nameservers = []string{bad.Addr, good.Addr}; o.CacheSize = -1 })
	for range 4 {
		addrs, err := c.LookupA(context.Background(), "rr.example")
		require.NoError(t, err, "the retry goes to the next nameserver")
		require.Len(t, addrs, 1)
	}
	require.Equal(t, 4, good.Queries("rr.example", dns.TypeA))
	require.Equal(t, 2, bad.Queries("rr.example", dns.TypeA), "round robin start")
}

func TestCacheHonoursTTL(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t, "ttl.example. 60 IN MX 10 mx.ttl.example.", "mx.ttl.example. 600 IN A 127.0.7.1")
	c, clock := newClient(t, srv, nil)
	ctx := context.Background()
	for range 3 {
		_, err := c.Route(ctx, "ttl.example")
		require.NoError(t, err)
	}
	require.Equal(t, 1, srv.Queries("ttl.example", dns.TypeMX))
	clock.Advance(59 * time.Second)
	c.Route(ctx, "ttl.example")
	require.Equal(t, 1, srv.Queries("ttl.example", dns.TypeMX))
	clock.Advance(time.Second)
	c.Route(ctx, "ttl.example")
	require.Equal(t, 2, srv.Queries("ttl.example", dns.TypeMX), "expired after its TTL")
	require.Equal(t, 1, srv.Queries("mx.ttl.example", dns.TypeA), "the A record's longer TTL still holds")

	// Negative answers are cached for the SOA's negative TTL (30 s).
	c.Route(ctx, "missing.example")
	c.Route(ctx, "missing.example")
	require.Equal(t, 1, srv.Queries("missing.example", dns.TypeMX))
	clock.Advance(31 * time.Second)
	c.Route(ctx, "missing.example")
	require.Equal(t, 2, srv.Queries("missing.example", dns.TypeMX))
}

func TestPTR(t *testing.T) {
	srv := dnstest.Start(t)
	srv.Add(t, "5.0.0.127.in-addr.arpa. 300 IN PTR client.example.")
	c, _ := newClient(t, srv, nil)
	names, err := c.LookupPTR(context.Background(), netip.MustParseAddr("127.0.0.5"))
	require.NoError(t, err)
	require.Equal(t, []string{"client.example."}, names)
	_, err = c.LookupPTR(context.Background(), netip.MustParseAddr("127.0.0.6"))
	require.Equal(t, NXDomain, kindOf(err))
}

func TestResolvConf(t *testing.T) {
	path := filepath.Join(t.TempDir(), "resolv.conf")
	require.NoError(t, os.WriteFile(path, []byte("search example\nnameserver 127.0.0.1\nnameserver ::1\n"), 0o644))
	c, err := New(Options{ResolvConf: path})
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:53", "[::1]:53"}, c.servers)

	c, err = New(Options{Nameservers: []string{"127.0.0.1", "127.0.0.2:5353"}})
	require.NoError(t, err)
	require.Equal(t, []string{"127.0.0.1:53", "127.0.0.2:5353"}, c.servers)

	_, err = New(Options{Nameservers: []string{"ns.example"}})
	require.ErrorContains(t, err, "not an IP address")
	require.NoError(t, os.WriteFile(path, []byte("search example\n"), 0o644))
	_, err = New(Options{ResolvConf: path})
	require.ErrorContains(t, err, "names no nameserver")
}
