package authz

import (
	"context"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
)

// SessionStore keeps server-side sessions that the policy does not list:
// the Redis session store (serve --session-store). It produces data; the
// principal is made against the snapshot in force, as for a signed token.
type SessionStore interface {
	// Lookup returns the session whose token has digest d, or nil when the
	// store does not know it, and how long the answer may be cached. An
	// error means the store could not answer (it bounds its own wait).
	Lookup(ctx context.Context, d policy.Digest) (c *policy.SignedClaims, cacheFor time.Duration, err error)
}

// WithSessionStore resolves session tokens in keygate's format that the
// policy does not list in s, on cache misses only (one round trip). While
// s cannot answer, such a session is denied 503 with reason
// session_store_unavailable: never allowed, and API keys and signed
// sessions are decided as ever.
func WithSessionStore(s SessionStore) Option {
	return func(a *Authorizer) {
		if s != nil {
			a.stored = storeResolver{s}
		}
	}
}

// storeResolver adapts a SessionStore to the cache's misses.
type storeResolver struct{ s SessionStore }

func (r storeResolver) ResolveStored(snap *policy.Snapshot, k cache.Key) (*policy.Principal, time.Duration, error) {
	c, cacheFor, err := r.s.Lookup(context.Background(), k.Digest)
	if err != nil || c == nil {
		return nil, cacheFor, err
	}
	// The policy places it as it does a signed token: its tenant and org
	// declared, undeclared groups dropped, revoked_sessions and
	// sessions_not_before honoured.
	p, err := snap.SignedSession(*c)
	if err != nil {
		return nil, cacheFor, nil
	}
	return p, cacheFor, nil
}

// resolveStored resolves a keygate-format session through the cache: the
// policy first, then the store. id is the one the token embeds.
func (a *Authorizer) resolveStored(snap *policy.Snapshot, value, id string, now int64) (*policy.Principal, Reason) {
	p, _, err := a.cache.ResolveStored(snap, cache.Key{Kind: policy.KindSession, Digest: apikey.Digest(value)}, now, a.stored)
	switch {
	case err != nil:
		return nil, ReasonSessionStoreUnavailable
	case p == nil, id != p.ID:
		return nil, ReasonUnknownCredential
	case p.Disabled:
		return nil, ReasonDisabledCredential
	case p.ExpiredAt(now):
		return nil, ReasonExpiredCredential
	}
	return p, ReasonAllowed
}

// credentialStatus is the status of a presented credential that did not
// verify: 401, or 503 when the store that alone could verify it did not
// answer (Envoy sees PERMISSION_DENIED either way).
func credentialStatus(r Reason) int {
	if r == ReasonSessionStoreUnavailable {
		return 503
	}
	return 401
}

// storeBody is the error and message of a session-store denial's body.
func (d *Decision) storeBody() (code, message string, ok bool) {
	if d.Reason != ReasonSessionStoreUnavailable {
		return "", "", false
	}
	return "unavailable", "the session could not be verified: its store cannot be reached; try again shortly", true
}
