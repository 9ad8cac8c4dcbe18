// Package dnsclient is SMAR's DNS resolver: MX lookup and then A and AAAA
// per exchanger, the order among equal preferences randomised, implicit MX,
// null MX (RFC 7505), the seed's refusal of MX records that name an IP
// address and its caps on MX and address counts, CNAME chains, TCP retry on
// truncation, timeouts and retries over the configured nameservers, a cache
// that honours TTLs, and PTR lookups for client names and A lookups for
// DNS blacklists.
//
// It is built on github.com/miekg/dns for the wire format and transport and
// does its own retry, caching and answer interpretation, because those are
// where the seed's rules live. It owns no policy: whether an answer is
// acceptable for a sender or a recipient is for packages resolver and
// policy. Time and randomness come from Options.
package dnsclient

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Options configure a Client. Zero fields take the documented defaults.
type Options struct {
	// Nameservers are the servers to ask, as "IP" or "IP:port" (smar
	// option DNS { nameservers } of seed 002, or nameserver of seed
	// 001). They are used round robin, one per try. Empty means the
	// nameserver lines of ResolvConf (the seed's use_resolvconf flag).
	Nameservers []string
	// ResolvConf is the resolv.conf to read when Nameservers is empty.
	// Default /etc/resolv.conf.
	ResolvConf string
	// Timeout bounds one query to one nameserver (DNS { timeout },
	// DNS_timeout). Default 5 s.
	Timeout time.Duration
	// Attempts is how many queries are sent before giving up: the seed's
	// retries + 1. Default 3.
	Attempts int
	// UseTCP sends every query over TCP (DNS_flags use_TCP). Without it
	// queries go over UDP and a truncated answer is asked again over TCP.
	UseTCP bool
	// MaxMX caps the MX records used for a domain (MTA_DNS_MX_MAX).
	// Default 16; the most preferred are kept.
	MaxMX int
	// MaxAddrsPerMX caps the addresses used for one exchanger
	// (MTA_DNS_A_PER_MX_MAX). Default 8.
	MaxAddrsPerMX int
	// MaxAddrs caps the addresses for a domain after the MX lookups
	// (MTA_DNS_A_MAX). Default 64.
	MaxAddrs int
	// NoIPv6 skips AAAA lookups for exchangers.
	NoIPv6 bool
	// CacheSize bounds the number of cached answers. Default 10000;
	// negative disables the cache.
	CacheSize int
	// Now is the clock for the cache. Default time.Now.
	Now func() time.Time
	// Rand orders exchangers of equal preference. Default a PCG seeded
	// from the clock.
	Rand *rand.Rand
}

// Defaults of Options.
const (
	DefaultTimeout       = 5 * time.Second
	DefaultAttempts      = 3
	DefaultMaxMX         = 16
	DefaultMaxAddrsPerMX = 8
	DefaultMaxAddrs      = 64
	DefaultCacheSize     = 10000
	maxCNAMEChain        = 8
	ednsSize             = 1232
)

// Client resolves names. It is safe for concurrent use.
type Client struct {
	servers []string
	opts    Options
	udp     *dns.Client
	tcp     *dns.Client
	cache   *cache

	mu   sync.Mutex // guards next and rand
	next int
	rand *rand.Rand
}

// New returns a Client. It reads ResolvConf when no nameservers are given.
func New(opts Options) (*Client, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Attempts <= 0 {
		opts.Attempts = DefaultAttempts
	}
	if opts.MaxMX <= 0 {
		opts.MaxMX = DefaultMaxMX
	}
	if opts.MaxAddrsPerMX <= 0 {
		opts.MaxAddrsPerMX = DefaultMaxAddrsPerMX
	}
	if opts.MaxAddrs <= 0 {
		opts.MaxAddrs = DefaultMaxAddrs
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := opts.Rand
	if r == nil {
		seed := uint64(opts.Now().UnixNano())
		r = rand.New(rand.NewPCG(seed, seed>>1|1))
	}
	servers, err := nameservers(opts)
	if err != nil {
		return nil, err
	}
	c := &Client{
		servers: servers,
		opts:    opts,
		udp:     &dns.Client{Net: "udp", Timeout: opts.Timeout, UDPSize: ednsSize},
		tcp:     &dns.Client{Net: "tcp", Timeout: opts.Timeout},
		rand:    r,
	}
	if opts.CacheSize > 0 {
		c.cache = newCache(opts.CacheSize)
	}
	return c, nil
}

func nameservers(opts Options) ([]string, error) {
	list := opts.Nameservers
	port := "53"
	if len(list) == 0 {
		path := opts.ResolvConf
		if path == "" {
			path = "/etc/resolv.conf"
		}
		conf, err := dns.ClientConfigFromFile(path)
		if err != nil {
			return nil, fmt.Errorf("dnsclient: read %s: %w", path, err)
		}
		list, port = conf.Servers, conf.Port
		if len(list) == 0 {
			return nil, fmt.Errorf("dnsclient: %s names no nameserver", path)
		}
	}
	out := make([]string, 0, len(list))
	for _, s := range list {
		if ap, err := netip.ParseAddrPort(s); err == nil {
			out = append(out, ap.String())
			continue
		}
		ip, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("dnsclient: nameserver %q is not an IP address or IP:port", s)
		}
		out = append(out, net.JoinHostPort(ip.String(), port))
	}
	return out, nil
}

// Kind classifies a DNS failure.
type Kind uint8

// The failure kinds. NXDomain, NoAddress, NullMX and MXIsIP are permanent;
// the others are temporary.
const (
	NXDomain  Kind = iota + 1 // the name does not exist
	NoAddress                 // the name exists but has no usable address
	NullMX                    // the domain publishes a null MX (RFC 7505)
	MXIsIP                    // an MX record names an IP address
	ServFail                  // the servers answered SERVFAIL, REFUSED or similar
	Timeout                   // no answer in time
	Network                   // the servers could not be reached or the answer was unusable
)

var kindNames = [...]string{"", "NXDOMAIN", "no address", "null MX", "MX names an IP address",
	"SERVFAIL", "timeout", "network error"}

// String names the kind, for example "NXDOMAIN".
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Error is a failed lookup.
type Error struct {
	Name string // the name asked for
	Type string // the record type, for example "MX"
	Kind Kind
	Err  error // the underlying error, if any
}

// Error says what was asked and how it failed.
func (e *Error) Error() string {
	s := fmt.Sprintf("dns: %s %s: %s", e.Type, e.Name, e.Kind)
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Temporary reports whether the failure may go away by itself.
func (e *Error) Temporary() bool { return e.Kind >= ServFail }

// IsTemporary reports whether err is a temporary DNS failure; errors that
// are not *Error (a cancelled context) count as temporary.
func IsTemporary(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		return e.Temporary()
	}
	return err != nil
}

// answer is the interpretation of one response: the records of the asked
// type at the end of the CNAME chain, or a negative answer.
type answer struct {
	records  []dns.RR
	nxdomain bool
	// expires is when the answer leaves the cache.
	expires time.Time
}

// errNotCached is what a cache-only query returns when the answer is not
// in the cache.
var errNotCached = errors.New("dnsclient: not cached")

// query asks for name/qtype, following CNAMEs, using the cache.
func (c *Client) query(ctx context.Context, name string, qtype uint16) (answer, error) {
	return c.queryCache(ctx, name, qtype, false)
}

// queryCache is query; with cacheOnly it never sends a question and
// returns errNotCached instead.
func (c *Client) queryCache(ctx context.Context, name string, qtype uint16, cacheOnly bool) (answer, error) {
	name = dns.CanonicalName(name)
	for hop := 0; hop <= maxCNAMEChain; hop++ {
		ans, target, err := c.queryOne(ctx, name, qtype, cacheOnly)
		if err != nil || target == "" {
			return ans, err
		}
		name = target
	}
	return answer{}, &Error{Name: name, Type: dns.TypeToString[qtype], Kind: Network,
		Err: fmt.Errorf("CNAME chain longer than %d", maxCNAMEChain)}
}

// queryOne asks for one name. When the answer ends in a CNAME whose target
// has no records in it, target names the next name to ask.
func (c *Client) queryOne(ctx context.Context, name string, qtype uint16, cacheOnly bool) (answer, string, error) {
	key := cacheKey{name: name, qtype: qtype}
	now := c.opts.Now()
	if c.cache != nil {
		if e, ok := c.cache.get(key, now); ok {
			return e.answer, e.target, nil
		}
	}
	if cacheOnly {
		return answer{}, "", errNotCached
	}
	msg, err := c.exchange(ctx, name, qtype)
	if err != nil {
		return answer{}, "", err
	}
	ans, target, ttl, cacheable, err := interpret(msg, name, qtype)
	if err != nil {
		return answer{}, "", err
	}
	if c.cache != nil && cacheable {
		ans.expires = now.Add(ttl)
		c.cache.put(key, cacheEntry{answer: ans, target: target}, now)
	}
	return ans, target, nil
}

// interpret reads a NOERROR or NXDOMAIN response. It follows the CNAME
// chain inside the answer section; ttl is the smallest TTL involved, or for
// a negative answer the SOA's negative TTL (RFC 2308). cacheable is false
// for a negative answer without SOA.
func interpret(msg *dns.Msg, name string, qtype uint16) (ans answer, target string, ttl time.Duration, cacheable bool, err error) {
	minTTL := uint32(1<<31 - 1)
	cur := name
	seen := map[string]bool{cur: true}
	for {
		var next string
		var recs []dns.RR
		for _, rr := range msg.Answer {
			h := rr.Header()
			if !strings.EqualFold(h.Name, cur) {
				continue
			}
			if h.Rrtype == qtype {
				recs = append(recs, rr)
			} else if cn, ok := rr.(*dns.CNAME); ok && qtype != dns.TypeCNAME {
				next = dns.CanonicalName(cn.Target)
				minTTL = min(minTTL, h.Ttl)
			}
		}
		if len(recs) > 0 {
			for _, rr := range recs {
				minTTL = min(minTTL, rr.Header().Ttl)
			}
			return answer{records: recs}, "", time.Duration(minTTL) * time.Second, true, nil
		}
		if next == "" {
			break
		}
		if seen[next] {
			return answer{}, "", 0, false, &Error{Name: name, Type: dns.TypeToString[qtype], Kind: Network,
				Err: fmt.Errorf("CNAME loop at %s", next)}
		}
		seen[next] = true
		cur = next
	}
	hasSOA := false
	for _, rr := range msg.Ns {
		if _, ok := rr.(*dns.SOA); ok {
			hasSOA = true
		}
	}
	if cur != name && msg.Rcode == dns.RcodeSuccess && !hasSOA {
		// The chain leads out of this answer and the server did not
		// follow it: the caller asks for cur.
		return answer{}, cur, time.Duration(minTTL) * time.Second, true, nil
	}
	// No records: NODATA or NXDOMAIN. Negative TTL from the SOA.
	ans.nxdomain = msg.Rcode == dns.RcodeNameError
	for _, rr := range msg.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			neg := min(soa.Hdr.Ttl, soa.Minttl)
			return ans, "", time.Duration(min(neg, minTTL)) * time.Second, true, nil
		}
	}
	return ans, "", 0, false, nil
}

// exchange sends the query, with retries over the nameservers and a TCP
// retry of a truncated UDP answer. It returns only NOERROR and NXDOMAIN
// responses; everything else after the last try is a temporary *Error.
func (c *Client) exchange(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	q := new(dns.Msg)
	q.SetQuestion(name, qtype)
	q.RecursionDesired = true
	q.SetEdns0(ednsSize, false)

	c.mu.Lock()
	start := c.next
	c.next++
	c.mu.Unlock()

	typ := dns.TypeToString[qtype]
	var last *Error
	for try := 0; try < c.opts.Attempts; try++ {
		if err := ctx.Err(); err != nil {
			return nil, &Error{Name: name, Type: typ, Kind: Timeout, Err: err}
		}
		server := c.servers[(start+try)%len(c.servers)]
		resp, err := c.exchangeOnce(ctx, q, server)
		if err != nil {
			kind := Network
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded) {
				kind = Timeout
			}
			last = &Error{Name: name, Type: typ, Kind: kind, Err: fmt.Errorf("%s: %w", server, err)}
			continue
		}
		if resp.Id != q.Id {
			last = &Error{Name: name, Type: typ, Kind: Network, Err: fmt.Errorf("%s: answer id mismatch", server)}
			continue
		}
		switch resp.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			return resp, nil
		}
		last = &Error{Name: name, Type: typ, Kind: ServFail,
			Err: fmt.Errorf("%s answered %s", server, dns.RcodeToString[resp.Rcode])}
	}
	return nil, last
}

func (c *Client) exchangeOnce(ctx context.Context, q *dns.Msg, server string) (*dns.Msg, error) {
	qctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	if c.opts.UseTCP {
		resp, _, err := c.tcp.ExchangeContext(qctx, q, server)
		return resp, err
	}
	resp, _, err := c.udp.ExchangeContext(qctx, q, server)
	if err == nil && resp.Truncated {
		// The answer did not fit: ask the same server over TCP.
		resp, _, err = c.tcp.ExchangeContext(qctx, q, server)
	}
	return resp, err
}

// intn returns a random number in [0, n) from the injected source.
func (c *Client) intn(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rand.IntN(n)
}
