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
	ReasonConflictingCredentials
	reasonCount
)

var reasonNames = [reasonCount]string{
	"allowed", "anonymous", "default_allow", "no_policy", "bad_path", "unknown_endpoint",
	"no_match", "missing_credential", "malformed_credential", "unknown_credential",
	"expired_credential", "disabled_credential", "group_denied", "org_missing",
	"org_denied", "tenant_mismatch", "conflicting_credentials",
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
	Status int // HTTP status: 200, 401, 403, or 503 with Unavailable
	Reason Reason
	// Shadowed is true when a shadow-mode endpoint would have denied: the
	// request is allowed and Reason says why it would not have been.
	Shadowed bool

	Snapshot *policy.Snapshot
	Endpoint *policy.Endpoint // nil when none matched
	Key      *policy.Principal
	Session  *policy.Principal
	Org      string // the organization the request targets, or the credential's own
	Tenant   string

	keyHeaders uint64 // bit i: Snapshot.APIKeyHeaders[i] carried a key, for stripping
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
	lastSeen atomic.Int64 // UnixNano of a recent decision, to the millisecond
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
	path, ok := NormalizePath(r.Path)
	if !ok {
		return d.deny(403, ReasonBadPath)
	}
	var e *policy.Endpoint
	if r.Endpoint != "" {
		if e = snap.Endpoint(r.Endpoint); e == nil {
			return d.deny(403, ReasonUnknownEndpoint)
		}
		if e.OrgFrom == policy.OrgFromPath {
			d.Org, _ = e.CapturePath(path)
		}
	} else {
		e, d.Org = snap.Match(r.Method, NormalizeHost(r.Host), path)
	}
	d.Endpoint = e
	if e == nil && !snap.DefaultAllow {
		return d.deny(403, ReasonNoMatch) // no credential can change this
	}

	var keyBad, sessBad Reason
	keyVal, keyHeaders, conflict := apiKey(snap, r.Headers)
	d.keyHeaders = keyHeaders
	switch {
	case conflict:
		keyBad = ReasonConflictingCredentials
	case keyHeaders != 0:
		d.Key, keyBad = a.resolve(snap, policy.KindAPIKey, keyVal, now)
	}
	if sv := r.Headers.Get(snap.SessionHeader); sv != "" {
		d.hasSess = true
		d.Session, sessBad = a.resolve(snap, policy.KindSession, trimSpace(sv), now)
	}

	if e == nil || e.Anonymous {
		// Credentials are optional here: a valid one identifies the caller,
		// an invalid one is ignored.
		if d.Key != nil && d.Session != nil && d.Key.Tenant != d.Session.Tenant {
			d.Key, d.Session = nil, nil
		}
		d.setTenantAndOrg()
		if e == nil {
			return d.allow(ReasonDefaultAllow)
		}
		return d.allow(ReasonAnonymous)
	}

	// A protected endpoint: every presented credential must verify.
	switch {
	case keyHeaders != 0 && d.Key == nil:
		return d.enforce(401, keyBad)
	case d.hasSess && d.Session == nil:
		return d.enforce(401, sessBad)
	case e.RequireKey && d.Key == nil, e.RequireSession && d.Session == nil:
		return d.enforce(401, ReasonMissingCredential)
	case d.Key != nil && d.Session != nil && d.Key.Tenant != d.Session.Tenant:
		return d.enforce(403, ReasonTenantMismatch)
	case !e.Allows(d.Key, d.Session):
		return d.enforce(403, ReasonGroupDenied)
	}
	if e.OrgFrom != policy.OrgNone {
		if e.OrgFrom == policy.OrgFromHeader {
			d.Org = trimSpace(r.Headers.Get(e.OrgHeader))
		}
		if d.Org == "" {
			return d.enforce(403, ReasonOrgMissing)
		}
		if !reaches(snap, d.Key, d.Org) || !reaches(snap, d.Session, d.Org) {
			return d.enforce(403, ReasonOrgDenied)
		}
	}
	d.setTenantAndOrg()
	return d.allow(ReasonAllowed)
}

// resolve verifies one credential: format, digest lookup through the cache,
// then revocation and expiry on every request.
func (a *Authorizer) resolve(snap *policy.Snapshot, kind policy.Kind, value string, now int64) (*policy.Principal, Reason) {
	id, ours, valid := apikey.Check(value)
	if ours && !valid {
		return nil, ReasonMalformedCredential
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

// apiKey reads the API key from every configured header that carries one.
// headers has bit i set when APIKeyHeaders[i] did; two different keys are a
// conflict: keygate will not pick one and let the other through unverified.
func apiKey(snap *policy.Snapshot, h Headers) (value string, headers uint64, conflict bool) {
	for i, name := range snap.APIKeyHeaders {
		v := h.Get(name)
		if v == "" {
			continue
		}
		if name == "authorization" {
			tok, ok := bearerToken(v)
			if !ok {
				continue // another scheme (Basic, ...) is not ours
			}
			v = tok
		} else if v = trimSpace(v); v == "" {
			continue
		}
		if headers != 0 && v != value {
			conflict = true
		}
		if headers == 0 {
			value = v
		}
		headers |= 1 << uint(i)
	}
	return value, headers, conflict
}

func (d *Decision) setTenantAndOrg() {
	switch {
	case d.Key != nil:
		d.Tenant = d.Key.Tenant
	case d.Session != nil:
		d.Tenant = d.Session.Tenant
	}
	if d.Org == "" || d.Endpoint == nil || d.Endpoint.OrgFrom == policy.OrgNone {
		d.Org = ""
		if d.Session != nil && d.Session.Org != "" {
			d.Org = d.Session.Org
		} else if d.Key != nil {
			d.Org = d.Key.Org
		}
	}
}

func (d Decision) allow(r Reason) Decision {
	d.Result, d.Status, d.Reason = Allow, 200, r
	return d
}

func (d Decision) deny(status int, r Reason) Decision {
	d.Result, d.Status, d.Reason = Deny, status, r
	d.Key, d.Session, d.Org, d.Tenant = nil, nil, "", ""
	return d
}

// enforce denies, unless the endpoint is in shadow mode: then the request is
// allowed and the decision records what would have happened.
func (d Decision) enforce(status int, r Reason) Decision {
	if d.Endpoint != nil && d.Endpoint.Shadow {
		// Only verified credentials are in d, so no unverified identity
		// reaches the upstream.
		d.Shadowed = true
		d.setTenantAndOrg()
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
