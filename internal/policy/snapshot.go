package policy

import (
	"slices"
	"strings"
	"time"
)

// Digest is the SHA-256 of a presented credential; the only form in which
// keygate holds a key or session token.
type Digest [32]byte

// Kind says which kind of credential a principal was resolved from.
type Kind uint8

const (
	KindAPIKey Kind = iota + 1
	KindSession
)

func (k Kind) String() string {
	switch k {
	case KindAPIKey:
		return "api_key"
	case KindSession:
		return "session"
	}
	return "unknown"
}

// Principal is what a verified credential says about its holder. A policy
// may hold a million of them, so it keeps only what a decision reads: the
// groups are shared per distinct list and the expiry is one integer.
type Principal struct {
	ID          string // public id: safe to log and show
	Name        string
	User        string
	Tenant      string
	Org         string // "" for a tenant-level credential
	Environment string
	groups      *groupSet
	expiresUnix int64 // UnixNano; 0 means never
	Kind        Kind
	Disabled    bool
	rateLimit   uint16 // its own limit: 1 + its index in Snapshot.limits; 0 none (fits in the padding)
}

// Groups are the principal's groups, sorted and unique. They are shared
// between principals: read only.
func (p *Principal) Groups() []string { return p.groups.names }

// GroupsHeader is Groups joined with ",".
func (p *Principal) GroupsHeader() string { return p.groups.header }

// ExpiredAt reports whether the credential has expired at now (UnixNano).
func (p *Principal) ExpiredAt(now int64) bool {
	return p.expiresUnix != 0 && now >= p.expiresUnix
}

// OrgScope says where an endpoint reads the organization a request targets.
type OrgScope uint8

const (
	OrgNone OrgScope = iota
	OrgFromPath
	OrgFromHeader
)

// Endpoint is a compiled endpoint rule.
type Endpoint struct {
	Name           string
	Index          int
	Anonymous      bool
	RequireKey     bool
	RequireSession bool
	HasGroups      bool
	OrgFrom        OrgScope
	OrgHeader      string // lower-case header name when OrgFrom == OrgFromHeader
	Shadow         bool
	RateLimit      *Limit // nil: none
	RateLimitBy    RateLimitBy

	methods    []string // upper-case; empty means any
	host       string   // lower-case; "" any; "*.example.com" any subdomain
	path       pattern
	orgCapture int
	groups     bitset
}

// Match reports whether a request matches the endpoint and returns the
// organization captured from the path when the endpoint reads it there.
// host must be lower-case without a port; path normalized without query.
func (e *Endpoint) Match(method, host, path string) (string, bool) {
	if len(e.methods) > 0 {
		ok := false
		for _, m := range e.methods {
			if m == method {
				ok = true
				break
			}
		}
		if !ok {
			return "", false
		}
	}
	if e.host != "" && !hostMatches(e.host, host) {
		return "", false
	}
	return e.path.match(path, e.orgCapture)
}

func hostMatches(want, host string) bool {
	if strings.HasPrefix(want, "*.") {
		return len(host) > len(want)-1 && strings.HasSuffix(host, want[1:])
	}
	return want == host
}

// Allows reports whether any of the principals is in one of the endpoint's
// groups. An endpoint without groups allows everyone who authenticated.
func (e *Endpoint) Allows(ps ...*Principal) bool {
	if !e.HasGroups {
		return true
	}
	for _, p := range ps {
		if p != nil && e.groups.intersects(p.groups.bits) {
			return true
		}
	}
	return false
}

// IdentityHeaders are the names of the headers keygate sets on allowed
// requests, built from the configured prefix.
type IdentityHeaders struct {
	User, Tenant, Org, KeyID, SessionID, Groups, Auth, Endpoint string
}

// Snapshot is an immutable, compiled policy. It is safe for concurrent use.
type Snapshot struct {
	Generation uint64
	Source     string // where it was loaded from, for logs
	LoadedAt   time.Time

	Realm            string
	APIKeyHeaders    []string // lower-case; "authorization" means Bearer
	SessionHeader    string   // lower-case
	SessionCookie    string   // "" when sessions are read from the header only
	IdentityPrefix   string   // lower-case
	StripCredentials bool
	MaxOrgKeys       int
	DefaultAllow     bool
	Headers          IdentityHeaders
	Challenge        string // WWW-Authenticate for a missing credential
	ChallengeInvalid string // WWW-Authenticate for an invalid one
	Management       ManagementRules

	endpoints   []*Endpoint
	index       *endpointIndex // over endpoints, built by compile
	byName      map[string]*Endpoint
	keys        map[Digest]*Principal
	sessions    map[Digest]*Principal
	orgTenant   map[string]string
	groupNames  []string
	tenantCount int
	tenants     map[string]bool
	keyExpiries []int64 // UnixNano expiry of each active key that has one, sorted
	limits      []*Limit
	signed      *signedSessions

	// What a reload needs to reuse the compiled credentials (reuse.go).
	creds    []*Principal        // every credential, api_keys first, in the order of the policy
	keyCreds int                 // how many of creds are api_keys
	ids      map[string]struct{} // their ids
	credSums []textSum           // the sums of their elements' texts; nil if not all were deferred
	credLens []uint32            // the lengths of those texts
	credCtx  [32]byte            // credContext when they were compiled
	reused   int                 // how many credentials this load took from the previous snapshot
}

// Endpoints returns the endpoints in match order. Do not modify.
func (s *Snapshot) Endpoints() []*Endpoint { return s.endpoints }

// Endpoint returns the endpoint with the given name.
func (s *Snapshot) Endpoint(name string) *Endpoint { return s.byName[name] }

// Match returns the first endpoint that matches, and the organization it
// captured from the path. It tries only the endpoints whose path pattern,
// and host when they name one exactly, fit the request, so its cost does not
// grow with the number of endpoints.
func (s *Snapshot) Match(method, host, path string) (*Endpoint, string) {
	return s.index.match(s.endpoints, method, host, path)
}

// Lookup returns the principal for a credential digest of the given kind.
func (s *Snapshot) Lookup(k Kind, d Digest) *Principal {
	if k == KindSession {
		return s.sessions[d]
	}
	return s.keys[d]
}

// TenantOf returns the tenant an organization belongs to.
func (s *Snapshot) TenantOf(org string) string { return s.orgTenant[org] }

// HasTenant reports whether the policy declares the tenant.
func (s *Snapshot) HasTenant(id string) bool { return s.tenants[id] }

// Counts is the size of a snapshot, for start-up lines and metrics.
type Counts struct {
	APIKeys, Sessions, Endpoints, Groups, Tenants, Orgs int
}

// Counts returns how many objects the snapshot holds.
func (s *Snapshot) Counts() Counts {
	return Counts{
		APIKeys: len(s.keys), Sessions: len(s.sessions), Endpoints: len(s.endpoints),
		Groups: len(s.groupNames), Tenants: s.tenantCount, Orgs: len(s.orgTenant),
	}
}

// APIKeys returns the snapshot's key principals, for tools that list them.
func (s *Snapshot) APIKeys() []*Principal {
	out := make([]*Principal, 0, len(s.keys))
	for _, p := range s.keys {
		out = append(out, p)
	}
	return out
}

type bitset []uint64

func newBitset(n int) bitset { return make(bitset, (n+63)/64) }

func (b bitset) set(i int) { b[i/64] |= 1 << (uint(i) % 64) }

func (b bitset) intersects(o bitset) bool {
	n := min(len(b), len(o))
	for i := 0; i < n; i++ {
		if b[i]&o[i] != 0 {
			return true
		}
	}
	return false
}

// CapturePath returns the organization segment of path for an endpoint that
// reads it from the path, when the path fits the endpoint's pattern. It is
// used when Envoy names the endpoint instead of keygate matching it.
func (e *Endpoint) CapturePath(path string) (string, bool) {
	return e.path.match(path, e.orgCapture)
}

// APIKeysExpiring counts the active keys that expire in [now, now+within),
// for the operator's "rotate soon" alert.
func (s *Snapshot) APIKeysExpiring(now time.Time, within time.Duration) int {
	from, to := now.UnixNano(), now.Add(within).UnixNano()
	lo, _ := slices.BinarySearch(s.keyExpiries, from)
	hi, _ := slices.BinarySearch(s.keyExpiries, to)
	return hi - lo
}
