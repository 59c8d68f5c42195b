package policy

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const examplePolicy = "../../examples/policy.yaml"

// The demo credentials printed in the comments of examples/policy.yaml.
const (
	demoTenantKey = "kg_demo0001_oyCLM0LiJKAiVDtUBnYfhL3xoAZvuqnj2lMjzW"
	demoOrgKey    = "kg_demo0002_hFV6BUInS1jmWbhofGdTjpXZrBrQ0mDF2LRROJ"
	demoSession   = "kg_ses00001_GrxS9PsJzl62ePB23bWGHOFyDi44sYYq26BIqD"
)

// mustLoad compiles policy text as one YAML fragment.
func mustLoad(t testing.TB, text string) *Snapshot {
	t.Helper()
	s, err := Load([]Input{{Name: "test.yaml", Data: []byte(text)}}, Options{})
	if err != nil {
		t.Fatalf("load: %v\n%s", err, strings.Join(linesOf(err), "\n"))
	}
	return s
}

func linesOf(err error) []string {
	if es, ok := err.(Errors); ok {
		return es.Lines()
	}
	return []string{err.Error()}
}

func TestExamplePolicy(t *testing.T) {
	s, err := LoadPath(examplePolicy, Options{Generation: 7})
	if err != nil {
		t.Fatalf("%s: %v", examplePolicy, strings.Join(linesOf(err), "\n"))
	}
	want := Counts{APIKeys: 2, Sessions: 2, Endpoints: 5, Groups: 3, Tenants: 2, Orgs: 3}
	if got := s.Counts(); got != want {
		t.Errorf("Counts() = %+v, want %+v", got, want)
	}
	if s.Generation != 7 || s.Source != examplePolicy {
		t.Errorf("Generation, Source = %d, %q", s.Generation, s.Source)
	}
	var names []string
	for i, e := range s.Endpoints() {
		names = append(names, e.Name)
		if e.Index != i {
			t.Errorf("endpoint %s: Index = %d, want %d", e.Name, e.Index, i)
		}
		if s.Endpoint(e.Name) != e {
			t.Errorf("Endpoint(%q) is not the matching endpoint", e.Name)
		}
	}
	if got := strings.Join(names, " "); got != "health docs sales-write sales-read whoami" {
		t.Errorf("endpoints in order: %s", got)
	}
	if s.Endpoint("nope") != nil {
		t.Error("Endpoint(nope) != nil")
	}
	if got := s.TenantOf("acme-eu"); got != "acme" {
		t.Errorf("TenantOf(acme-eu) = %q", got)
	}
	if got := s.TenantOf("nope"); got != "" {
		t.Errorf("TenantOf(nope) = %q", got)
	}
	if got := len(s.APIKeys()); got != 2 {
		t.Errorf("len(APIKeys()) = %d", got)
	}

	sw := s.Endpoint("sales-write")
	if !sw.RequireKey || !sw.RequireSession || !sw.HasGroups || sw.OrgFrom != OrgFromPath || sw.Anonymous || sw.Shadow {
		t.Errorf("sales-write compiled as %+v", sw)
	}
	if wh := s.Endpoint("whoami"); !wh.RequireKey || wh.RequireSession || wh.HasGroups || wh.OrgFrom != OrgNone {
		t.Errorf("whoami compiled as %+v", wh)
	}
	if h := s.Endpoint("health"); !h.Anonymous || h.RequireKey || h.RequireSession {
		t.Errorf("health compiled as %+v", h)
	}
}

// TestShippedExamples compiles every policy shipped in examples/.
func TestShippedExamples(t *testing.T) {
	files, err := filepath.Glob("../../examples/*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if !IsPolicyFile(f) {
			continue
		}
		n++
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := LoadPath(f, Options{}); err != nil {
				t.Errorf("%s", strings.Join(linesOf(err), "\n"))
			}
		})
	}
	if n == 0 {
		t.Fatal("no policies found in examples/")
	}
}

func TestLookupDemoCredentials(t *testing.T) {
	s, err := LoadPath(examplePolicy, Options{})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		kind   Kind
		value  string
		wantID string // "" means not found
		user   string
		tenant string
		org    string
		groups string
	}{
		{"tenant-level key", KindAPIKey, demoTenantKey, "kg_demo0001", "api-bot", "acme", "", "sales"},
		{"org-level key", KindAPIKey, demoOrgKey, "kg_demo0002", "support-bot", "acme", "acme-eu", "support"},
		{"session", KindSession, demoSession, "kg_ses00001", "alice", "acme", "", "sales"},
		{"key presented as a session", KindSession, demoTenantKey, "", "", "", "", ""},
		{"session presented as a key", KindAPIKey, demoSession, "", "", "", "", ""},
		{"unknown key", KindAPIKey, "kg_demo0001_oyCLM0LiJKAiVDtUBnYfhL3xoAZvuqnj2lMjzX", "", "", "", "", ""},
		{"empty", KindAPIKey, "", "", "", "", "", ""},
		{"digest itself", KindAPIKey, "f176da73dc3a428f591ebcc096320d260e8591f320c27f6aa663957de085a5b2", "", "", "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := s.Lookup(tc.kind, sha256.Sum256([]byte(tc.value)))
			if tc.wantID == "" {
				if p != nil {
					t.Fatalf("found %s, want nothing", p.ID)
				}
				return
			}
			if p == nil {
				t.Fatal("not found")
			}
			got := [...]string{p.ID, p.User, p.Tenant, p.Org, p.GroupsHeader(), p.Kind.String()}
			want := [...]string{tc.wantID, tc.user, tc.tenant, tc.org, tc.groups, tc.kind.String()}
			if got != want {
				t.Errorf("got %q, want %q", got, want)
			}
			if p.Disabled || p.ExpiredAt(time.Now().UnixNano()) {
				t.Error("demo credential is disabled or expired")
			}
		})
	}
}

func TestDigest(t *testing.T) {
	d := Digest(sha256.Sum256([]byte(demoTenantKey)))
	const hexDigits = "f176da73dc3a428f591ebcc096320d260e8591f320c27f6aa663957de085a5b2"
	if got := FormatDigest(d); got != "sha256:"+hexDigits {
		t.Errorf("FormatDigest = %s", got)
	}
	tests := []struct {
		in string
		ok bool
	}{
		{"sha256:" + hexDigits, true},
		{"sha256:" + strings.ToUpper(hexDigits), true},
		{"SHA256:" + hexDigits, false},
		{"sha256:" + hexDigits + "00", false},
		{"sha256: " + hexDigits[1:], false},
		{hexDigits, false},
		{"", false},
	}
	for _, tc := range tests {
		got, err := ParseDigest(tc.in)
		if (err == nil) != tc.ok || tc.ok && got != d {
			t.Errorf("ParseDigest(%q) = %x, %v; want ok %v", tc.in, got, err, tc.ok)
		}
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{KindAPIKey: "api_key", KindSession: "session", 0: "unknown"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", k, got, want)
		}
	}
}

const credentialsBase = `version: 1
groups:
  - name: sales
  - name: support
  - name: audit
tenants:
  - id: acme
    orgs: [acme-eu]
`

func TestGroupsSortedAndUnique(t *testing.T) {
	s := mustLoad(t, credentialsBase+`
api_keys:
  - id: k1
    hash: "sha256:1111111111111111111111111111111111111111111111111111111111111111"
    tenant: acme
    user: bot
    groups: [support, sales, support, audit, sales]
  - id: k2
    hash: "sha256:2222222222222222222222222222222222222222222222222222222222222222"
    tenant: acme
    user: bot
sessions:
  - id: s1
    hash: "sha256:3333333333333333333333333333333333333333333333333333333333333333"
    tenant: acme
    user: alice
    groups: [audit]
`)
	tests := []struct {
		kind   Kind
		digest string
		groups []string
		header string
	}{
		{KindAPIKey, "1", []string{"audit", "sales", "support"}, "audit,sales,support"},
		{KindAPIKey, "2", nil, ""},
		{KindSession, "3", []string{"audit"}, "audit"},
	}
	for _, tc := range tests {
		t.Run(tc.digest, func(t *testing.T) {
			d, _ := ParseDigest("sha256:" + strings.Repeat(tc.digest, 64))
			p := s.Lookup(tc.kind, d)
			if p == nil {
				t.Fatal("not found")
			}
			if !reflect.DeepEqual(p.Groups(), tc.groups) || p.GroupsHeader() != tc.header {
				t.Errorf("Groups = %q, GroupsHeader = %q; want %q, %q", p.Groups(), p.GroupsHeader(), tc.groups, tc.header)
			}
		})
	}
}

func TestEndpointAllows(t *testing.T) {
	s := mustLoad(t, credentialsBase+`
endpoints:
  - name: sales
    match: {path: /sales}
    groups: [sales, support]
  - name: open
    match: {path: /open}
api_keys:
  - {id: k-sales, hash: "sha256:1111111111111111111111111111111111111111111111111111111111111111", tenant: acme, user: bot, groups: [sales]}
  - {id: k-audit, hash: "sha256:2222222222222222222222222222222222222222222222222222222222222222", tenant: acme, user: bot, groups: [audit]}
  - {id: k-none, hash: "sha256:3333333333333333333333333333333333333333333333333333333333333333", tenant: acme, user: bot}
`)
	key := func(c string) *Principal {
		d, _ := ParseDigest("sha256:" + strings.Repeat(c, 64))
		return s.Lookup(KindAPIKey, d)
	}
	sales, audit, none := key("1"), key("2"), key("3")
	tests := []struct {
		endpoint string
		ps       []*Principal
		want     bool
	}{
		{"sales", []*Principal{sales}, true},
		{"sales", []*Principal{audit}, false},
		{"sales", []*Principal{none}, false},
		{"sales", []*Principal{audit, sales}, true},
		{"sales", []*Principal{nil, sales}, true},
		{"sales", nil, false},
		{"open", []*Principal{none}, true},
		{"open", nil, true},
	}
	for _, tc := range tests {
		var ids []string
		for _, p := range tc.ps {
			if p != nil {
				ids = append(ids, p.ID)
			} else {
				ids = append(ids, "nil")
			}
		}
		if got := s.Endpoint(tc.endpoint).Allows(tc.ps...); got != tc.want {
			t.Errorf("%s.Allows(%v) = %v, want %v", tc.endpoint, ids, got, tc.want)
		}
	}
}

func TestEndpointRules(t *testing.T) {
	s := mustLoad(t, `version: 1
endpoints:
  - name: default-require
    match: {path: /a}
  - name: session-only
    match: {path: /b}
    require: [session]
  - name: both
    match: {path: /c}
    require: [session, api_key]
  - name: shadowed
    match: {path: /d}
    mode: shadow
  - name: enforced
    match: {path: /e}
    mode: enforce
  - name: org-header
    match: {path: /f}
    org: {from: header, name: X-Org-ID}
  - name: anon
    match: {path: /g}
    anonymous: true
`)
	type rules struct {
		key, session, anon, shadow bool
		org                        OrgScope
		orgHeader                  string
	}
	want := map[string]rules{
		"default-require": {key: true},
		"session-only":    {session: true},
		"both":            {key: true, session: true},
		"shadowed":        {key: true, shadow: true},
		"enforced":        {key: true},
		"org-header":      {key: true, org: OrgFromHeader, orgHeader: "x-org-id"},
		"anon":            {anon: true},
	}
	for name, w := range want {
		e := s.Endpoint(name)
		got := rules{e.RequireKey, e.RequireSession, e.Anonymous, e.Shadow, e.OrgFrom, e.OrgHeader}
		if got != w {
			t.Errorf("%s: %+v, want %+v", name, got, w)
		}
	}
}

func TestExpiry(t *testing.T) {
	at := func(s string) int64 {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UnixNano()
	}
	tests := []struct {
		name       string
		expiresAt  string // YAML text after "expires_at: "; "" leaves it out
		validAt    []string
		expiredAt  []string
		alwaysGood bool
	}{
		{name: "none", alwaysGood: true},
		{name: "null", expiresAt: "null", alwaysGood: true},
		{
			name: "unquoted", expiresAt: "2027-06-30T00:00:00Z",
			validAt:   []string{"2026-01-01T00:00:00Z", "2027-06-29T23:59:59.999999999Z"},
			expiredAt: []string{"2027-06-30T00:00:00Z", "2030-01-01T00:00:00Z"},
		},
		{
			name: "quoted with offset", expiresAt: `"2027-06-30T02:00:00+02:00"`,
			validAt:   []string{"2027-06-29T23:59:59Z"},
			expiredAt: []string{"2027-06-30T00:00:00Z"},
		},
		{
			name: "date only", expiresAt: "2027-06-30",
			validAt:   []string{"2027-06-29T23:59:59Z"},
			expiredAt: []string{"2027-06-30T00:00:00Z"},
		},
		{
			name: "far future", expiresAt: "9999-12-31T23:59:59Z",
			validAt: []string{"2026-01-01T00:00:00Z", "2262-01-01T00:00:00Z"},
		},
		{
			name: "epoch", expiresAt: "1970-01-01T00:00:00Z",
			expiredAt: []string{"2026-01-01T00:00:00Z", "1970-01-01T00:00:00Z"},
		},
		{
			name: "long ago", expiresAt: "0001-01-01T00:00:00Z",
			expiredAt: []string{"2026-01-01T00:00:00Z", "1900-01-01T00:00:00Z"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := credentialsBase + `
api_keys:
  - id: k1
    hash: "sha256:1111111111111111111111111111111111111111111111111111111111111111"
    tenant: acme
    user: bot
`
			if tc.expiresAt != "" {
				text += "    expires_at: " + tc.expiresAt + "\n"
			}
			s := mustLoad(t, text)
			d, _ := ParseDigest("sha256:" + strings.Repeat("1", 64))
			p := s.Lookup(KindAPIKey, d)
			for _, v := range tc.validAt {
				if p.ExpiredAt(at(v)) {
					t.Errorf("expired at %s", v)
				}
			}
			for _, v := range tc.expiredAt {
				if !p.ExpiredAt(at(v)) {
					t.Errorf("not expired at %s", v)
				}
			}
			if tc.alwaysGood {
				for _, now := range []int64{0, 1, time.Now().UnixNano(), 1<<63 - 1} {
					if p.ExpiredAt(now) {
						t.Errorf("a credential without expires_at expired at %d", now)
					}
				}
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	s := mustLoad(t, "version: 1\n")
	got := struct {
		Realm, SessionHeader, IdentityPrefix string
		APIKeyHeaders                        []string
		Strip, DefaultAllow                  bool
		MaxOrgKeys                           int
		Headers                              IdentityHeaders
		Challenge, ChallengeInvalid          string
	}{s.Realm, s.SessionHeader, s.IdentityPrefix, s.APIKeyHeaders, s.StripCredentials, s.DefaultAllow, s.MaxOrgKeys, s.Headers, s.Challenge, s.ChallengeInvalid}
	want := got
	want.Realm, want.SessionHeader, want.IdentityPrefix = "keygate", "session", "x-keygate-"
	want.APIKeyHeaders = []string{"authorization", "x-api-key"}
	want.Strip, want.DefaultAllow, want.MaxOrgKeys = true, false, 5
	want.Headers = IdentityHeaders{
		User: "x-keygate-user", Tenant: "x-keygate-tenant", Org: "x-keygate-org", KeyID: "x-keygate-key-id",
		SessionID: "x-keygate-session-id", Groups: "x-keygate-groups", Auth: "x-keygate-auth", Endpoint: "x-keygate-endpoint",
	}
	want.Challenge, want.ChallengeInvalid = `Bearer realm="keygate"`, `Bearer realm="keygate", error="invalid_token"`
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", got, want)
	}
	if c := s.Counts(); c != (Counts{}) {
		t.Errorf("Counts() = %+v", c)
	}
	if e, org := s.Match("GET", "", "/"); e != nil || org != "" {
		t.Errorf("a policy without endpoints matched %v", e)
	}
}

func TestSettings(t *testing.T) {
	s := mustLoad(t, `version: 1
settings:
  realm: internal
  api_key_headers: [X-Api-Token, Authorization]
  session_header: X-Session
  identity_header_prefix: X-Auth-
  strip_credentials: false
  max_org_keys: 1
  default: allow
`)
	if s.Realm != "internal" || s.SessionHeader != "x-session" || s.IdentityPrefix != "x-auth-" ||
		!reflect.DeepEqual(s.APIKeyHeaders, []string{"x-api-token", "authorization"}) ||
		s.StripCredentials || s.MaxOrgKeys != 1 || !s.DefaultAllow {
		t.Errorf("settings compiled as %+v", s)
	}
	if s.Headers.User != "x-auth-user" || s.Headers.Endpoint != "x-auth-endpoint" {
		t.Errorf("Headers = %+v", s.Headers)
	}
	if s.Challenge != `Bearer realm="internal"` {
		t.Errorf("Challenge = %s", s.Challenge)
	}
}

// TestIdentityPrefix: keygate sets the identity headers and removes every
// inbound header that starts with the prefix, so a prefix that covers a
// standard or proxy header would strip it from every request. Prefixes of
// one's own stay usable.
func TestIdentityPrefix(t *testing.T) {
	tests := []struct {
		prefix string
		want   string // "" when accepted, else part of the error
	}{
		{"x-keygate-", ""},
		{"X-Keygate-", ""},
		{"x-auth-", ""},
		{"x-acme-", ""},
		{"x-id-", ""},
		{"kg-", ""},
		{"acme-identity-", ""},
		{"x-keygate", "must end with '-'"},
		{"content-", `would take over the "content-*" headers`},
		{"content-x-", `would take over the "content-*" headers`},
		{"x-forwarded-", `would take over the "x-forwarded-*" headers`},
		{"x-forwarded-keygate-", `would take over the "x-forwarded-*" headers`},
		{"x-", `would take over the "x-forwarded-*" headers`},
		{"x-envoy-", `would take over the "x-envoy-*" headers`},
		{"grpc-", `would take over the "grpc-*" headers`},
		{"accept-", `would take over the "accept-*" headers`},
		{"sec-", `would take over the "sec-*" headers`},
		{"proxy-", `would take over the "proxy-*" headers`},
		{"x-request-", `would take over "x-request-id"`},
		{"x-real-", `would take over "x-real-ip"`},
		{"x-original-", `would take over "x-original-uri"`},
		{"x-b3-", `would take over the "x-b3-*" headers`},
		{"user-", `would take over "user-agent"`},
		{"transfer-", `would take over "transfer-encoding"`},
		{"x-api-", `credential header "x-api-key" starts with the identity header prefix "x-api-"`},
	}
	for _, tc := range tests {
		t.Run(tc.prefix, func(t *testing.T) {
			text := "version: 1\nsettings:\n  identity_header_prefix: " + tc.prefix + "\n"
			s, err := Load([]Input{{Name: "p.yaml", Data: []byte(text)}}, Options{})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if want := strings.ToLower(tc.prefix) + "user"; s.Headers.User != want {
					t.Errorf("user header %q, want %q", s.Headers.User, want)
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) || len(es) != 1 {
				t.Fatalf("want one located error, got %v", err)
			}
			if e := es[0]; e.Line != 3 || e.Path != "settings.identity_header_prefix" || !strings.Contains(e.Msg, tc.want) {
				t.Errorf("got %v, want line 3, settings.identity_header_prefix, ...%s...", e, tc.want)
			}
		})
	}
}

// TestReservedHeaders keeps the reserved list well formed: lower-case
// tokens, a family ends with '-', and the default prefix clears it.
func TestReservedHeaders(t *testing.T) {
	for _, r := range reservedHeaders {
		name := strings.TrimSuffix(r, "-")
		if r != strings.ToLower(r) || !validHeader(name) {
			t.Errorf("reserved header %q is not a lower-case header name", r)
		}
	}
	if msg := identityPrefixProblem(DefaultIdentityPrefix); msg != "" {
		t.Errorf("default prefix refused: %s", msg)
	}
}

func TestChallenge(t *testing.T) {
	s, err := LoadPath(examplePolicy, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if want := `Bearer realm="api.example.com"`; s.Challenge != want {
		t.Errorf("Challenge = %s, want %s", s.Challenge, want)
	}
	if want := `Bearer realm="api.example.com", error="invalid_token"`; s.ChallengeInvalid != want {
		t.Errorf("ChallengeInvalid = %s, want %s", s.ChallengeInvalid, want)
	}
}

func TestMaxOrgKeysCountsActiveKeysOnly(t *testing.T) {
	// Two active organization-level keys with max_org_keys 2; a disabled key,
	// an expired one, a tenant-level key, a session and another
	// organization's key do not count.
	s := mustLoad(t, `version: 1
settings: {max_org_keys: 2}
tenants:
  - id: acme
    orgs: [acme-eu, acme-us]
api_keys:
  - {id: k1, hash: "sha256:1111111111111111111111111111111111111111111111111111111111111111", tenant: acme, org: acme-eu, user: bot}
  - {id: k2, hash: "sha256:2222222222222222222222222222222222222222222222222222222222222222", tenant: acme, org: acme-eu, user: bot, disabled: true}
  - {id: k3, hash: "sha256:3333333333333333333333333333333333333333333333333333333333333333", tenant: acme, user: bot}
  - {id: k4, hash: "sha256:4444444444444444444444444444444444444444444444444444444444444444", tenant: acme, org: acme-eu, user: bot}
  - {id: k5, hash: "sha256:5555555555555555555555555555555555555555555555555555555555555555", tenant: acme, org: acme-us, user: bot}
  - {id: k6, hash: "sha256:7777777777777777777777777777777777777777777777777777777777777777", tenant: acme, org: acme-eu, user: bot, expires_at: 2020-01-01T00:00:00Z}
sessions:
  - {id: s1, hash: "sha256:6666666666666666666666666666666666666666666666666666666666666666", tenant: acme, org: acme-eu, user: alice}
`)
	if got := s.Counts().APIKeys; got != 6 {
		t.Errorf("APIKeys = %d, want 6", got)
	}
	d, _ := ParseDigest("sha256:" + strings.Repeat("2", 64))
	if p := s.Lookup(KindAPIKey, d); p == nil || !p.Disabled {
		t.Errorf("the disabled key is missing or enabled: %+v", p)
	}
}

// TestJSONAndYAMLSameSnapshot compiles the same policy written as YAML and
// as JSON (indented with tabs, as json.MarshalIndent writes it).
func TestJSONAndYAMLSameSnapshot(t *testing.T) {
	example, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	extra := credentialsBase + `
settings:
  realm: json.example.com
  strip_credentials: false
  max_org_keys: 3
  default: allow
endpoints:
  - name: shadow
    match: {methods: [get], path: "/orgs/{org}/x/*", host: "*.example.com"}
    groups: [audit]
    org: {from: path, name: org}
    mode: shadow
  - name: hdr
    match: {path: "/h/**"}
    require: [session]
    org: {from: header, name: x-org}
api_keys:
  - id: k1
    name: expiring
    hash: "sha256:1111111111111111111111111111111111111111111111111111111111111111"
    tenant: acme
    org: acme-eu
    user: bot
    groups: [sales, audit]
    environment: staging
    created_at: 2026-01-01T00:00:00Z
    expires_at: 2027-06-30T00:00:00Z
    disabled: true
sessions:
  - id: s1
    hash: "sha256:2222222222222222222222222222222222222222222222222222222222222222"
    tenant: acme
    user: alice
    expires_at: "2026-12-01"
`
	for name, text := range map[string]string{"example": string(example), "every field": extra} {
		t.Run(name, func(t *testing.T) {
			var v any
			if err := yaml.Unmarshal([]byte(text), &v); err != nil {
				t.Fatal(err)
			}
			js, err := json.MarshalIndent(v, "", "\t")
			if err != nil {
				t.Fatal(err)
			}
			opt := Options{Generation: 3, Source: "policy"}
			fromYAML, err := Load([]Input{{Name: "policy.yaml", Data: []byte(text)}}, opt)
			if err != nil {
				t.Fatal(strings.Join(linesOf(err), "\n"))
			}
			fromJSON, err := Load([]Input{{Name: "policy.json", Data: js}}, opt)
			if err != nil {
				t.Fatalf("%s\n%s", strings.Join(linesOf(err), "\n"), js)
			}
			fromYAML.LoadedAt, fromJSON.LoadedAt = time.Time{}, time.Time{}
			// Only JSON's credentials can be reused by a reload (reuse.go).
			fromJSON.credSums, fromJSON.credLens = nil, nil
			if !reflect.DeepEqual(fromYAML, fromJSON) {
				t.Errorf("YAML and JSON compile differently:\nYAML %+v\nJSON %+v", fromYAML, fromJSON)
			}
		})
	}
}

func TestTimestampRoundTrip(t *testing.T) {
	in := struct {
		At Timestamp `yaml:"at"`
	}{Timestamp{time.Date(2027, 6, 30, 12, 30, 0, 0, time.UTC)}}
	out, err := yaml.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "2027-06-30T12:30:00Z") {
		t.Errorf("marshalled as %q", out)
	}
	back := in
	back.At = Timestamp{}
	if err := yaml.Unmarshal(out, &back); err != nil || !back.At.Equal(in.At.Time) {
		t.Errorf("round trip: %v, %v", back.At, err)
	}
}

func TestManagementRules(t *testing.T) {
	s := mustLoad(t, `version: 1
settings: {session_cookie: kg_session}
groups: [{name: org-admin}, {name: sign-in}, {name: sales}, {name: support}, {name: ops}]
tenants: [{id: acme, orgs: [acme-eu]}]
management:
  key_admin_groups: [org-admin]
  session_issuer_groups: [sign-in]
  assignable_groups: [support, sales, sales]
  max_session_ttl: 7d
api_keys:
  - {id: admin, hash: "sha256:1111111111111111111111111111111111111111111111111111111111111111", tenant: acme, org: acme-eu, user: ann, groups: [org-admin]}
  - {id: login, hash: "sha256:2222222222222222222222222222222222222222222222222222222222222222", tenant: acme, user: login, groups: [sign-in, ops]}
  - {id: plain, hash: "sha256:3333333333333333333333333333333333333333333333333333333333333333", tenant: acme, user: bob, created_by: ann}
`)
	byID := map[string]*Principal{}
	for _, p := range s.APIKeys() {
		byID[p.ID] = p
	}
	m := &s.Management
	for _, tc := range []struct {
		id            string
		admin, issuer bool
	}{
		{"admin", true, false},
		{"login", false, true},
		{"plain", false, false},
	} {
		if got := m.KeyAdmin(byID[tc.id]); got != tc.admin {
			t.Errorf("KeyAdmin(%s) = %v, want %v", tc.id, got, tc.admin)
		}
		if got := m.SessionIssuer(byID[tc.id]); got != tc.issuer {
			t.Errorf("SessionIssuer(%s) = %v, want %v", tc.id, got, tc.issuer)
		}
	}
	if m.KeyAdmin(nil) {
		t.Error("KeyAdmin(nil) = true")
	}
	if got := m.AssignableGroups(); !reflect.DeepEqual(got, []string{"sales", "support"}) {
		t.Errorf("AssignableGroups = %v", got)
	}
	if !m.Assignable("sales") || m.Assignable("org-admin") {
		t.Error("Assignable: sales must be, org-admin must not be")
	}
	if m.MaxSessionTTL != 7*24*time.Hour {
		t.Errorf("MaxSessionTTL = %v, want 168h", m.MaxSessionTTL)
	}
	if s.SessionCookie != "kg_session" {
		t.Errorf("SessionCookie = %q", s.SessionCookie)
	}
	// Without the section nobody may manage anything.
	none := mustLoad(t, "version: 1\ngroups: [{name: org-admin}]\n")
	if none.Management.KeyAdmin(byID["admin"]) || none.Management.MaxSessionTTL != DefaultMaxSessionTTL {
		t.Errorf("no management section: %+v", none.Management)
	}
}

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"90s", 90 * time.Second, false},
		{"24h", 24 * time.Hour, false},
		{"7d", 7 * 24 * time.Hour, false},
		{"0d", 0, false},
		{"1.5d", 0, true},
		{"-1d", 0, true},
		{"soon", 0, true},
		{"", 0, true},
	} {
		got, err := ParseDuration(tc.in)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}
