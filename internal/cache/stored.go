package cache

import (
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/policy"
)

// StoreResolver looks up, on a miss, a credential that the snapshot does
// not list in a store shared by every replica (the Redis session store).
// cacheFor is how long the answer, found or not, may be cached: 0 not at
// all. An error (the store did not answer) is never cached.
type StoreResolver interface {
	ResolveStored(snap *policy.Snapshot, k Key) (p *policy.Principal, cacheFor time.Duration, err error)
}

// storeEpoch counts ForgetStored calls: an entry from the store remembers
// the epoch it was resolved in and is stale once it moves on.
type storeEpoch struct{ n atomic.Uint64 }

func (e *storeEpoch) Generation() uint64 { return e.n.Load() }

// ResolveStored is Resolve for a credential that may live in a shared
// store: the snapshot first, then, when it does not list k, r. A store
// resolution is cached for as long as r says, until Forget(k) or
// ForgetStored, whichever comes first; the snapshot's generation still
// tags it, as every entry. A hit costs what Resolve's does, plus one call
// of the epoch's Generation.
func (c *Cache) ResolveStored(snap *policy.Snapshot, k Key, now int64, r StoreResolver) (*policy.Principal, Outcome, error) {
	l, e, out := c.lookup(snap, k, now)
	if out != Miss {
		return e.p, out, nil
	}
	if p := snap.Lookup(k.Kind, k.Digest); p != nil {
		add(l, k, &entry{gen: snap.Generation, p: p}, now)
		return p, Miss, nil
	}
	// Read before the lookup: an invalidation that arrives while it is in
	// flight may concern the answer, which must then not be cached.
	epoch, forgets := c.stored.Generation(), c.forgets.Load()
	p, cacheFor, err := r.ResolveStored(snap, k)
	if err != nil || cacheFor <= 0 || c.forgets.Load() != forgets {
		return p, Miss, err
	}
	add(l, k, &entry{gen: snap.Generation, p: p, dep: &c.stored, depGen: epoch, until: now + int64(cacheFor)}, now)
	return p, Miss, nil
}

// Forget drops what the cache knows of k: the store deleted it.
func (c *Cache) Forget(k Key) {
	c.forgets.Add(1)
	i := binary.LittleEndian.Uint64(k.Digest[:8]) & c.mask
	(*c.lrus.Load())[i].Remove(k)
}

// ForgetStored makes every cached store resolution stale at once, without
// a lock: the store's invalidations may have been missed (its connection
// dropped), so none of them can be trusted.
func (c *Cache) ForgetStored() {
	c.forgets.Add(1)
	c.stored.n.Add(1)
}
