// Package authz decides ext_authz requests: request view, endpoint match,
// credential resolution through the cache, rules, and a Decision value that
// the gRPC and HTTP adapters turn into answers. It does not log and takes no
// lock a reload holds.
package authz

import (
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/session"
)

// Result is the outcome class of a decision.
type Result uint8

const (
	Deny        Result = iota // 401 or 403
	Allow                     // 200
	Unavailable               // no policy loaded yet
)

// Outcome names what happened, for logs and metric labels: allow, deny,
// shadow_deny (a shadow-mode endpoint would have denied; allowed) or
// unavailable.
func (d *Decision) Outcome() string {
	switch {
	case d.Result == Deny:
		return "deny"
	case d.Result == Unavailable:
		return "unavailable"
	case d.Shadowed:
		return "shadow_deny"
	}
	return "allow"
}

// Reason says why; the values are a closed set, fit for metric labels.
type Reason uint8

const (
	ReasonAllowed Reason = iota
	ReasonAnonymous
	ReasonDefaultAllow
	ReasonNoPolicy
	ReasonBadPath
	ReasonBadMethod        // not an RFC 9110 token, or none
	ReasonMalformedRequest // the adapter could not read the request
	ReasonUnknownEndpoint
	ReasonNoMatch
	ReasonMissingCredential
	ReasonMalformedCredential
	ReasonUnknownCredential
	ReasonExpiredCredential
	ReasonDisabledCredential
	ReasonGroupDenied
	ReasonOrgMissing
	ReasonOrgDenied
	ReasonTenantMismatch
	ReasonOrgMismatch // a key and a session of two organizations
	ReasonConflictingCredentials
	ReasonRateLimited             // over a rate limit: 429
	ReasonRateLimitUnavailable    // the rate-limit store did not answer and --ratelimit-failure is closed: 503
	ReasonSessionStoreUnavailable // a session only the session store could verify, and it did not answer: 503
	reasonCount
)

var reasonNames = [reasonCount]string{
	"allowed", "anonymous", "default_allow", "no_policy", "bad_path", "bad_method",
	"malformed_request",
	"unknown_endpoint", "no_match", "missing_credential", "malformed_credential",
	"unknown_credential", "expired_credential", "disabled_credential", "group_denied",
	"org_missing", "org_denied", "tenant_mismatch", "org_mismatch", "conflicting_credentials",
	"rate_limited", "ratelimit_unavailable", "session_store_unavailable",
}

func (r Reason) String() string {
	if r < reasonCount {
		return reasonNames[r]
	}
	return "unknown"
}

// Decision is the answer to one request, as plain data.
type Decision struct {
	Result Result
	Status int // HTTP status: 200, 401, 403, 429, or 503 (Unavailable, or the rate-limit or session store)
	Reason Reason
	// Shadowed is true when a shadow-mode endpoint would have denied: the
	// request is allowed and Reason says why it would not have been.
	Shadowed bool

	Snapshot *policy.Snapshot
	Endpoint *policy.Endpoint // nil when none matched
	// Key and Session are the credentials that verified, nil otherwise.
	// A denial keeps them for the decision log; only an allowed decision
	// names anyone upstream (IdentityHeaders).
	Key     *policy.Principal
	Session *policy.Principal
	Org     string // the organization the request targets once checked, else the credentials' own
	Tenant  string // the verified credentials' tenant
	// RateLimit is the rate limit a 429 exceeded, or on an allow the one
	// that applied (ratelimit.go).
	RateLimit RateLimitState

	// SessionFromCookie: the session came from settings.session_cookie, not
	// the session header (the management API's CSRF rule reads it).
	SessionFromCookie bool

	keyHeaders uint64 // bit i: Snapshot.APIKeyHeaders[i] was present in a form keygate reads, for stripping
	hasSess    bool   // a session header was present
}

// Snapshots gives the policy in force; source.Store implements it.
type Snapshots interface {
	Current() *policy.Snapshot
}

// Authorizer decides requests against the current snapshot.
type Authorizer struct {
	snaps    Snapshots
	cache    *cache.Cache
	now      func() time.Time
	limits   limits               // counts allowed requests against the policy's rate limits (ratelimit.go)
	lastSeen atomic.Int64         // UnixNano of a recent decision, to the millisecond
	signed   cache.SignedVerifier // verifies signed session tokens; nil: they are unknown
	stored   cache.StoreResolver  // resolves sessions the policy does not list (storesession.go); nil: none
}

// busyWindow is how recent a decision makes the Authorizer busy.
const busyWindow = 100 * time.Millisecond

// Busy reports whether requests were decided in the last 100 ms: reloads
// give way to requests while it does.
func (a *Authorizer) Busy() bool {
	return a.now().UnixNano()-a.lastSeen.Load() < int64(busyWindow)
}

// Option configures an Authorizer.
type Option func(*Authorizer)

// WithClock sets the clock used for expiry, for tests.
func WithClock(now func() time.Time) Option { return func(a *Authorizer) { a.now = now } }

// New returns an Authorizer reading snapshots from snaps through c.
func New(snaps Snapshots, c *cache.Cache, opts ...Option) *Authorizer {
	a := &Authorizer{snaps: snaps, cache: c, now: time.Now}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Decide answers one request.
func (a *Authorizer) Decide(r *Request) Decision {
	now := a.now().UnixNano()
	if now-a.lastSeen.Load() > int64(time.Millisecond) { // a store on every request would contend across cores
		a.lastSeen.Store(now)
	}
	snap := a.snaps.Current()
	if snap == nil {
		return Decision{Result: Unavailable, Status: 503, Reason: ReasonNoPolicy}
	}
	d := Decision{Snapshot: snap}
	if r.Headers == nil {
		r.Headers = MapHeaders(nil) // no headers: every lookup is empty
	}
	if r.Malformed {
		return d.deny(403, ReasonMalformedRequest)
	}
	// Credentials first, so that every denial knows who verified, for the
	// decision log.
	keyBad, sessBad := a.credentials(&d, snap, r.Headers, now)

	path, ok := NormalizePath(r.Path)
	if !ok {
		return d.deny(403, ReasonBadPath)
	}
	method, ok := canonicalMethod(r.Method)
	if !ok {
		return d.deny(403, ReasonBadMethod)
	}
	var e *policy.Endpoint
	var target string // the organization the request names: the client's choice until checked
	if r.Endpoint != "" {
		if e = snap.Endpoint(r.Endpoint); e == nil {
			return d.deny(403, ReasonUnknownEndpoint)
		}
		if e.OrgFrom == policy.OrgFromPath {
			target, _ = e.CapturePath(path)
		}
	} else {
		e, target = snap.Match(method, NormalizeHost(r.Host), path)
	}
	d.Endpoint = e
	if e == nil && !snap.DefaultAllow {
		return d.deny(403, ReasonNoMatch) // no credential can change this
	}

	if e == nil || e.Anonymous {
		// Credentials are optional here: a valid one identifies the caller,
		// an invalid one is ignored, and two that disagree identify no one.
		if d.disagree() {
			d.Key, d.Session = nil, nil
		}
		d.identify("")
		if e == nil {
			return d.allow(ReasonDefaultAllow)
		}
		return d.allow(ReasonAnonymous)
	}

	// A protected endpoint: every presented credential must verify, and
	// together they must be one tenant's and at most one organization's.
	switch {
	case keyBad != ReasonAllowed:
		return d.enforce(401, keyBad)
	case sessBad != ReasonAllowed:
		return d.enforce(credentialStatus(sessBad), sessBad) // 401, or 503 when the session store did not answer
	case e.RequireKey && d.Key == nil, e.RequireSession && d.Session == nil:
		return d.enforce(401, ReasonMissingCredential)
	case d.Key != nil && d.Session != nil && d.Key.Tenant != d.Session.Tenant:
		return d.enforce(403, ReasonTenantMismatch)
	case d.disagree():
		return d.enforce(403, ReasonOrgMismatch)
	case !e.Allows(d.Key, d.Session):
		return d.enforce(403, ReasonGroupDenied)
	}
	if e.OrgFrom != policy.OrgNone {
		if e.OrgFrom == policy.OrgFromHeader {
			target = trimSpace(r.Headers.Get(e.OrgHeader))
		}
		if target == "" {
			return d.enforce(403, ReasonOrgMissing)
		}
		if !reaches(snap, d.Key, target) || !reaches(snap, d.Session, target) {
			return d.enforce(403, ReasonOrgDenied)
		}
	}
	d.identify(target)
	// Counted last: a request denied for any other reason spends no budget.
	if r := a.rateLimit(&d, e, now); r != ReasonAllowed {
		return d.enforce(rateLimitStatus(r), r)
	}
	return d.allow(ReasonAllowed)
}

// credentials reads the API key and the session and verifies them into d.
// keyBad and sessBad say why one that was presented did not verify
// (ReasonAllowed: it verified, or none was presented).
func (a *Authorizer) credentials(d *Decision, snap *policy.Snapshot, h Headers, now int64) (keyBad, sessBad Reason) {
	var keyVal string
	keyVal, d.keyHeaders, keyBad = apiKey(snap, h)
	if keyBad == ReasonAllowed && keyVal != "" {
		d.Key, keyBad = a.resolve(snap, policy.KindAPIKey, keyVal, now)
	}
	sv := h.Get(snap.SessionHeader)
	if sv == "" && snap.SessionCookie != "" {
		sv = cookieValue(h.Get("cookie"), snap.SessionCookie)
		d.SessionFromCookie = sv != ""
	}
	if sv != "" {
		d.hasSess = true
		if sv = trimSpace(sv); sv == "" {
			sessBad = ReasonMalformedCredential
		} else {
			d.Session, sessBad = a.resolve(snap, policy.KindSession, sv, now)
		}
	}
	return keyBad, sessBad
}

// resolve verifies one credential: format, digest lookup through the cache,
// then revocation and expiry on every request.
func (a *Authorizer) resolve(snap *policy.Snapshot, kind policy.Kind, value string, now int64) (*policy.Principal, Reason) {
	if kind == policy.KindSession && session.IsJWT(value) {
		return a.resolveSigned(snap, value, now) // signed.go
	}
	id, ours, valid := apikey.Check(value)
	if ours && !valid {
		return nil, ReasonMalformedCredential
	}
	if kind == policy.KindSession && ours && a.stored != nil {
		return a.resolveStored(snap, value, id, now) // storesession.go
	}
	p, _ := a.cache.Resolve(snap, cache.Key{Kind: kind, Digest: apikey.Digest(value)}, now)
	switch {
	case p == nil, ours && id != p.ID:
		return nil, ReasonUnknownCredential
	case p.Disabled:
		return nil, ReasonDisabledCredential
	case p.ExpiredAt(now):
		return nil, ReasonExpiredCredential
	}
	return p, ReasonAllowed
}

// reaches reports whether a principal (if any) may act on org: an
// organization-level credential its own only, a tenant-level one every
// organization of its tenant.
func reaches(snap *policy.Snapshot, p *policy.Principal, org string) bool {
	if p == nil {
		return true
	}
	if p.Org != "" {
		return p.Org == org
	}
	return snap.TenantOf(org) == p.Tenant
}

// apiKey reads the API key from every configured header present. headers
// has bit i set when APIKeyHeaders[i] was present in a form keygate reads
// (every form but another Authorization scheme), so that it is stripped
// whether or not it verifies. bad is ReasonMalformedCredential when one does
// not parse, ReasonConflictingCredentials when two carry different keys:
// keygate will not pick one and let the other through unverified. value is
// the key when bad is ReasonAllowed.
func apiKey(snap *policy.Snapshot, h Headers) (value string, headers uint64, bad Reason) {
	malformed, conflict := false, false
	for i, name := range snap.APIKeyHeaders {
		v := h.Get(name)
		if v == "" {
			continue
		}
		if name == "authorization" {
			tok, form := bearerToken(v)
			if form == notBearer {
				continue // Basic and other schemes are the upstream's
			}
			malformed = malformed || form == bearerMalformed
			v = tok
		} else if v = trimSpace(v); v == "" {
			malformed = true
		}
		headers |= 1 << uint(i)
		switch {
		case v == "":
		case value == "":
			value = v
		case v != value:
			conflict = true
		}
	}
	switch {
	case malformed:
		return "", headers, ReasonMalformedCredential
	case conflict:
		return "", headers, ReasonConflictingCredentials
	}
	return value, headers, ReasonAllowed
}

// disagree reports whether a key and a session both verified but belong to
// two tenants, or to two organizations: no one identity can be named.
func (d *Decision) disagree() bool {
	k, s := d.Key, d.Session
	return k != nil && s != nil && (k.Tenant != s.Tenant || k.Org != "" && s.Org != "" && k.Org != s.Org)
}

// identify sets Tenant and Org from the verified credentials only. org is
// the organization the request targets once the endpoint's org rule has
// checked that they reach it; "" names the credentials' own (the session's,
// else the key's). Credentials of two tenants name neither tenant nor org,
// of two organizations no org.
func (d *Decision) identify(org string) {
	k, s := d.Key, d.Session
	d.Tenant, d.Org = "", ""
	switch {
	case k != nil && s != nil && k.Tenant != s.Tenant:
		return
	case k != nil:
		d.Tenant = k.Tenant
	case s != nil:
		d.Tenant = s.Tenant
	}
	switch {
	case org != "":
		d.Org = org
	case d.disagree():
	case s != nil && s.Org != "":
		d.Org = s.Org
	case k != nil:
		d.Org = k.Org
	}
}

func (d Decision) allow(r Reason) Decision {
	d.Result, d.Status, d.Reason = Allow, 200, r
	return d
}

// deny keeps the verified credentials for the decision log; a denial names
// no one upstream (IdentityHeaders is empty) nor in the metadata.
func (d Decision) deny(status int, r Reason) Decision {
	d.Result, d.Status, d.Reason = Deny, status, r
	d.identify("") // the credentials' own organization, never the one asked for
	return d
}

// enforce denies, unless the endpoint is in shadow mode: then the request is
// allowed and the decision records what would have happened. The upstream
// sees only what verified: the credentials' own organization, not the one
// the client asked for, and no one when the credentials disagree.
func (d Decision) enforce(status int, r Reason) Decision {
	if d.Endpoint != nil && d.Endpoint.Shadow {
		d.Shadowed = true
		if d.disagree() {
			d.Key, d.Session = nil, nil
		}
		d.identify("")
		d.Result, d.Status, d.Reason = Allow, 200, r
		return d
	}
	return d.deny(status, r)
}

func trimSpace(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
