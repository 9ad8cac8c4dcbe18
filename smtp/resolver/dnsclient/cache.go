package dnsclient

import (
	"sync"
	"time"
)

type cacheKey struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	answer answer
	target string // CNAME target to ask next, if any
}

// cache holds answers until their TTL runs out. Temporary failures are
// never cached. It is bounded: when full, expired entries are dropped, and
// if none has expired an arbitrary one goes (Go's map iteration order).
type cache struct {
	mu      sync.Mutex
	max     int
	entries map[cacheKey]cacheEntry
}

func newCache(max int) *cache {
	return &cache{max: max, entries: make(map[cacheKey]cacheEntry)}
}

func (c *cache) get(k cacheKey, now time.Time) (cacheEntry, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return cacheEntry{}, false
	}
	if !now.Before(e.answer.expires) {
		delete(c.entries, k)
		return cacheEntry{}, false
	}
	return e, true
}

func (c *cache) put(k cacheKey, e cacheEntry, now time.Time) {
	if !now.Before(e.answer.expires) {
		return // TTL 0: do not cache
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.max {
		for key, old := range c.entries {
			if !now.Before(old.answer.expires) {
				delete(c.entries, key)
			}
		}
		for key := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, key)
		}
	}
	c.entries[k] = e
}

// Flush empties the cache.
func (c *Client) Flush() {
	if c.cache == nil {
		return
	}
	c.cache.mu.Lock()
	clear(c.cache.entries)
	c.cache.mu.Unlock()
}
