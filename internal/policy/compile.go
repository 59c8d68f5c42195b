package policy

import (
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/textproto"
	"slices"
	"sort"
	"strings"
	"time"
)

// Options control compilation.
type Options struct {
	Generation uint64 // stamped on the snapshot; the cache keys on it
	Source     string
	// Pace, when set, is called every few hundred credentials while a
	// policy loads, so that a caller serving requests on the same CPUs can
	// let them run during a long reload.
	Pace func()
	// Previous, when set, is the snapshot this load replaces: credentials
	// whose text has not changed since it was compiled are taken from it
	// instead of decoded and compiled again (see reuse.go).
	Previous *Snapshot
}

// paceEvery is how many credentials go between calls of Options.Pace:
// a fraction of a millisecond of work.
const paceEvery = 256

// Defaults for settings a policy leaves out.
const (
	DefaultRealm          = "keygate"
	DefaultSessionHeader  = "session"
	DefaultIdentityPrefix = "x-keygate-"
	DefaultMaxOrgKeys     = 5
)

// DefaultAPIKeyHeaders are read in order; "authorization" means Bearer.
var DefaultAPIKeyHeaders = []string{"authorization", "x-api-key"}

var httpMethods = map[string]bool{
	"GET": true, "HEAD": true, "POST": true, "PUT": true, "PATCH": true,
	"DELETE": true, "OPTIONS": true, "CONNECT": true, "TRACE": true,
}

// Compile merges fragments in order, validates the result and compiles it.
// It returns Errors listing every problem found, each with file and line.
func Compile(frags []*Fragment, opt Options) (*Snapshot, error) {
	c := &compiler{seen: map[string]loc{}, interned: map[string]string{}}
	if len(frags) == 0 {
		return nil, Errors{{File: opt.Source, Msg: "no policy found"}}
	}
	s := c.compile(frags, opt)
	if c.undecodable {
		return nil, errUndecodable
	}
	if len(c.errs) > 0 {
		sort.SliceStable(c.errs, func(i, j int) bool {
			a, b := c.errs[i], c.errs[j]
			if a.File != b.File {
				return c.fragOrder[a.File] < c.fragOrder[b.File]
			}
			return a.Line < b.Line
		})
		return nil, c.errs
	}
	return s, nil
}

// loc is where a value stands: a fragment and a path inside it.
type loc struct {
	f    *Fragment
	path []any
}

func (l loc) at(p ...any) loc {
	np := make([]any, 0, len(l.path)+len(p))
	return loc{l.f, append(append(np, l.path...), p...)}
}

func (l loc) String() string {
	if line := l.f.lineOf(l.path); line > 0 {
		return fmt.Sprintf("%s:%d", l.f.Name, line)
	}
	return l.f.Name
}

type compiler struct {
	errs      Errors
	seen      map[string]loc // "kind\x00id" -> first place it was defined
	fragOrder map[string]int

	credentialHeaders map[string]bool // from settings, for endpoint checks
	identityPrefix    string
	interned          map[string]string
	undecodable       bool   // a deferred credential did not decode
	groupKey          []byte // scratch: the group list being looked up
	limits            *limitTable
}

// errUndecodable asks Load to decode every credential up front: that is
// where a credential that does not decode gets its located error.
var errUndecodable = errors.New("a deferred credential does not decode")

// intern returns one shared copy of a string that many credentials repeat
// (tenant, organization, environment), so a snapshot holds it once.
func (c *compiler) intern(v string) string {
	if v == "" {
		return ""
	}
	if s, ok := c.interned[v]; ok {
		return s
	}
	c.interned[v] = v
	return v
}

// errorf records a located error. Every string argument is a value from the
// policy, which %q quotes bounded (see quote): a secret pasted into the
// wrong field is not printed whole.
func (c *compiler) errorf(l loc, format string, args ...any) {
	c.errs = append(c.errs, &Error{File: l.f.Name, Line: l.f.lineOf(l.path), Path: formatPath(l.path), Msg: fmt.Sprintf(format, quotedValues(args)...)})
}

// unique records a name of a kind and reports a duplicate with both places.
func (c *compiler) unique(kind, name string, l loc) bool {
	k := kind + "\x00" + name
	if first, dup := c.seen[k]; dup {
		c.errorf(l, "duplicate %s %q (first defined at %s)", kind, name, first)
		return false
	}
	c.seen[k] = l
	return true
}

func (c *compiler) compile(frags []*Fragment, opt Options) *Snapshot {
	c.fragOrder = map[string]int{}
	s := &Snapshot{
		Generation: opt.Generation,
		Source:     opt.Source,
		LoadedAt:   time.Now().UTC(),
		byName:     map[string]*Endpoint{},
		orgTenant:  map[string]string{},
	}
	var settingsAt *loc
	for i, f := range frags {
		c.fragOrder[f.Name] = i
		root := loc{f: f}
		if f.Doc.Version != 1 {
			if f.Doc.Version == 0 {
				c.errorf(root.at("version"), "version is required; this keygate reads version: 1")
			} else {
				c.errorf(root.at("version"), "version %d is not supported; this keygate reads version: 1", f.Doc.Version)
			}
		}
		if f.Doc.Settings != nil {
			l := root.at("settings")
			if settingsAt != nil {
				c.errorf(l, "settings are defined twice (first at %s); keep them in one fragment", *settingsAt)
			} else {
				settingsAt = &l
			}
		}
	}
	var settings Settings
	if settingsAt != nil {
		settings = *settingsAt.f.Doc.Settings
		c.settings(s, settings, *settingsAt)
	} else {
		c.settings(s, settings, loc{f: frags[0]})
	}

	groupIdx := map[string]int{}
	for _, f := range frags {
		for i, g := range f.Doc.Groups {
			l := loc{f: f}.at("groups", i)
			if !validName(g.Name) {
				c.errorf(l.at("name"), "group name %q must be letters, digits, '-', '_' or '.'", g.Name)
				continue
			}
			if c.unique("group", g.Name, l) {
				groupIdx[g.Name] = len(s.groupNames)
				s.groupNames = append(s.groupNames, g.Name)
			}
		}
	}
	tenants := map[string]bool{}
	for _, f := range frags {
		for i, t := range f.Doc.Tenants {
			l := loc{f: f}.at("tenants", i)
			if !validName(t.ID) {
				c.errorf(l.at("id"), "tenant id %q must be letters, digits, '-', '_' or '.'", t.ID)
				continue
			}
			if !c.unique("tenant", t.ID, l) {
				continue
			}
			tenants[t.ID] = true
			for j, o := range t.Orgs {
				ol := l.at("orgs", j)
				if !validName(o) {
					c.errorf(ol, "organization %q must be letters, digits, '-', '_' or '.'", o)
				} else if c.unique("organization", o, ol) {
					s.orgTenant[o] = t.ID
				}
			}
		}
	}

	c.rateLimits(s, frags)
	for _, f := range frags {
		for i := range f.Doc.Endpoints {
			l := loc{f: f}.at("endpoints", i)
			if e := c.endpoint(&f.Doc.Endpoints[i], l, groupIdx); e != nil && c.unique("endpoint", e.Name, l) {
				e.Index = len(s.endpoints)
				s.endpoints = append(s.endpoints, e)
				s.byName[e.Name] = e
			}
		}
	}
	s.index = newEndpointIndex(s.endpoints)
	s.Management = c.management(frags, groupIdx, len(s.groupNames))
	s.signed = c.signedSessions(frags, tenants, groupIdx, len(s.groupNames))

	s.keyCreds = countAll(frags, "api_keys")
	s.credCtx = credContext(s.groupNames, tenants, s.orgTenant, c.limits.byName)
	groupSets := map[string]*groupSet{}
	if !c.reuseCredentials(s, frags, opt, tenants, groupIdx, groupSets) {
		c.compileCredentials(s, frags, opt, tenants, groupIdx, groupSets)
	}
	s.tenantCount = len(tenants)
	s.tenants = tenants
	if c.undecodable {
		return s // some credentials were not read; Load decodes them up front
	}
	for _, p := range s.creds[:s.keyCreds] {
		if !p.Disabled && p.expiresUnix != 0 {
			s.keyExpiries = append(s.keyExpiries, p.expiresUnix)
		}
	}
	slices.Sort(s.keyExpiries)
	return s
}

// compileCredentials compiles every credential of frags into s, reporting
// each problem where it stands.
func (c *compiler) compileCredentials(s *Snapshot, frags []*Fragment, opt Options, tenants map[string]bool, groupIdx map[string]int, groupSets map[string]*groupSet) {
	nCreds := s.keyCreds + countAll(frags, "sessions")
	s.keys = make(map[Digest]*Principal, s.keyCreds)
	s.sessions = make(map[Digest]*Principal, nCreds-s.keyCreds)
	s.ids = make(map[string]struct{}, nCreds)
	s.credSums, s.credLens = elementSums(frags)
	orgKeys := map[string]int{}
	now := s.LoadedAt.UnixNano()
	// A policy may hold a million credentials: principals come from one
	// slab, and the duplicate checks keep no location; the first place of a
	// duplicate is looked up only when there is one.
	slab := make([]Principal, nCreds)
	s.creds = make([]*Principal, nCreds)
	next := 0 // the index in s.creds of the next credential
	creds := func(kind Kind, section string) {
		for _, f := range frags {
			err := f.eachCredential(section, nil, func(i int, spec credSpec, _ bool) bool {
				if opt.Pace != nil && i%paceEvery == paceEvery-1 {
					opt.Pace()
				}
				cl := credLoc{f, section, i}
				p := &slab[next]
				s.creds[next] = p
				next++
				d, ok := c.credential(p, kind, spec, cl, tenants, s.orgTenant, groupIdx, len(s.groupNames), groupSets)
				if !ok {
					return true
				}
				// Each check is one map write that either grows the map or
				// finds a duplicate (a reload of 100,000 keys spends a fifth
				// of its time in these maps); a duplicate fails the compile,
				// so what it overwrote never serves.
				n := len(s.ids)
				if s.ids[p.ID] = struct{}{}; len(s.ids) == n {
					first := findCredential(frags, func(k credSpec) bool { return k.id == p.ID })
					c.errorf(cl.loc(), "duplicate credential id %q (first defined at %s)", p.ID, first.loc())
					return true
				}
				own, other := s.keys, s.sessions
				if kind == KindSession {
					own, other = other, own
				}
				n = len(own)
				if own[d] = p; len(own) == n || other[d] != nil {
					first := findCredential(frags, func(k credSpec) bool { pd, err := k.parsedDigest(); return err == nil && pd == d })
					c.errorf(cl.loc().at("hash"), "duplicate credential digest \"%x\" (first defined at %s)", d, first.loc().at("hash"))
					return true
				}
				if kind == KindAPIKey {
					// An expired key no longer counts against the limit: it can
					// never come back, so a policy valid now stays valid.
					if p.Org != "" && !p.Disabled && !p.ExpiredAt(now) {
						orgKeys[p.Org]++
						if orgKeys[p.Org] == s.MaxOrgKeys+1 {
							c.errorf(cl.loc(), "organization %q has more than %d active organization-level keys (max_org_keys); disable or remove one", p.Org, s.MaxOrgKeys)
						}
					}
				}
				return true
			})
			if err != nil {
				c.undecodable = true
			}
		}
	}
	creds(KindAPIKey, "api_keys")
	creds(KindSession, "sessions")
}

// findCredential is where the first credential matching ok stands, for the
// message about a duplicate.
func findCredential(frags []*Fragment, ok func(credSpec) bool) credLoc {
	for _, f := range frags {
		for _, section := range [...]string{"api_keys", "sessions"} {
			found := -1
			_ = f.eachCredential(section, nil, func(i int, k credSpec, _ bool) bool {
				if ok(k) {
					found = i
				}
				return found < 0
			})
			if found >= 0 {
				return credLoc{f, section, found}
			}
		}
	}
	return credLoc{f: frags[0]}
}

func countAll(frags []*Fragment, section string) int {
	n := 0
	for _, f := range frags {
		n += f.credentialCount(section)
	}
	return n
}

func (c *compiler) settings(s *Snapshot, st Settings, l loc) {
	s.Realm = st.Realm
	if s.Realm == "" {
		s.Realm = DefaultRealm
	}
	if strings.ContainsFunc(s.Realm, func(r rune) bool { return r < 0x20 || r == 0x7f || r == '"' || r == '\\' }) {
		c.errorf(l.at("realm"), "realm %q must not contain quotes, backslashes or control characters", s.Realm)
	}
	s.APIKeyHeaders = DefaultAPIKeyHeaders
	if st.APIKeyHeaders != nil {
		if len(st.APIKeyHeaders) == 0 {
			c.errorf(l.at("api_key_headers"), "api_key_headers must name at least one header")
		} else if len(st.APIKeyHeaders) > 64 {
			c.errorf(l.at("api_key_headers"), "api_key_headers names %d headers; 64 at most", len(st.APIKeyHeaders))
		}
		s.APIKeyHeaders = nil
		for i, h := range st.APIKeyHeaders {
			lh := strings.ToLower(h)
			switch {
			case !validHeader(h):
				c.errorf(l.at("api_key_headers", i), "%q is not a valid header name", h)
			case slices.Contains(s.APIKeyHeaders, lh):
				c.errorf(l.at("api_key_headers", i), "%q is listed twice", h)
			}
			s.APIKeyHeaders = append(s.APIKeyHeaders, lh)
		}
	}
	s.SessionHeader = strings.ToLower(st.SessionHeader)
	if s.SessionHeader == "" {
		s.SessionHeader = DefaultSessionHeader
	} else if !validHeader(s.SessionHeader) {
		c.errorf(l.at("session_header"), "%q is not a valid header name", st.SessionHeader)
	}
	for _, h := range s.APIKeyHeaders {
		if h == s.SessionHeader {
			c.errorf(l.at("session_header"), "%q is both an API key header and the session header", h)
		}
	}
	s.IdentityPrefix = strings.ToLower(st.IdentityHeaderPrefix)
	switch {
	case s.IdentityPrefix == "":
		s.IdentityPrefix = DefaultIdentityPrefix
	case !validHeader(s.IdentityPrefix):
		c.errorf(l.at("identity_header_prefix"), "%q is not a valid header name prefix", st.IdentityHeaderPrefix)
	default:
		if msg := identityPrefixProblem(s.IdentityPrefix); msg != "" {
			c.errorf(l.at("identity_header_prefix"), "identity_header_prefix %q %s", st.IdentityHeaderPrefix, msg)
			break
		}
		for _, h := range append(append([]string(nil), s.APIKeyHeaders...), s.SessionHeader) {
			if strings.HasPrefix(h, s.IdentityPrefix) {
				c.errorf(l.at("identity_header_prefix"), "credential header %q starts with the identity header prefix %q", h, s.IdentityPrefix)
			}
		}
	}
	c.credentialHeaders = map[string]bool{s.SessionHeader: true}
	for _, h := range s.APIKeyHeaders {
		c.credentialHeaders[h] = true
	}
	c.identityPrefix = s.IdentityPrefix
	p := s.IdentityPrefix
	s.Headers = IdentityHeaders{
		User: p + "user", Tenant: p + "tenant", Org: p + "org", KeyID: p + "key-id",
		SessionID: p + "session-id", Groups: p + "groups", Auth: p + "auth", Endpoint: p + "endpoint",
	}
	s.SessionCookie = st.SessionCookie
	if s.SessionCookie != "" && !validHeader(s.SessionCookie) {
		c.errorf(l.at("session_cookie"), "%q is not a valid cookie name", st.SessionCookie)
	}
	s.StripCredentials = st.StripCredentials == nil || *st.StripCredentials
	s.MaxOrgKeys = DefaultMaxOrgKeys
	if st.MaxOrgKeys != nil {
		if *st.MaxOrgKeys < 1 {
			c.errorf(l.at("max_org_keys"), "max_org_keys must be at least 1")
		}
		s.MaxOrgKeys = *st.MaxOrgKeys
	}
	switch st.Default {
	case "", "deny":
	case "allow":
		s.DefaultAllow = true
	default:
		c.errorf(l.at("default"), "default must be deny or allow, not %q", st.Default)
	}
	s.Challenge = fmt.Sprintf("Bearer realm=%q", s.Realm)
	s.ChallengeInvalid = fmt.Sprintf("Bearer realm=%q, error=\"invalid_token\"", s.Realm)
}

func (c *compiler) endpoint(ep *EndpointRule, l loc, groupIdx map[string]int) *Endpoint {
	e := &Endpoint{Name: ep.Name, Anonymous: ep.Anonymous, orgCapture: -1}
	ok := true
	fail := func(at loc, format string, args ...any) {
		c.errorf(at, format, args...)
		ok = false
	}
	if !validName(ep.Name) {
		fail(l.at("name"), "endpoint name %q must be letters, digits, '-', '_' or '.'", ep.Name)
	}
	pt, err := compilePattern(ep.Match.Path)
	if err != nil {
		fail(l.at("match", "path"), "%v", err)
	}
	e.path = pt
	for i, m := range ep.Match.Methods {
		// Checked before upper-casing: strings.ToUpper turns some
		// non-ASCII letters into ASCII ones ("poſt" into POST).
		um := strings.ToUpper(m)
		switch {
		case !validToken(m):
			fail(l.at("match", "methods", i), "%q is not a valid HTTP method token (RFC 9110: letters, digits and !#$%%&'*+-.^_`|~)", m)
		case !httpMethods[um]:
			fail(l.at("match", "methods", i), "%q is not an HTTP method keygate knows (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, CONNECT, TRACE)", m)
		}
		e.methods = append(e.methods, um)
	}
	e.host = strings.ToLower(ep.Match.Host)
	if strings.Contains(e.host, ":") {
		fail(l.at("match", "host"), "host %q must not include a port; keygate matches it with or without one", ep.Match.Host)
	} else if h := strings.TrimPrefix(e.host, "*."); e.host != "" && (h == "" || strings.ContainsAny(h, "*/ ")) {
		fail(l.at("match", "host"), "host %q must be a name such as api.example.com or *.example.com", ep.Match.Host)
	}
	switch ep.Mode {
	case "", "enforce":
	case "shadow":
		e.Shadow = true
	default:
		fail(l.at("mode"), "mode must be enforce or shadow, not %q", ep.Mode)
	}
	if ep.Anonymous {
		if len(ep.Require) > 0 {
			fail(l.at("require"), "an anonymous endpoint cannot require credentials")
		}
		if len(ep.Groups) > 0 {
			fail(l.at("groups"), "an anonymous endpoint cannot require groups")
		}
		if ep.Org != nil {
			fail(l.at("org"), "an anonymous endpoint cannot check an organization")
		}
	} else {
		for i, r := range ep.Require {
			switch r {
			case "api_key":
				e.RequireKey = true
			case "session":
				e.RequireSession = true
			default:
				fail(l.at("require", i), "require takes api_key and session, not %q", r)
			}
		}
		if len(ep.Require) == 0 {
			e.RequireKey = true
		}
	}
	e.groups = newBitset(len(groupIdx))
	for i, g := range ep.Groups {
		idx, known := groupIdx[g]
		if !known {
			fail(l.at("groups", i), "group %q is not declared under groups", g)
			continue
		}
		e.groups.set(idx)
		e.HasGroups = true
	}
	if o := ep.Org; o != nil {
		switch o.From {
		case "path":
			e.OrgFrom = OrgFromPath
			if err == nil {
				if e.orgCapture = pt.captureIndex(o.Name); e.orgCapture < 0 {
					fail(l.at("org", "name"), "path %q has no {%s} segment to read the organization from", ep.Match.Path, o.Name)
				}
			}
		case "header":
			e.OrgFrom = OrgFromHeader
			e.OrgHeader = strings.ToLower(o.Name)
			switch {
			case !validHeader(o.Name):
				fail(l.at("org", "name"), "%q is not a valid header name", o.Name)
			case c.credentialHeaders[e.OrgHeader]:
				fail(l.at("org", "name"), "%q is a credential header; name the organization in a header of its own", o.Name)
			case strings.HasPrefix(e.OrgHeader, c.identityPrefix):
				fail(l.at("org", "name"), "%q starts with the identity header prefix %q: keygate sets those headers itself", o.Name, c.identityPrefix)
			}
		default:
			fail(l.at("org", "from"), "org.from must be path or header, not %q", o.From)
		}
	}
	if !c.endpointRateLimit(e, ep, l) {
		ok = false
	}
	if !ok {
		return nil
	}
	return e
}

// credLoc is where a credential stands, kept cheap: a policy may list a
// million of them, and a location is built only for an error.
type credLoc struct {
	f       *Fragment
	section string
	i       int
}

func (cl credLoc) loc() loc { return loc{f: cl.f}.at(cl.section, cl.i) }

// groupSet is a credential's groups, compiled once per distinct list and
// shared by every credential that names the same list.
type groupSet struct {
	names  []string // sorted, unique
	header string
	bits   bitset
}

// credential validates one credential and fills p from it.
func (c *compiler) credential(p *Principal, kind Kind, k credSpec, cl credLoc, tenants map[string]bool, orgTenant map[string]string, groupIdx map[string]int, ngroups int, groupSets map[string]*groupSet) (Digest, bool) {
	ok := true
	fail := func(field string, format string, args ...any) {
		c.errorf(cl.loc().at(field), format, args...)
		ok = false
	}
	*p = Principal{Kind: kind, ID: k.id, Name: k.name, User: k.user, Tenant: c.intern(k.tenant), Org: c.intern(k.org), Environment: c.intern(k.environment), Disabled: k.disabled}
	if !validName(k.id) {
		fail("id", "id %q must be letters, digits, '-', '_' or '.'", k.id)
	}
	d, err := k.parsedDigest()
	if err != nil {
		fail("hash", "%v", err)
	}
	if k.user == "" {
		fail("user", "user is required: the principal requests run as")
	} else if strings.ContainsAny(k.user, "\r\n,") {
		fail("user", "user must not contain commas or line breaks")
	}
	switch {
	case k.tenant == "":
		fail("tenant", "tenant is required")
	case !tenants[k.tenant]:
		fail("tenant", "tenant %q is not declared under tenants", k.tenant)
	case k.org != "" && orgTenant[k.org] != k.tenant:
		if orgTenant[k.org] == "" {
			fail("org", "organization %q is not declared under tenants", k.org)
		} else {
			fail("org", "organization %q belongs to tenant %q, not %q", k.org, orgTenant[k.org], k.tenant)
		}
	}
	c.groupKey = c.groupKey[:0]
	for _, g := range k.groups {
		c.groupKey = append(append(c.groupKey, g...), 0)
	}
	gs := groupSets[string(c.groupKey)] // a lookup that does not allocate
	if gs == nil {
		gs = &groupSet{bits: newBitset(ngroups)}
		valid := true
		for i, g := range k.groups {
			idx, known := groupIdx[g]
			if !known {
				c.errorf(cl.loc().at("groups", i), "group %q is not declared under groups", g)
				ok, valid = false, false
				continue
			}
			if !slices.Contains(gs.names, g) {
				gs.bits.set(idx)
				gs.names = append(gs.names, g)
			}
		}
		sort.Strings(gs.names)
		gs.header = strings.Join(gs.names, ",")
		if valid {
			groupSets[string(c.groupKey)] = gs
		}
	}
	p.groups = gs
	if k.expiresAt != nil {
		p.expiresUnix = expiryNanos(k.expiresAt.Time)
	}
	if !c.credentialRateLimit(p, k.rateLimit, cl) {
		ok = false
	}
	return d, ok
}

// expiryNanos is t in UnixNano for ExpiredAt, clamped to what an int64 holds
// (a "never" such as 9999-12-31 must not wrap into the past) and never 0,
// which means "does not expire".
func expiryNanos(t time.Time) int64 {
	switch {
	case t.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	case !t.After(time.Unix(0, 0)):
		return math.MinInt64
	}
	return t.UnixNano()
}

// ParseDigest reads "sha256:<64 hex digits>".
func ParseDigest(s string) (Digest, error) { return parseDigest(s) }

func parseDigest[T string | []byte](s T) (Digest, error) {
	var d Digest
	const prefix = "sha256:"
	if len(s) < len(prefix) || string(s[:len(prefix)]) != prefix {
		if len(s) == 0 {
			return d, fmt.Errorf("hash is required: \"sha256:\" and 64 hex digits of the key's SHA-256")
		}
		return d, fmt.Errorf("hash must be \"sha256:\" and 64 hex digits (never the key itself)")
	}
	hexPart := s[len(prefix):]
	if len(hexPart) != 64 {
		return d, fmt.Errorf("hash must have 64 hex digits after sha256:, not %d", len(hexPart))
	}
	for i := range d {
		hi, ok1 := fromHex(hexPart[2*i])
		lo, ok2 := fromHex(hexPart[2*i+1])
		if !ok1 || !ok2 {
			return d, fmt.Errorf("hash has a character that is not a hex digit after \"sha256:\"")
		}
		d[i] = hi<<4 | lo
	}
	return d, nil
}

func fromHex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// FormatDigest writes a digest as the policy spells it.
func FormatDigest(d Digest) string { return "sha256:" + hex.EncodeToString(d[:]) }

func validName(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '-' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

func validHeader(h string) bool {
	if h == "" || h[0] == ':' {
		return false
	}
	for i := 0; i < len(h); i++ {
		if !isTokenChar(h[i]) {
			return false
		}
	}
	return textproto.CanonicalMIMEHeaderKey(h) != ""
}

func isTokenChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}
