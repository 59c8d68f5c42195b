package authz

import (
	"strings"

	"github.com/keygate/keygate/internal/policy"
)

// Authenticate verifies the credentials a request presents without
// matching an endpoint: the management API's callers, who must prove who
// they are before the API's own rules decide what they may do. It answers
// as a protected endpoint would: none presented is 401 missing_credential,
// one that does not verify 401 with its reason, credentials of two tenants
// or organizations 403.
func (a *Authorizer) Authenticate(h Headers) Decision {
	now := a.now().UnixNano()
	snap := a.snaps.Current()
	if snap == nil {
		return Decision{Result: Unavailable, Status: 503, Reason: ReasonNoPolicy}
	}
	if h == nil {
		h = MapHeaders(nil)
	}
	d := Decision{Snapshot: snap}
	keyBad, sessBad := a.credentials(&d, snap, h, now)
	switch {
	case keyBad != ReasonAllowed:
		return d.deny(401, keyBad)
	case sessBad != ReasonAllowed:
		return d.deny(credentialStatus(sessBad), sessBad)
	case d.Key == nil && d.Session == nil:
		return d.deny(401, ReasonMissingCredential)
	case d.Key != nil && d.Session != nil && d.Key.Tenant != d.Session.Tenant:
		return d.deny(403, ReasonTenantMismatch)
	case d.disagree():
		return d.deny(403, ReasonOrgMismatch)
	}
	d.identify("")
	return d.allow(ReasonAllowed)
}

// Policy is the snapshot in force (nil before the first load), for callers
// that need its settings before there is a credential to authenticate.
func (a *Authorizer) Policy() *policy.Snapshot { return a.snaps.Current() }

// cookieValue finds the cookie name in a Cookie header without allocating
// (RFC 6265 section 4.2.1: "name=value" pairs separated by "; "). A quoted
// value is unquoted; a name given twice yields the first.
func cookieValue(header, name string) string {
	for header != "" {
		var pair string
		pair, header, _ = strings.Cut(header, ";")
		pair = trimSpace(pair)
		n, v, ok := strings.Cut(pair, "=")
		if !ok || trimSpace(n) != name {
			continue
		}
		v = trimSpace(v)
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = v[1 : len(v)-1]
		}
		return v
	}
	return ""
}
