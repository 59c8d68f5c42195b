package authz

import (
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/session"
)

// WithSessionVerifier verifies signed session tokens (a session value with
// exactly two dots) with v; without it they are unknown credentials.
func WithSessionVerifier(v cache.SignedVerifier) Option {
	return func(a *Authorizer) { a.signed = v }
}

// resolveSigned verifies a signed session token through the cache: on a
// hit, by its digest (the policy and the issuer's key set unchanged since);
// on a miss, by its signature. Revocation (a Disabled principal) and expiry
// are read on every request, as for listed credentials.
func (a *Authorizer) resolveSigned(snap *policy.Snapshot, token string, now int64) (*policy.Principal, Reason) {
	if len(token) > session.MaxTokenSize {
		return nil, ReasonMalformedCredential // not even hashed
	}
	if a.signed == nil {
		return nil, ReasonUnknownCredential
	}
	p, refusal, _ := a.cache.ResolveSigned(snap, cache.Key{Kind: policy.KindSession, Digest: session.Digest(token)}, now, token, a.signed)
	switch {
	case p == nil:
		return nil, signedRefusals[refusal]
	case p.Disabled:
		return nil, ReasonDisabledCredential
	case p.ExpiredAt(now):
		return nil, ReasonExpiredCredential
	}
	return p, ReasonAllowed
}

// signedRefusals maps the verifier's refusals onto reasons: every one is a
// 401 with the same generic body.
var signedRefusals = [...]Reason{
	session.Verified:  ReasonUnknownCredential, // no principal: cannot happen
	session.Malformed: ReasonMalformedCredential,
	session.Unknown:   ReasonUnknownCredential,
	session.Expired:   ReasonExpiredCredential,
	255:               ReasonUnknownCredential,
}
