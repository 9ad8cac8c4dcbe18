package dnsclient

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/miekg/dns"
)

// Host is one destination host for a domain with its addresses, in the
// order they are to be tried.
type Host struct {
	Name       string // host name without the trailing dot
	Preference int    // MX preference; 0 for an implicit MX
	Addrs      []netip.Addr
	// Implicit is true when the domain has no MX and Name is the domain
	// itself (RFC 5321, section 5.1).
	Implicit bool
}

// Route finds where mail for domain goes: its MX records in preference
// order (equal preferences in random order), each with its A (then AAAA)
// addresses; or, without MX records, the domain itself as an implicit MX.
//
// Permanent failures: the domain does not exist (NXDomain), publishes a
// null MX (NullMX), has an MX record naming an IP address (MXIsIP, refused
// as seed 001 "Strict RFC Compliance" says), or none of its hosts has an
// address (NoAddress). Temporary failures: SERVFAIL or timeouts for the
// MX query, or for every host's address lookups when no host has an
// address.
//
// Exchangers whose addresses cannot be found are skipped. MaxMX,
// MaxAddrsPerMX and MaxAddrs cap the answer.
func (c *Client) Route(ctx context.Context, domain string) ([]Host, error) {
	name := dns.CanonicalName(domain)
	ans, err := c.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	if ans.nxdomain {
		return nil, &Error{Name: domain, Type: "MX", Kind: NXDomain}
	}
	if len(ans.records) == 0 {
		return c.implicitMX(ctx, domain, name)
	}
	mxs := make([]*dns.MX, 0, len(ans.records))
	for _, rr := range ans.records {
		mx, ok := rr.(*dns.MX)
		if !ok {
			continue // interpret keeps records of the asked type only
		}
		if mx.Mx == "." {
			if len(ans.records) == 1 {
				return nil, &Error{Name: domain, Type: "MX", Kind: NullMX}
			}
			// A null MX among others is a misconfiguration (RFC 7505,
			// section 3): the other records are used.
			continue
		}
		if _, err := netip.ParseAddr(strings.TrimSuffix(mx.Mx, ".")); err == nil {
			return nil, &Error{Name: domain, Type: "MX", Kind: MXIsIP,
				Err: errors.New("MX record " + mx.Mx + " names an IP address")}
		}
		mxs = append(mxs, mx)
	}
	c.sortMX(mxs)
	if len(mxs) > c.opts.MaxMX {
		mxs = mxs[:c.opts.MaxMX]
	}
	// The exchangers' addresses are looked up concurrently; the caps are
	// applied afterwards, in preference order.
	type lookup struct {
		addrs []netip.Addr
		err   error
	}
	results := make([]lookup, len(mxs))
	var wg sync.WaitGroup
	for i, mx := range mxs {
		// With a warm cache there is nothing to wait for: no goroutine.
		if addrs, ok, err := c.cachedHostAddrs(ctx, mx.Mx, c.opts.MaxAddrsPerMX); ok {
			results[i] = lookup{addrs, err}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			addrs, err := c.hostAddrs(ctx, mx.Mx, c.opts.MaxAddrsPerMX)
			results[i] = lookup{addrs, err}
		}()
	}
	wg.Wait()
	hosts := make([]Host, 0, len(mxs))
	total := 0
	var tempErr error
	for i, mx := range mxs {
		addrs, err := results[i].addrs, results[i].err
		if err != nil {
			if IsTemporary(err) && tempErr == nil {
				tempErr = err
			}
			continue
		}
		if len(addrs) == 0 || total >= c.opts.MaxAddrs {
			continue
		}
		if len(addrs) > c.opts.MaxAddrs-total {
			addrs = addrs[:c.opts.MaxAddrs-total]
		}
		total += len(addrs)
		hosts = append(hosts, Host{Name: strings.TrimSuffix(mx.Mx, "."), Preference: int(mx.Preference), Addrs: addrs})
	}
	if len(hosts) == 0 {
		if tempErr != nil {
			return nil, tempErr
		}
		return nil, &Error{Name: domain, Type: "MX", Kind: NoAddress,
			Err: errors.New("no exchanger has an address")}
	}
	return hosts, nil
}

func (c *Client) implicitMX(ctx context.Context, domain, name string) ([]Host, error) {
	addrs, err := c.hostAddrs(ctx, name, min(c.opts.MaxAddrsPerMX, c.opts.MaxAddrs))
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, &Error{Name: domain, Type: "A", Kind: NoAddress, Err: errors.New("no MX, A or AAAA records")}
	}
	return []Host{{Name: strings.TrimSuffix(domain, "."), Addrs: addrs, Implicit: true}}, nil
}

// sortMX orders by preference and shuffles each run of equal preference
// with the injected random source.
func (c *Client) sortMX(mxs []*dns.MX) {
	slices.SortStableFunc(mxs, func(a, b *dns.MX) int { return int(a.Preference) - int(b.Preference) })
	for i := 0; i < len(mxs); {
		j := i + 1
		for j < len(mxs) && mxs[j].Preference == mxs[i].Preference {
			j++
		}
		for k := j - 1; k > i; k-- {
			r := i + c.intn(k-i+1)
			mxs[k], mxs[r] = mxs[r], mxs[k]
		}
		i = j
	}
}

// hostAddrs returns the A and then the AAAA addresses of a host, at most
// max. NXDOMAIN is a permanent error; a host with neither record gives an
// empty list. When one of the two lookups fails temporarily and the other
// has addresses, those are used.
func (c *Client) hostAddrs(ctx context.Context, name string, max int) ([]netip.Addr, error) {
	if addrs, ok, err := c.cachedHostAddrs(ctx, name, max); ok {
		return addrs, err
	}
	var aaaa []netip.Addr
	var errAAAA error
	done := make(chan struct{})
	if c.opts.NoIPv6 {
		close(done)
	} else {
		go func() {
			defer close(done)
			aaaa, errAAAA = c.lookupAddrs(ctx, name, dns.TypeAAAA)
		}()
	}
	a, errA := c.lookupAddrs(ctx, name, dns.TypeA)
	<-done
	return mergeAddrs(a, errA, aaaa, errAAAA, max)
}

// cachedHostAddrs is hostAddrs from the cache alone; ok is false when an
// answer it needs is not cached.
func (c *Client) cachedHostAddrs(ctx context.Context, name string, max int) (addrs []netip.Addr, ok bool, err error) {
	a, errA := c.lookupAddrsCache(ctx, name, dns.TypeA, true)
	if errors.Is(errA, errNotCached) {
		return nil, false, nil
	}
	var aaaa []netip.Addr
	var errAAAA error
	if !c.opts.NoIPv6 {
		aaaa, errAAAA = c.lookupAddrsCache(ctx, name, dns.TypeAAAA, true)
		if errors.Is(errAAAA, errNotCached) {
			return nil, false, nil
		}
	}
	addrs, err = mergeAddrs(a, errA, aaaa, errAAAA, max)
	return addrs, true, err
}

// mergeAddrs puts the A and AAAA answers together, at most max addresses.
func mergeAddrs(a []netip.Addr, errA error, aaaa []netip.Addr, errAAAA error, max int) ([]netip.Addr, error) {
	addrs := append(a, aaaa...)
	if len(addrs) > max {
		addrs = addrs[:max]
	}
	if len(addrs) > 0 {
		return addrs, nil
	}
	for _, err := range []error{errA, errAAAA} {
		if err != nil && IsTemporary(err) {
			return nil, err
		}
	}
	if errA != nil {
		return nil, errA
	}
	return nil, errAAAA
}

func (c *Client) lookupAddrs(ctx context.Context, name string, qtype uint16) ([]netip.Addr, error) {
	return c.lookupAddrsCache(ctx, name, qtype, false)
}

func (c *Client) lookupAddrsCache(ctx context.Context, name string, qtype uint16, cacheOnly bool) ([]netip.Addr, error) {
	ans, err := c.queryCache(ctx, name, qtype, cacheOnly)
	if err != nil {
		return nil, err
	}
	if ans.nxdomain {
		return nil, &Error{Name: strings.TrimSuffix(name, "."), Type: dns.TypeToString[qtype], Kind: NXDomain}
	}
	out := make([]netip.Addr, 0, len(ans.records))
	for _, rr := range ans.records {
		var ip netip.Addr
		switch r := rr.(type) {
		case *dns.A:
			ip, _ = netip.AddrFromSlice(r.A.To4())
		case *dns.AAAA:
			ip, _ = netip.AddrFromSlice(r.AAAA.To16())
		}
		if ip.IsValid() {
			out = append(out, ip)
		}
	}
	return out, nil
}

// LookupHost returns the A and AAAA addresses of name. A name without
// addresses is a NoAddress error.
func (c *Client) LookupHost(ctx context.Context, name string) ([]netip.Addr, error) {
	addrs, err := c.hostAddrs(ctx, dns.CanonicalName(name), c.opts.MaxAddrs)
	if err == nil && len(addrs) == 0 {
		err = &Error{Name: name, Type: "A", Kind: NoAddress}
	}
	return addrs, err
}

// LookupA returns the IPv4 addresses of name in the order the server gave
// them (DNS blacklists and forward-confirmation of client names use it).
// A name without A records gives an empty list and no error; NXDOMAIN is a
// permanent error.
func (c *Client) LookupA(ctx context.Context, name string) ([]netip.Addr, error) {
	return c.lookupAddrs(ctx, dns.CanonicalName(name), dns.TypeA)
}

// LookupAAAA is LookupA for IPv6.
func (c *Client) LookupAAAA(ctx context.Context, name string) ([]netip.Addr, error) {
	return c.lookupAddrs(ctx, dns.CanonicalName(name), dns.TypeAAAA)
}

// LookupPTR returns the names of ip, with their trailing dots as DNS gives
// them. No PTR record gives an empty list and no error.
func (c *Client) LookupPTR(ctx context.Context, ip netip.Addr) ([]string, error) {
	rev, err := dns.ReverseAddr(ip.Unmap().String())
	if err != nil {
		return nil, &Error{Name: ip.String(), Type: "PTR", Kind: Network, Err: err}
	}
	ans, err := c.query(ctx, rev, dns.TypePTR)
	if err != nil {
		return nil, err
	}
	if ans.nxdomain {
		return nil, &Error{Name: rev, Type: "PTR", Kind: NXDomain}
	}
	out := make([]string, 0, len(ans.records))
	for _, rr := range ans.records {
		if ptr, ok := rr.(*dns.PTR); ok {
			out = append(out, ptr.Ptr)
		}
	}
	return out, nil
}
