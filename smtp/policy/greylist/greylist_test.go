package greylist

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

type clock struct{ now time.Time }

func (c *clock) Now() time.Time          { return c.now }
func (c *clock) Advance(d time.Duration) { c.now = c.now.Add(d) }

func open(t *testing.T, dir string, c *clock, mod func(*Options)) *Greylister {
	t.Helper()
	opts := Options{Dir: dir, Now: c.Now}
	if mod != nil {
		mod(&opts)
	}
	g, err := Open(opts)
	require.NoError(t, err)
	return g
}

func check(t *testing.T, g *Greylister, key string) Result {
	t.Helper()
	r, err := g.Check(key)
	require.NoError(t, err)
	return r
}

func TestStates(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g := open(t, t.TempDir(), c, nil)
	defer g.Close()

	require.Equal(t, Greylisted, check(t, g, "a"), "unknown")
	c.Advance(time.Minute)
	require.Equal(t, Greylisted, check(t, g, "a"), "before grey_wait")
	c.Advance(4*time.Minute + time.Second)
	require.Equal(t, Pass, check(t, g, "a"), "after grey_wait: whitelisted")
	c.Advance(time.Hour)
	require.Equal(t, Pass, check(t, g, "a"))

	// A greylisted entry that does not come back within grey_expire is
	// forgotten.
	require.Equal(t, Greylisted, check(t, g, "b"))
	c.Advance(49 * time.Hour)
	require.Equal(t, Greylisted, check(t, g, "b"), "grey_expire passed: unknown again")
	c.Advance(6 * time.Minute)
	require.Equal(t, Pass, check(t, g, "b"))

	// white_expire: unused for too long.
	c.Advance(37 * 24 * time.Hour)
	require.Equal(t, Greylisted, check(t, g, "b"), "white_expire passed")

	// white_timeout: used every day, still reconfirmed after 90 days.
	require.Equal(t, Greylisted, check(t, g, "c"))
	c.Advance(10 * time.Minute)
	require.Equal(t, Pass, check(t, g, "c"))
	for day := 1; day < 90; day++ {
		c.Advance(24 * time.Hour)
		require.Equal(t, Pass, check(t, g, "c"), "day %d", day)
	}
	c.Advance(24 * time.Hour)
	require.Equal(t, Greylisted, check(t, g, "c"), "white_timeout passed")
}

func TestPersistenceAndExpiry(t *testing.T) {
	dir := t.TempDir()
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g := open(t, dir, c, func(o *Options) { o.ExpireLimit = 5 })
	for i := 0; i < 5; i++ {
		check(t, g, fmt.Sprint("k", i))
	}
	require.Equal(t, 5, g.Len())
	require.NoError(t, g.Close())

	g = open(t, dir, c, func(o *Options) { o.ExpireLimit = 5 })
	defer g.Close()
	require.Equal(t, 5, g.Len(), "entries survive a restart")
	c.Advance(10 * time.Minute)
	require.Equal(t, Pass, check(t, g, "k0"), "the state survived too")

	// Past grey_expire the other four are expired; the sixth entry goes
	// over the limit and the expired ones are removed.
	c.Advance(49 * time.Hour)
	check(t, g, "new")
	require.Equal(t, 2, g.Len(), "k0 (white) and new stay")
}

func TestKeys(t *testing.T) {
	c := &clock{now: time.Unix(0, 0)}
	g := open(t, t.TempDir(), c, func(o *Options) { o.Netmask = 0xFFFFFF00 })
	defer g.Close()
	require.Equal(t, "127.0.0.0", g.ClientKey(netip.MustParseAddr("127.0.0.5")))
	require.Equal(t, g.ClientKey(netip.MustParseAddr("127.0.0.5")), g.ClientKey(netip.MustParseAddr("::ffff:127.0.0.9")))
	require.Equal(t, "2001:db8:1:2::/64", g.ClientKey(netip.MustParseAddr("2001:db8:1:2:3::4")))
	require.Equal(t, "127.0.0.0\x00a@b\x00c@d", g.TupleKey(netip.MustParseAddr("127.0.0.1"), "a@b", "c@d"))

	require.Equal(t, Greylisted, check(t, g, g.ClientKey(netip.MustParseAddr("127.0.0.5"))))
	c.Advance(6 * time.Minute)
	require.Equal(t, Pass, check(t, g, g.ClientKey(netip.MustParseAddr("127.0.0.200"))), "same /24 under the netmask")
	_, err := Open(Options{})
	require.Error(t, err)
}

// A check after Close fails with ErrClosed instead of reaching Pebble
// (whose closed DB panics): smxd closes the database at stop, after its
// SMTP servers.
func TestCheckAfterClose(t *testing.T) {
	c := &clock{now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	g := open(t, t.TempDir(), c, nil)
	require.Equal(t, Greylisted, check(t, g, "a"))
	require.NoError(t, g.Close())
	_, err := g.Check("a")
	require.ErrorIs(t, err, ErrClosed)
	require.NoError(t, g.Close(), "a second Close does nothing")
}
