package cache

import (
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
	l, e, out := c.lookup(snap, k, now)
	if out != Miss {
		return e.p, e.refusal, out
	}
	p, refusal, dep, depGen := v.VerifyToken(snap, token, now)
	e = &entry{gen: snap.Generation, p: p, dep: dep, depGen: depGen, refusal: refusal}
	if p == nil {
		e.until = now + c.negTTL
	}
	add(l, k, e, now)
	return p, refusal, Miss
}
