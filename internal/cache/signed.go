package cache

import (
	"encoding/binary"

	"github.com/keygate/keygate/internal/policy"
)

// Versioned is something besides the snapshot that a cached resolution
// depends on, such as an issuer's key set: the entry is stale once its
// generation moves on.
type Versioned interface{ Generation() uint64 }

// SignedVerifier verifies a signed session token on a miss. refusal is the
// verifier's own code (0: verified), kept with a negative entry so that a
// hit answers the same; dep at depGen is what the result depends on.
type SignedVerifier interface {
	VerifyToken(snap *policy.Snapshot, token string, now int64) (p *policy.Principal, refusal uint8, dep Versioned, depGen uint64)
}

// ResolveSigned is Resolve for a signed token: on a miss the verifier
// checks it (one signature), and the result is cached by the token's
// digest k, tagged with the snapshot's generation and with dep's. A
// verified principal stays until evicted (its expiry is checked by the
// caller on every request); a refusal for the negative TTL. A hit costs
// what an opaque credential's does, plus one call of dep.Generation.
func (c *Cache) ResolveSigned(snap *policy.Snapshot, k Key, now int64, token string, v SignedVerifier) (*policy.Principal, uint8, Outcome) {
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
			return e.p, 0, Hit
		}
		n.negHits.Add(1)
		return nil, e.refusal, NegativeHit
	}
	n.misses.Add(1)
	p, refusal, dep, depGen := v.VerifyToken(snap, token, now)
	e := &entry{gen: snap.Generation, p: p, dep: dep, depGen: depGen, refusal: refusal}
	e.promoted.Store(now)
	if p == nil {
		e.until = now + c.negTTL
	}
	l.Add(k, e)
	return p, refusal, Miss
}
