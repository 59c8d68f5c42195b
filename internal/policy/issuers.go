package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

// DefaultSessionAlgorithms are the signature algorithms an issuer's tokens
// may use when its entry does not list them.
var DefaultSessionAlgorithms = []string{"RS256", "ES256", "EdDSA"}

// sessionAlgorithms are the asymmetric JWS algorithms keygate verifies.
// none and the HMAC algorithms are never accepted: with HS256 anyone who
// holds the verification key (a public key, for most issuers) could sign.
var sessionAlgorithms = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

// Issuer is a compiled session_issuers entry: plain data that the verifier
// (internal/session) reads. Read only.
type Issuer struct {
	Name       string
	Issuer     string
	Audiences  []string
	JWKSURL    string // "" when the keys are inline
	JWKS       []byte // the inline key set as JSON; nil with JWKSURL
	Algorithms []string
	Tenant     string // "" when the tenant claim says
	Claims     ClaimNames
	GroupsMap  map[string]string
	MaxTTL     time.Duration // 0: no bound beyond exp
}

// KeySource names where the issuer's keys come from, so that a verifier can
// keep the keys it fetched across snapshots whose entry reads the same ones.
func (i *Issuer) KeySource() string {
	if i.JWKSURL != "" {
		return i.Name + " url " + i.JWKSURL
	}
	sum := sha256.Sum256(i.JWKS)
	return i.Name + " inline " + hex.EncodeToString(sum[:8])
}

// signedSessions is what a snapshot knows about signed session tokens.
type signedSessions struct {
	issuers   []*Issuer
	byIss     map[string]*Issuer
	revoked   map[[2]string]struct{}  // {id, tenant}; tenant "" revokes the id in every tenant
	notBefore map[[2]string]time.Time // {tenant, user} -> the latest "before"
	tenants   map[string]bool
	groupIdx  map[string]int
	ngroups   int
}

// SessionIssuers returns the compiled session_issuers entries in policy
// order. Read only.
func (s *Snapshot) SessionIssuers() []*Issuer {
	if s.signed == nil {
		return nil
	}
	return s.signed.issuers
}

// IssuerOf returns the entry whose issuer is iss, or nil.
func (s *Snapshot) IssuerOf(iss string) *Issuer {
	if s.signed == nil {
		return nil
	}
	return s.signed.byIss[iss]
}

// SessionRevoked reports whether revoked_sessions lists the session id for
// the tenant's sessions: an entry naming that tenant, or one naming none.
func (s *Snapshot) SessionRevoked(tenant, id string) bool {
	if s.signed == nil || id == "" {
		return false
	}
	if _, ok := s.signed.revoked[[2]string{id, ""}]; ok {
		return true
	}
	_, ok := s.signed.revoked[[2]string{id, tenant}]
	return ok && tenant != ""
}

// SignedOutBefore returns the time before which the user's signed sessions
// are refused (sessions_not_before), or the zero time.
func (s *Snapshot) SignedOutBefore(tenant, user string) time.Time {
	if s.signed == nil {
		return time.Time{}
	}
	return s.signed.notBefore[[2]string{tenant, user}]
}

// SignedClaims is what a verified signed session token says once its
// issuer's claims mapping is applied.
type SignedClaims struct {
	ID        string // sid, else jti; "" when the token has neither
	User      string
	Tenant    string
	Org       string
	Groups    []string // after groups_map; the undeclared are dropped here
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// SignedSession makes the principal of a verified signed session token. It
// refuses a user, tenant or organization the policy cannot place; a revoked
// or signed-out session comes back Disabled, as a disabled listed one does.
// Groups the policy does not declare are dropped.
func (s *Snapshot) SignedSession(c SignedClaims) (*Principal, error) {
	ss := s.signed
	switch {
	case ss == nil:
		return nil, fmt.Errorf("the policy declares no session issuers")
	case c.User == "":
		return nil, fmt.Errorf("the token names no user")
	case strings.ContainsAny(c.User, "\r\n,"):
		return nil, fmt.Errorf("the user contains a comma or a line break")
	case c.Tenant == "":
		return nil, fmt.Errorf("the token names no tenant")
	case !ss.tenants[c.Tenant]:
		return nil, fmt.Errorf("tenant %s is not declared under tenants", quote(c.Tenant))
	case c.Org != "" && s.orgTenant[c.Org] != c.Tenant:
		if s.orgTenant[c.Org] == "" {
			return nil, fmt.Errorf("organization %s is not declared under tenants", quote(c.Org))
		}
		return nil, fmt.Errorf("organization %s is not in tenant %s", quote(c.Org), quote(c.Tenant))
	}
	gs := &groupSet{bits: newBitset(ss.ngroups)}
	for _, g := range c.Groups {
		if idx, ok := ss.groupIdx[g]; ok && !slices.Contains(gs.names, g) {
			gs.bits.set(idx)
			gs.names = append(gs.names, g)
		}
	}
	sort.Strings(gs.names)
	gs.header = strings.Join(gs.names, ",")
	p := &Principal{Kind: KindSession, ID: c.ID, User: c.User, Tenant: c.Tenant, Org: c.Org, groups: gs,
		expiresUnix: expiryNanos(c.ExpiresAt)}
	if s.SessionRevoked(c.Tenant, c.ID) {
		p.Disabled = true
	} else if before := s.SignedOutBefore(c.Tenant, c.User); !before.IsZero() && (c.IssuedAt.IsZero() || c.IssuedAt.Before(before)) {
		p.Disabled = true
	}
	return p, nil
}

// signedSessions compiles session_issuers, revoked_sessions and
// sessions_not_before of every fragment.
func (c *compiler) signedSessions(frags []*Fragment, tenants map[string]bool, groupIdx map[string]int, ngroups int) *signedSessions {
	ss := &signedSessions{byIss: map[string]*Issuer{}, revoked: map[[2]string]struct{}{},
		notBefore: map[[2]string]time.Time{}, tenants: tenants, groupIdx: groupIdx, ngroups: ngroups}
	for _, f := range frags {
		for i := range f.Doc.SessionIssuers {
			l := loc{f: f}.at("session_issuers", i)
			if is := c.issuer(&f.Doc.SessionIssuers[i], l, tenants, groupIdx); is != nil {
				ss.issuers = append(ss.issuers, is)
				ss.byIss[is.Issuer] = is
			}
		}
		for i, r := range f.Doc.RevokedSessions {
			l := loc{f: f}.at("revoked_sessions", i)
			if !validSessionID(r.ID) {
				c.errorf(l.at("id"), "id %q must be a session id (sid or jti): 1 to 253 printable characters without spaces", r.ID)
				continue
			}
			if r.Tenant != "" && !tenants[r.Tenant] {
				c.errorf(l.at("tenant"), "tenant %q is not declared under tenants", r.Tenant)
				continue
			}
			ss.revoked[[2]string{r.ID, r.Tenant}] = struct{}{}
		}
		for i, n := range f.Doc.SessionsNotBefore {
			l := loc{f: f}.at("sessions_not_before", i)
			switch {
			case n.Tenant == "":
				c.errorf(l.at("tenant"), "tenant is required")
				continue
			case !tenants[n.Tenant]:
				c.errorf(l.at("tenant"), "tenant %q is not declared under tenants", n.Tenant)
				continue
			case n.User == "":
				c.errorf(l.at("user"), "user is required")
				continue
			case n.Before == nil:
				c.errorf(l.at("before"), "before is required: tokens issued before this time are refused")
				continue
			}
			k := [2]string{n.Tenant, n.User}
			if n.Before.After(ss.notBefore[k]) {
				ss.notBefore[k] = n.Before.Time
			}
		}
	}
	return ss
}

// issuer validates one session_issuers entry.
func (c *compiler) issuer(si *SessionIssuer, l loc, tenants map[string]bool, groupIdx map[string]int) *Issuer {
	ok := true
	fail := func(at loc, format string, args ...any) {
		c.errorf(at, format, args...)
		ok = false
	}
	is := &Issuer{Name: si.Name, Issuer: si.Issuer, Audiences: si.Audiences, JWKSURL: si.JWKSURL,
		Tenant: si.Tenant, Claims: DefaultClaimNames, GroupsMap: si.GroupsMap}
	if !validName(si.Name) {
		fail(l.at("name"), "session issuer name %q must be letters, digits, '-', '_' or '.'", si.Name)
	} else if !c.unique("session issuer", si.Name, l) {
		ok = false
	}
	if si.Issuer == "" {
		fail(l.at("issuer"), "issuer is required: the iss claim of the tokens, compared exactly")
	} else if !c.unique("issuer", si.Issuer, l.at("issuer")) {
		ok = false
	}
	if len(si.Audiences) == 0 {
		fail(l.at("audiences"), "audiences is required: a token's aud must hold one of them, so that tokens meant for another service are refused")
	}
	for i, a := range si.Audiences {
		if a == "" {
			fail(l.at("audiences", i), "an audience must not be empty")
		}
	}
	switch {
	case si.JWKSURL == "" && si.JWKS == nil:
		fail(l, "session issuer %q has no keys: give jwks_url or jwks", si.Name)
	case si.JWKSURL != "" && si.JWKS != nil:
		fail(l.at("jwks"), "give jwks_url or jwks, not both")
	case si.JWKSURL != "":
		if u, err := url.Parse(si.JWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			fail(l.at("jwks_url"), "jwks_url %q must be an http or https URL", si.JWKSURL)
		}
	default:
		is.JWKS = si.JWKS.JSON
		for _, e := range checkJWKS(si.JWKS.JSON) {
			fail(l.at(append([]any{"jwks"}, e.path...)...), "%s", e.msg)
		}
	}
	is.Algorithms = DefaultSessionAlgorithms
	if si.Algorithms != nil {
		is.Algorithms = si.Algorithms
		if len(si.Algorithms) == 0 {
			fail(l.at("algorithms"), "algorithms must name at least one")
		}
	}
	for i, a := range si.Algorithms {
		switch {
		case strings.EqualFold(a, "none"), strings.HasPrefix(strings.ToUpper(a), "HS"):
			fail(l.at("algorithms", i), "algorithm %q is never accepted: keygate verifies signatures with public keys only (RS*, PS*, ES*, EdDSA)", a)
		case !sessionAlgorithms[a]:
			fail(l.at("algorithms", i), "algorithm %q is not one keygate verifies (RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512, EdDSA)", a)
		}
	}
	if si.Tenant != "" && !tenants[si.Tenant] {
		fail(l.at("tenant"), "tenant %q is not declared under tenants", si.Tenant)
	}
	if cn := si.Claims; cn != nil {
		for _, f := range []struct {
			field string
			name  string
			dst   *string
		}{
			{"user", cn.User, &is.Claims.User}, {"tenant", cn.Tenant, &is.Claims.Tenant}, {"org", cn.Org, &is.Claims.Org},
			{"groups", cn.Groups, &is.Claims.Groups}, {"session_id", cn.SessionID, &is.Claims.SessionID},
		} {
			if f.name != "" {
				*f.dst = f.name
			}
		}
	}
	for _, from := range slices.Sorted(maps.Keys(si.GroupsMap)) {
		if to := si.GroupsMap[from]; !declared(groupIdx, to) {
			fail(l.at("groups_map", from), "groups_map renames %q to group %q, which is not declared under groups", from, to)
		}
	}
	if si.MaxTTL != nil {
		if si.MaxTTL.Duration <= 0 {
			fail(l.at("max_ttl"), "max_ttl must be longer than 0s")
		}
		is.MaxTTL = si.MaxTTL.Duration
	}
	if !ok {
		return nil
	}
	return is
}

func declared(groupIdx map[string]int, g string) bool {
	_, ok := groupIdx[g]
	return ok
}

// validSessionID accepts the ids issuers put in sid and jti: UUIDs, base64
// and the like; never spaces or control characters.
func validSessionID(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] == 0x7f {
			return false
		}
	}
	return true
}
