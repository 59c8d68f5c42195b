// Package cache is the resolution LRU in front of a policy snapshot. It maps
// the SHA-256 digest of a presented credential (never the credential) to the
// principal it resolved to, or to "unknown" for a short time.
//
// Every entry carries the generation of the snapshot it was resolved
// against; an entry from another generation is a miss. So a revocation takes
// effect on the very next request after the new snapshot is published, however
// warm the cache: the cache can make a lookup cheaper, never staler.
package cache

import (
	"fmt"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/keygate/keygate/internal/policy"
)

// Key identifies a presented credential.
type Key struct {
	Kind   policy.Kind
	Digest policy.Digest
}

type entry struct {
	gen      uint64
	p        *policy.Principal // nil: unknown
	negUntil int64             // UnixNano; for unknown entries
}

// Cache is safe for concurrent use.
type Cache struct {
	lru    atomic.Pointer[lru.Cache[Key, entry]]
	size   int
	negTTL int64

	hits, misses, negHits, evictions atomic.Uint64
}

// Defaults for New.
const (
	DefaultSize        = 100_000
	DefaultNegativeTTL = 10 * time.Second
)

// New returns a cache of at most size entries; unknown credentials are
// remembered for negativeTTL (within one snapshot generation).
func New(size int, negativeTTL time.Duration) (*Cache, error) {
	c := &Cache{size: size, negTTL: int64(negativeTTL)}
	l, err := c.newLRU()
	if err != nil {
		return nil, fmt.Errorf("credential cache of size %d: %w", size, err)
	}
	c.lru.Store(l)
	return c, nil
}

func (c *Cache) newLRU() (*lru.Cache[Key, entry], error) {
	return lru.NewWithEvict(c.size, func(Key, entry) { c.evictions.Add(1) })
}

// Reset starts an empty cache. Call it when a new snapshot is published:
// entries of older generations would never hit again, and they would keep
// the old snapshot's principals alive. The swap takes no lock that Resolve
// waits on.
func (c *Cache) Reset() {
	if l, err := c.newLRU(); err == nil {
		c.lru.Store(l)
	}
}

// Outcome says how a resolution was answered.
type Outcome uint8

const (
	Hit         Outcome = iota + 1 // a principal from the cache
	NegativeHit                    // "unknown" from the cache
	Miss                           // looked up in the snapshot
)

// Resolve returns the principal for k in snap, or nil when the snapshot does
// not know the credential. now is UnixNano. It does not check expiry or
// revocation: the caller does that on every request from the principal.
func (c *Cache) Resolve(snap *policy.Snapshot, k Key, now int64) (*policy.Principal, Outcome) {
	l := c.lru.Load()
	if e, ok := l.Get(k); ok && e.gen == snap.Generation {
		if e.p != nil {
			c.hits.Add(1)
			return e.p, Hit
		}
		if now < e.negUntil {
			c.negHits.Add(1)
			return nil, NegativeHit
		}
	}
	c.misses.Add(1)
	p := snap.Lookup(k.Kind, k.Digest)
	e := entry{gen: snap.Generation, p: p}
	if p == nil {
		e.negUntil = now + c.negTTL
	}
	l.Add(k, e)
	return p, Miss
}

// Stats are the cache's counters since start.
type Stats struct {
	Hits, NegativeHits, Misses, Evictions uint64
	Entries                               int
}

// Stats returns the counters.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits: c.hits.Load(), NegativeHits: c.negHits.Load(), Misses: c.misses.Load(),
		Evictions: c.evictions.Load(), Entries: c.lru.Load().Len(),
	}
}
