package server

import (
	"net/netip"
	"sync"
	"time"
)

// ConnLimits are the incoming connection limits of one client address.
type ConnLimits struct {
	// Rate is the largest number of connections in any 60 seconds
	// (max_connection_rate, icr:); negative means no limit.
	Rate int
	// Max is the largest number of open connections (max_connections,
	// icm:); negative means no limit.
	Max int
}

// ConnOverride sets the limits for the addresses in Net: the qmgr_conf
// entries icr:NET and icm:NET. A zero field keeps the default. As in the
// seed, the limits apply to each address in the net on its own; they are
// not added up over the net.
type ConnOverride struct {
	Net  netip.Prefix
	Rate int
	Max  int
}

// ConnLimiterOptions configure a ConnLimiter.
type ConnLimiterOptions struct {
	// Default are the limits of an address no override names (qmgr
	// smtps max_connection_rate and max_connections). Zero fields mean
	// the seed's defaults: 100 connections per 60s, 100 open.
	Default ConnLimits
	// Overrides are the icr:/icm: entries; the longest matching prefix
	// wins.
	Overrides []ConnOverride
	// MaxTotal caps the open connections of all SMTP servers together;
	// 0 means no cap beyond each server's MaxSessions.
	MaxTotal int
	// MaxEntries bounds the number of addresses tracked
	// (connection_control_cache_size); default 100000. Idle entries are
	// dropped first.
	MaxEntries int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// ConnLimiter is the connection control of the seed's QMGR for incoming
// connections: per client address a connection rate over 60 seconds and a
// number of open connections, and a global cap. It is safe for concurrent
// use and is shared by all SMTP servers of smxd.
type ConnLimiter struct {
	opts  ConnLimiterOptions
	mu    sync.Mutex
	total int
	addrs map[netip.Addr]*connEntry
}

// connEntry is the state of one address: open connections and a token
// bucket that holds Rate tokens and refills Rate per 60 seconds.
type connEntry struct {
	open   int
	tokens float64
	last   time.Time
}

const rateWindow = 60 * time.Second

// NewConnLimiter returns a ConnLimiter.
func NewConnLimiter(opts ConnLimiterOptions) *ConnLimiter {
	if opts.Default.Rate == 0 {
		opts.Default.Rate = 100
	}
	if opts.Default.Max == 0 {
		opts.Default.Max = 100
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = 100000
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &ConnLimiter{opts: opts, addrs: make(map[netip.Addr]*connEntry)}
}

// Limits returns the limits that apply to addr.
func (c *ConnLimiter) Limits(addr netip.Addr) ConnLimits {
	addr = addr.Unmap()
	l := c.opts.Default
	bestRate, bestMax := -1, -1
	for _, o := range c.opts.Overrides {
		if !o.Net.Contains(addr) {
			continue
		}
		if bits := o.Net.Bits(); o.Rate != 0 && bits > bestRate {
			bestRate, l.Rate = bits, o.Rate
		}
		if bits := o.Net.Bits(); o.Max != 0 && bits > bestMax {
			bestMax, l.Max = bits, o.Max
		}
	}
	return l
}

// Refusal says why a connection was refused.
type Refusal int

// Reasons for refusing a connection.
const (
	Admitted Refusal = iota
	RefusedRate
	RefusedCount
	RefusedTotal
)

// Acquire admits a new connection from addr or says why not. An admitted
// connection must be given back with Release.
func (c *ConnLimiter) Acquire(addr netip.Addr) Refusal {
	addr = addr.Unmap()
	limits := c.Limits(addr)
	now := c.opts.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.opts.MaxTotal > 0 && c.total >= c.opts.MaxTotal {
		return RefusedTotal
	}
	e := c.addrs[addr]
	if e == nil {
		if len(c.addrs) >= c.opts.MaxEntries {
			c.sweepLocked(now)
		}
		e = &connEntry{tokens: float64(limits.Rate), last: now}
		c.addrs[addr] = e
	}
	if limits.Max >= 0 && e.open >= limits.Max {
		return RefusedCount
	}
	if limits.Rate >= 0 {
		if elapsed := now.Sub(e.last); elapsed > 0 {
			e.tokens += float64(limits.Rate) * float64(elapsed) / float64(rateWindow)
			if e.tokens > float64(limits.Rate) {
				e.tokens = float64(limits.Rate)
			}
		}
		e.last = now
		if e.tokens < 1 {
			return RefusedRate
		}
		e.tokens--
	}
	e.open++
	c.total++
	return Admitted
}

// Release gives back a connection admitted by Acquire.
func (c *ConnLimiter) Release(addr netip.Addr) {
	addr = addr.Unmap()
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.addrs[addr]; e != nil && e.open > 0 {
		e.open--
		c.total--
	}
}

// Open returns the number of open connections of addr and in total.
func (c *ConnLimiter) Open(addr netip.Addr) (fromAddr, total int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.addrs[addr.Unmap()]; e != nil {
		fromAddr = e.open
	}
	return fromAddr, c.total
}

// sweepLocked drops entries with no open connection whose bucket has
// refilled (they carry no information), and if that is not enough, every
// entry without open connections.
func (c *ConnLimiter) sweepLocked(now time.Time) {
	for a, e := range c.addrs {
		if e.open == 0 && now.Sub(e.last) >= rateWindow {
			delete(c.addrs, a)
		}
	}
	if len(c.addrs) < c.opts.MaxEntries {
		return
	}
	for a, e := range c.addrs {
		if e.open == 0 {
			delete(c.addrs, a)
		}
	}
}
