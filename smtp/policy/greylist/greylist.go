// Package greylist is SMAR's greylisting (seed 001 and 002, section 3.9.4):
// a client (simple greylisting: its IP address, optionally cut by a
// netmask) or a client-sender-recipient tuple (full greylisting) that is
// not known is refused with a temporary error the first time, and accepted
// when it comes back after grey_wait and before grey_expire; it then stays
// whitelisted while it keeps sending, up to white_expire between mails and
// white_timeout in all.
//
// The state lives in a Pebble database: main entries by key and a
// secondary index by expiry time, so that expired entries are removed once
// there are more than expire_limit. Writes are not synced: losing the last
// entries in a crash only makes some clients wait once more. The package
// decides nothing else; policy.Checker calls it at RCPT when every other
// check has passed. Time comes from Options.Now.
package greylist

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// Options are the smar greylisting section. Zero fields take the defaults
// of the configuration (docs/configuration.md).
type Options struct {
	// Dir is the database directory (main_DB_name). Required.
	Dir string
	// GreyWait is how long a client must wait before its retry counts
	// (grey_wait). Default 5 minutes.
	GreyWait time.Duration
	// GreyExpire is how long a greylisted entry waits for the retry
	// (grey_expire). Default 2 days.
	GreyExpire time.Duration
	// WhiteExpire drops a whitelisted entry not used for this long
	// (white_expire). Default 36 days.
	WhiteExpire time.Duration
	// WhiteTimeout makes a whitelisted entry go through greylisting again
	// after this long, however often it is used (white_timeout). Default
	// 90 days.
	WhiteTimeout time.Duration
	// ExpireLimit is the entry count above which expired entries are
	// removed (expire_limit). Default 100000.
	ExpireLimit int
	// Netmask is applied to IPv4 client addresses (netmask); 0 means
	// 0xFFFFFFFF. IPv6 clients are keyed by their /64.
	Netmask uint32
	// Now is the clock. Default time.Now.
	Now func() time.Time
	// Logger receives Pebble's messages (informational ones at debug
	// level). Default: discard.
	Logger *slog.Logger
}

// Result is the greylisting verdict.
type Result uint8

// The verdicts.
const (
	// Pass: the client (or tuple) is whitelisted, or just became so.
	Pass Result = iota + 1
	// Greylisted: first contact, or the retry came before GreyWait.
	Greylisted
)

// Greylister keeps the greylisting state. It is safe for concurrent use.
type Greylister struct {
	opts Options
	db   *pebble.DB

	mu     sync.Mutex
	count  int  // number of main entries
	closed bool // Close was called: Check fails instead of using the DB
}

// ErrClosed is returned by Check after Close: Pebble must not be used
// then, and a session that checks while the daemon stops lets its
// recipient pass (see policy.Checker).
var ErrClosed = errors.New("greylist: database closed")

const (
	prefixEntry  = 'g'
	prefixExpiry = 'x'

	stateGrey  = 1
	stateWhite = 2
	entryLen   = 1 + 2*8
)

// entry is one key's state.
type entry struct {
	state byte
	first time.Time // grey: first contact; white: when it became white
	last  time.Time // last mail (white)
}

// Open opens (creating if needed) the greylisting database.
func Open(opts Options) (*Greylister, error) {
	if opts.Dir == "" {
		return nil, errors.New("greylist: no database directory")
	}
	if opts.GreyWait <= 0 {
		opts.GreyWait = 5 * time.Minute
	}
	if opts.GreyExpire <= 0 {
		opts.GreyExpire = 48 * time.Hour
	}
	if opts.WhiteExpire <= 0 {
		opts.WhiteExpire = 36 * 24 * time.Hour
	}
	if opts.WhiteTimeout <= 0 {
		opts.WhiteTimeout = 90 * 24 * time.Hour
	}
	if opts.ExpireLimit <= 0 {
		opts.ExpireLimit = 100000
	}
	if opts.Netmask == 0 {
		opts.Netmask = 0xFFFFFFFF
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := pebble.Open(opts.Dir, &pebble.Options{Logger: pebbleLogger{opts.Logger}})
	if err != nil {
		return nil, fmt.Errorf("greylist: open %s: %w", opts.Dir, err)
	}
	g := &Greylister{opts: opts, db: db}
	iter, err := db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixEntry}, UpperBound: []byte{prefixEntry + 1}})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("greylist: %w", err)
	}
	for iter.First(); iter.Valid(); iter.Next() {
		g.count++
	}
	if err := errors.Join(iter.Error(), iter.Close()); err != nil {
		db.Close()
		return nil, fmt.Errorf("greylist: count entries: %w", err)
	}
	return g, nil
}

// Close closes the database. Check fails with ErrClosed from then on.
func (g *Greylister) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return nil
	}
	g.closed = true
	return g.db.Close()
}

// Len returns the number of entries.
func (g *Greylister) Len() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.count
}

// ClientKey is the key of simple greylisting: the client address, IPv4 cut
// by the netmask, IPv6 by its /64.
func (g *Greylister) ClientKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		v := binary.BigEndian.Uint32(b[:]) & g.opts.Netmask
		binary.BigEndian.PutUint32(b[:], v)
		return netip.AddrFrom4(b).String()
	}
	p, _ := ip.Prefix(64)
	return p.String()
}

// TupleKey is the key of full greylisting: client key, sender and
// recipient.
func (g *Greylister) TupleKey(ip netip.Addr, sender, rcpt string) string {
	return g.ClientKey(ip) + "\x00" + sender + "\x00" + rcpt
}

// Check applies greylisting to key and records the contact.
func (g *Greylister) Check(key string) (Result, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return 0, ErrClosed
	}
	now := g.opts.Now()
	old, found, err := g.get(key)
	if err != nil {
		return 0, err
	}
	if found && !g.expiry(old).After(now) {
		found = false // expired: as if unknown
	}
	var next entry
	var result Result
	switch {
	case !found:
		next, result = entry{state: stateGrey, first: now}, Greylisted
	case old.state == stateGrey && now.Sub(old.first) < g.opts.GreyWait:
		return Greylisted, nil // too early: the clock keeps running from the first contact
	case old.state == stateGrey:
		next, result = entry{state: stateWhite, first: now, last: now}, Pass
	default:
		next, result = entry{state: stateWhite, first: old.first, last: now}, Pass
	}
	b := g.db.NewBatch()
	defer b.Close()
	if found || old.state != 0 {
		b.Delete(expiryKey(g.expiry(old), key), nil)
	}
	b.Set(entryKey(key), encode(next), nil)
	b.Set(expiryKey(g.expiry(next), key), nil, nil)
	if err := b.Commit(pebble.NoSync); err != nil {
		return 0, fmt.Errorf("greylist: write: %w", err)
	}
	if old.state == 0 {
		g.count++
	}
	if g.count > g.opts.ExpireLimit {
		if err := g.expire(now); err != nil {
			return result, err
		}
	}
	return result, nil
}

// expiry is when e stops counting.
func (g *Greylister) expiry(e entry) time.Time {
	if e.state == stateGrey {
		return e.first.Add(g.opts.GreyExpire)
	}
	t := e.last.Add(g.opts.WhiteExpire)
	if timeout := e.first.Add(g.opts.WhiteTimeout); timeout.Before(t) {
		t = timeout
	}
	return t
}

// expire removes the entries expired by now, using the expiry index.
func (g *Greylister) expire(now time.Time) error {
	upper := expiryKey(now, "")
	iter, err := g.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixExpiry}, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("greylist: expire: %w", err)
	}
	b := g.db.NewBatch()
	defer b.Close()
	removed := 0
	for iter.First(); iter.Valid(); iter.Next() {
		k := iter.Key()
		b.Delete(k, nil)
		b.Delete(entryKey(string(k[1+8:])), nil)
		removed++
	}
	if err := errors.Join(iter.Error(), iter.Close()); err != nil {
		return fmt.Errorf("greylist: expire: %w", err)
	}
	if err := b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("greylist: expire: %w", err)
	}
	g.count -= removed
	return nil
}

func (g *Greylister) get(key string) (entry, bool, error) {
	v, closer, err := g.db.Get(entryKey(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return entry{}, false, nil
	}
	if err != nil {
		return entry{}, false, fmt.Errorf("greylist: read: %w", err)
	}
	defer closer.Close()
	if len(v) != entryLen {
		return entry{}, false, fmt.Errorf("greylist: entry %q has %d bytes, want %d", key, len(v), entryLen)
	}
	return entry{
		state: v[0],
		first: time.Unix(0, int64(binary.BigEndian.Uint64(v[1:9]))),
		last:  time.Unix(0, int64(binary.BigEndian.Uint64(v[9:17]))),
	}, true, nil
}

func entryKey(key string) []byte { return append([]byte{prefixEntry}, key...) }

// expiryKey orders the index by time: 'x', 8 bytes of big-endian
// nanoseconds, then the key.
func expiryKey(t time.Time, key string) []byte {
	b := make([]byte, 1+8, 1+8+len(key))
	b[0] = prefixExpiry
	binary.BigEndian.PutUint64(b[1:], uint64(t.UnixNano()))
	return append(b, key...)
}

func encode(e entry) []byte {
	b := make([]byte, entryLen)
	b[0] = e.state
	binary.BigEndian.PutUint64(b[1:9], uint64(e.first.UnixNano()))
	binary.BigEndian.PutUint64(b[9:17], uint64(e.last.UnixNano()))
	return b
}

// pebbleLogger sends Pebble's messages to slog instead of stderr.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	if p.l.Enabled(context.Background(), slog.LevelDebug) {
		p.l.Debug(fmt.Sprintf(format, args...), "component", "greylist")
	}
}

func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...), "component", "greylist")
}

// Fatalf is called by Pebble when it cannot go on; Pebble expects it not
// to return.
func (p pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	p.l.Error(msg, "component", "greylist", "fatal", true)
	panic("greylist: pebble: " + msg)
}
