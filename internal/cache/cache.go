// Package cache is the resolution LRU in front of a policy snapshot. It maps
// the SHA-256 digest of a presented credential (never the credential) to the
// principal it resolved to, or to "unknown" for a short time.
//
// Every entry carries the generation of the snapshot it was resolved
// against; an entry from another generation is a miss. So a revocation takes
// effect on the very next request after the new snapshot is published, however
// warm the cache: the cache can make a lookup cheaper, never staler.
//
// The cache is sharded by digest: a power-of-two number of independent LRUs,
// each with its own lock and its own counters on their own cache line, so
// that cores resolving different credentials do not wait on one another nor
// bounce one line between them. A digest is uniformly distributed, so its
// low bits pick the shard. A hit takes only its shard's read lock, which
// does not make readers wait for one another (see promoteEvery).
package cache

import (
	"encoding/binary"
	"fmt"
	"runtime"
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
	until    int64             // UnixNano the entry is good until: unknown entries and store resolutions; 0 for ever
	promoted atomic.Int64      // UnixNano the entry was last made most recent

	// Signed tokens only (signed.go): what else the resolution depends on,
	// at which generation, and why an unverified one was refused.
	dep     Versioned
	depGen  uint64
	refusal uint8
}

// promoteEvery is how often a hit moves its entry to the front of its LRU.
// A hit reads with Peek, under the shard's read lock, which readers share;
// only a hit whose entry has not been promoted for this long takes the write
// lock to promote it. So a credential presented on every request is locked
// for at most once per promoteEvery, and recency is kept to within it: an
// entry used within the last promoteEvery may be evicted only after every
// entry of its shard was added or promoted since.
const promoteEvery = int64(time.Second)

// counters are one shard's. The padding keeps two shards' counters off one
// cache line (128 bytes: the line and the one the prefetcher pairs with it).
type counters struct {
	hits, misses, negHits, evictions atomic.Uint64
	_                                [128 - 4*8]byte
}

// lrus is one generation of shards: Reset swaps them all at once.
type lrus []*lru.Cache[Key, *entry]

// Cache is safe for concurrent use.
type Cache struct {
	lrus   atomic.Pointer[lrus]
	counts []counters // per shard; they outlive Reset
	mask   uint64     // shards - 1
	size   int
	negTTL int64

	stored  storeEpoch    // store resolutions older than it are stale (stored.go)
	forgets atomic.Uint64 // Forget calls, so that a lookup racing one is not cached
}

// Defaults for New.
const (
	DefaultSize        = 100_000
	DefaultNegativeTTL = 10 * time.Second
)

// minShardSize keeps shards large enough that sharding does not change
// which entries an LRU of the whole size would keep, to within noise: a
// small cache is one shard, and bounded exactly.
const minShardSize = 1024

// shardsFor is a power of two: four per P (so that two cores rarely pick
// the same shard at once), fewer when size would make shards smaller than
// minShardSize, at least one.
func shardsFor(size, procs int) int {
	n := 1
	for n < 4*procs && (2*n)*minShardSize <= size {
		n *= 2
	}
	return n
}

// New returns a cache of at most size entries; unknown credentials are
// remembered for negativeTTL (within one snapshot generation).
func New(size int, negativeTTL time.Duration) (*Cache, error) {
	n := shardsFor(size, runtime.GOMAXPROCS(0))
	c := &Cache{counts: make([]counters, n), mask: uint64(n - 1), size: size, negTTL: int64(negativeTTL)}
	l, err := c.newLRUs()
	if err != nil {
		return nil, fmt.Errorf("credential cache of size %d: %w", size, err)
	}
	c.lrus.Store(l)
	return c, nil
}

// newLRUs splits size between the shards: the total is size exactly.
func (c *Cache) newLRUs() (*lrus, error) {
	n := len(c.counts)
	l := make(lrus, n)
	for i := range l {
		size := c.size / n
		if i < c.size%n {
			size++
		}
		ev := &c.counts[i].evictions
		var err error
		if l[i], err = lru.NewWithEvict(size, func(Key, *entry) { ev.Add(1) }); err != nil {
			return nil, err
		}
	}
	return &l, nil
}

// Reset starts an empty cache. Call it when a new snapshot is published:
// entries of older generations would never hit again, and they would keep
// the old snapshot's principals alive. The swap takes no lock that Resolve
// waits on.
func (c *Cache) Reset() {
	if l, err := c.newLRUs(); err == nil {
		c.lrus.Store(l)
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
	l, e, out := c.lookup(snap, k, now)
	if out != Miss {
		return e.p, out
	}
	p := snap.Lookup(k.Kind, k.Digest)
	e = &entry{gen: snap.Generation, p: p}
	if p == nil {
		e.until = now + c.negTTL
	}
	add(l, k, e, now)
	return p, Miss
}

// lookup finds k's shard and, when the entry there is still good for snap
// at now (same generation, its dependency unchanged, not past its until),
// returns it as a Hit or NegativeHit, promoting it in its LRU at most once
// per promoteEvery; else a Miss. Every outcome is counted. The resolvers
// share it, so that what makes an entry stale is written once.
func (c *Cache) lookup(snap *policy.Snapshot, k Key, now int64) (*lru.Cache[Key, *entry], *entry, Outcome) {
	i := binary.LittleEndian.Uint64(k.Digest[:8]) & c.mask
	l, n := (*c.lrus.Load())[i], &c.counts[i]
	if e, ok := l.Peek(k); ok && e.gen == snap.Generation && (e.dep == nil || e.dep.Generation() == e.depGen) &&
		(e.until == 0 || now < e.until) {
		if now-e.promoted.Load() >= promoteEvery {
			e.promoted.Store(now)
			l.Get(k)
		}
		if e.p != nil {
			n.hits.Add(1)
			return l, e, Hit
		}
		n.negHits.Add(1)
		return l, e, NegativeHit
	}
	n.misses.Add(1)
	return l, nil, Miss
}

// add caches e for k, as fresh as now.
func add(l *lru.Cache[Key, *entry], k Key, e *entry, now int64) {
	e.promoted.Store(now)
	l.Add(k, e)
}

// Stats are the cache's counters since start.
type Stats struct {
	Hits, NegativeHits, Misses, Evictions uint64
	Entries                               int
}

// Stats returns the counters, summed over the shards.
func (c *Cache) Stats() Stats {
	var st Stats
	for i := range c.counts {
		n := &c.counts[i]
		st.Hits += n.hits.Load()
		st.NegativeHits += n.negHits.Load()
		st.Misses += n.misses.Load()
		st.Evictions += n.evictions.Load()
	}
	for _, l := range *c.lrus.Load() {
		st.Entries += l.Len()
	}
	return st
}
