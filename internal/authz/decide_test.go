package authz_test

import (
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
)

// Raw credentials of the test policy. Any string whose SHA-256 the policy
// lists is valid; kgKey is in keygate's own checksummed format.
const (
	tenantKey   = "tenant-key-acme"
	orgKey      = "org-key-acme-eu"
	globexKey   = "tenant-key-globex"
	expiredKey  = "expired-key"
	disabledKey = "disabled-key"
	opsKey      = "ops-key"
	aliceSess   = "session-alice"
	globexSess  = "session-globex"
	expiredSess = "session-expired"
	kgKey       = "kg_test0001_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAxxxxxx" // checksum fixed in init
)

var kgKeyValue string

var testPolicy = template.Must(template.New("p").Funcs(template.FuncMap{
	"h": func(s string) string { return policy.FormatDigest(apikey.Digest(s)) },
}).Parse(`version: 1
settings: {realm: api.example.com}
groups: [{name: sales}, {name: support}, {name: ops}]
tenants:
  - {id: acme, orgs: [acme-eu, acme-us]}
  - {id: globex, orgs: [globex-main]}
endpoints:
  - {name: health, match: {path: /healthz}, anonymous: true}
  - {name: sales-write, match: {methods: [POST], path: "/orgs/{org}/sales/**", host: api.example.com}, require: [api_key, session], groups: [sales], org: {from: path, name: org}}
  - {name: sales-read, match: {methods: [GET], path: "/orgs/{org}/sales/**"}, groups: [sales, support], org: {from: path, name: org}}
  - {name: by-header, match: {path: /reports}, org: {from: header, name: x-org-id}}
  - {name: session-only, match: {path: /me}, require: [session]}
  - {name: shadowed, match: {path: "/beta/**"}, groups: [ops], mode: shadow}
  - {name: whoami, match: {path: /whoami}}
api_keys:
  - {id: k-tenant, hash: "{{h "tenant-key-acme"}}", tenant: acme, user: api-bot, groups: [sales]}
  - {id: k-org, hash: "{{h "org-key-acme-eu"}}", tenant: acme, org: acme-eu, user: eu-bot, groups: [support]}
  - {id: k-globex, hash: "{{h "tenant-key-globex"}}", tenant: globex, user: gx-bot, groups: [sales]}
  - {id: k-expired, hash: "{{h "expired-key"}}", tenant: acme, user: old-bot, groups: [sales], expires_at: 2020-01-01T00:00:00Z}
  - {id: k-disabled, hash: "{{h "disabled-key"}}", tenant: acme, user: off-bot, groups: [sales], disabled: true}
  - {id: k-ops, hash: "{{h "ops-key"}}", tenant: acme, user: ops-bot, groups: [ops, support]}
  - {id: kg_test0001, hash: "{{h .KG}}", tenant: acme, user: kg-bot, groups: [sales]}
sessions:
  - {id: s-alice, hash: "{{h "session-alice"}}", tenant: acme, user: alice, groups: [support, ops]}
  - {id: s-globex, hash: "{{h "session-globex"}}", tenant: globex, user: bob, groups: [sales]}
  - {id: s-expired, hash: "{{h "session-expired"}}", tenant: acme, user: carol, groups: [sales], expires_at: 2020-01-01T00:00:00Z}
`))

type store struct{ s *policy.Snapshot }

func (s *store) Current() *policy.Snapshot { return s.s }

func compileTestPolicy(t testing.TB, extra string) *policy.Snapshot {
	t.Helper()
	var b strings.Builder
	if err := testPolicy.Execute(&b, map[string]string{"KG": kgKeyValue}); err != nil {
		t.Fatal(err)
	}
	snap, err := policy.Load([]policy.Input{{Name: "test.yaml", Data: []byte(b.String() + extra)}}, policy.Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func init() {
	var err error
	if kgKeyValue, err = apikey.New("kg_test0001"); err != nil {
		panic(err)
	}
}

func newAuthorizer(t testing.TB, snap *policy.Snapshot) (*authz.Authorizer, *store) {
	t.Helper()
	c, err := cache.New(1000, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	st := &store{snap}
	return authz.New(st, c), st
}

func bearer(k string) string { return "Bearer " + k }

// TestDecide covers every row of DESIGN.md's answers table and the rules
// behind them, as a user of the policy above would see them.
func TestDecide(t *testing.T) {
	a, _ := newAuthorizer(t, compileTestPolicy(t, ""))
	type want struct {
		result   authz.Result
		status   int
		reason   authz.Reason
		user     string
		tenant   string
		org      string
		groups   string
		auth     string
		endpoint string
		shadowed bool
	}
	tests := []struct {
		name     string
		method   string
		host     string
		path     string
		headers  map[string]string
		endpoint string
		want     want
	}{
		// allowed
		{name: "tenant key reaches its tenant's org", method: "GET", path: "/orgs/acme-us/sales/q1",
			headers: map[string]string{"authorization": bearer(tenantKey)},
			want:    want{result: authz.Allow, status: 200, user: "api-bot", tenant: "acme", org: "acme-us", groups: "sales", auth: "api_key", endpoint: "sales-read"}},
		{name: "org key reaches its own org", method: "GET", path: "/orgs/acme-eu/sales/q1",
			headers: map[string]string{"x-api-key": orgKey},
			want:    want{result: authz.Allow, status: 200, user: "eu-bot", tenant: "acme", org: "acme-eu", groups: "support", auth: "api_key", endpoint: "sales-read"}},
		{name: "bearer scheme is case-insensitive", method: "GET", path: "/whoami",
			headers: map[string]string{"authorization": "bEaReR " + tenantKey},
			want:    want{result: authz.Allow, status: 200, user: "api-bot", tenant: "acme", groups: "sales", auth: "api_key", endpoint: "whoami"}},
		{name: "key and session: session user acts, groups are the union", method: "POST", host: "api.example.com:8443", path: "/orgs/acme-eu/sales/orders",
			headers: map[string]string{"authorization": bearer(tenantKey), "session": aliceSess},
			want:    want{result: authz.Allow, status: 200, user: "alice", tenant: "acme", org: "acme-eu", groups: "ops,sales,support", auth: "api_key+session", endpoint: "sales-write", reason: authz.ReasonAllowed}},
		{name: "any one of the endpoint's groups is enough", method: "GET", path: "/orgs/acme-eu/sales/q1",
			headers: map[string]string{"authorization": bearer(opsKey)},
			want:    want{result: authz.Allow, status: 200, user: "ops-bot", tenant: "acme", org: "acme-eu", groups: "ops,support", auth: "api_key", endpoint: "sales-read"}},
		{name: "session-only endpoint", method: "GET", path: "/me",
			headers: map[string]string{"session": aliceSess},
			want:    want{result: authz.Allow, status: 200, user: "alice", tenant: "acme", groups: "ops,support", auth: "session", endpoint: "session-only"}},
		{name: "org from header", method: "GET", path: "/reports",
			headers: map[string]string{"x-api-key": orgKey, "x-org-id": "acme-eu"},
			want:    want{result: authz.Allow, status: 200, user: "eu-bot", tenant: "acme", org: "acme-eu", groups: "support", auth: "api_key", endpoint: "by-header"}},
		{name: "kg_ key with valid checksum", method: "GET", path: "/whoami",
			headers: map[string]string{"authorization": bearer(kgKeyValue)},
			want:    want{result: authz.Allow, status: 200, user: "kg-bot", tenant: "acme", groups: "sales", auth: "api_key", endpoint: "whoami"}},
		{name: "anonymous endpoint without credentials", method: "GET", path: "/healthz",
			want: want{result: authz.Allow, status: 200, reason: authz.ReasonAnonymous, auth: "anonymous", endpoint: "health"}},
		{name: "anonymous endpoint identifies a valid key", method: "GET", path: "/healthz",
			headers: map[string]string{"x-api-key": orgKey},
			want:    want{result: authz.Allow, status: 200, reason: authz.ReasonAnonymous, user: "eu-bot", tenant: "acme", org: "acme-eu", groups: "support", auth: "api_key", endpoint: "health"}},
		{name: "anonymous endpoint ignores an invalid key", method: "GET", path: "/healthz",
			headers: map[string]string{"x-api-key": "nope"},
			want:    want{result: authz.Allow, status: 200, reason: authz.ReasonAnonymous, auth: "anonymous", endpoint: "health"}},
		{name: "context extension selects the endpoint", method: "GET", path: "/anything/else", endpoint: "whoami",
			headers: map[string]string{"x-api-key": tenantKey},
			want:    want{result: authz.Allow, status: 200, user: "api-bot", tenant: "acme", groups: "sales", auth: "api_key", endpoint: "whoami"}},
		{name: "shadow mode allows what it would deny", method: "GET", path: "/beta/x",
			headers: map[string]string{"x-api-key": tenantKey},
			want:    want{result: authz.Allow, status: 200, reason: authz.ReasonGroupDenied, shadowed: true, user: "api-bot", tenant: "acme", groups: "sales", auth: "api_key", endpoint: "shadowed"}},

		// credential missing: 401
		{name: "no key", method: "GET", path: "/whoami",
			want: want{result: authz.Deny, status: 401, reason: authz.ReasonMissingCredential, endpoint: "whoami"}},
		{name: "key but no required session", method: "POST", path: "/orgs/acme-eu/sales/orders",
			headers: map[string]string{"x-api-key": tenantKey},
			want:    want{result: authz.Deny, status: 401, reason: authz.ReasonMissingCredential, endpoint: "sales-write"}},
		{name: "authorization with another scheme is no key", method: "GET", path: "/whoami",
			headers: map[string]string{"authorization": "Basic dXNlcjpwYXNz"},
			want:    want{result: authz.Deny, status: 401, reason: authz.ReasonMissingCredential, endpoint: "whoami"}},

		// credential unknown, expired, disabled: 401 invalid_token
		{name: "unknown key", method: "GET", path: "/whoami",
			headers: map[string]string{"x-api-key": "not-a-key"},
			want:    want{result: authz.Deny, status: 401, reason: authz.ReasonUnknownCredential, endpoint: "whoami"}},
		{name: "expired key", method: "GET", path: "/whoami",
			headers: map[string]string{"x-api-key": expiredKey},
			want:    want{result: authz.Deny, status: 401, reason: authz.ReasonExpiredCredential, endpoint: "whoami"}},
		{name: "disabled key", method: "GET", path: "/whoami",
			headers: map[string]string{"x-api-key": disabledKey},
			want:    want{result: authz.Deny, status: 401, reason: authz.ReasonDisabledCredential, endpoint: "whoami"}},
		{name: "kg_ key with a bad checksum is refused before lookup", method: "GET", path: "/whoami",
			headers: map[string]string{"x-api-key": corruptLast(kgKeyValue)},
			want:    want{result: authz.Deny, status: 401, reason: authz.ReasonMalformedCredential, endpoint: "whoami"}},
		{name: "invalid session fails even where only a key is required", method: "GET", path: "/whoami",
			headers: map[string]string{"x-api-key": tenantKey, "session": expiredSess},
			want:    want{result: authz.Deny, status: 401, reason: authz.ReasonExpiredCredential, endpoint: "whoami"}},

		{name: "two different keys are refused, not one picked", method: "GET", path: "/whoami",
			headers: map[string]string{"authorization": bearer(tenantKey), "x-api-key": "not-a-key"},
			want:    want{result: authz.Deny, status: 401, reason: authz.ReasonConflictingCredentials, endpoint: "whoami"}},
		{name: "two valid keys are refused too", method: "GET", path: "/whoami",
			headers: map[string]string{"authorization": bearer(tenantKey), "x-api-key": orgKey},
			want:    want{result: authz.Deny, status: 401, reason: authz.ReasonConflictingCredentials, endpoint: "whoami"}},
		{name: "the same key in both headers is one key", method: "GET", path: "/whoami",
			headers: map[string]string{"authorization": bearer(tenantKey), "x-api-key": tenantKey},
			want:    want{result: authz.Allow, status: 200, user: "api-bot", tenant: "acme", groups: "sales", auth: "api_key", endpoint: "whoami"}},

		// group or organization not allowed: 403
		{name: "group not allowed", method: "POST", path: "/orgs/acme-eu/sales/orders",
			headers: map[string]string{"x-api-key": orgKey, "session": aliceSess},
			want:    want{result: authz.Deny, status: 403, reason: authz.ReasonGroupDenied, endpoint: "sales-write"}},
		{name: "shadow endpoint allows its own group normally", method: "GET", path: "/beta/x",
			headers: map[string]string{"x-api-key": opsKey},
			want:    want{result: authz.Allow, status: 200, user: "ops-bot", tenant: "acme", groups: "ops,support", auth: "api_key", endpoint: "shadowed"}},
		{name: "a disabled key denies even next to a valid session", method: "GET", path: "/orgs/acme-eu/sales/q1",
			headers: map[string]string{"session": aliceSess, "x-api-key": disabledKey},
			want:    want{result: authz.Deny, status: 401, reason: authz.ReasonDisabledCredential, endpoint: "sales-read"}},
		{name: "org key on another org", method: "GET", path: "/orgs/acme-us/sales/q1",
			headers: map[string]string{"x-api-key": orgKey},
			want:    want{result: authz.Deny, status: 403, reason: authz.ReasonOrgDenied, endpoint: "sales-read"}},
		{name: "tenant key on another tenant's org", method: "GET", path: "/orgs/globex-main/sales/q1",
			headers: map[string]string{"x-api-key": tenantKey},
			want:    want{result: authz.Deny, status: 403, reason: authz.ReasonOrgDenied, endpoint: "sales-read"}},
		{name: "unknown org", method: "GET", path: "/orgs/nobody/sales/q1",
			headers: map[string]string{"x-api-key": tenantKey},
			want:    want{result: authz.Deny, status: 403, reason: authz.ReasonOrgDenied, endpoint: "sales-read"}},
		{name: "org header missing", method: "GET", path: "/reports",
			headers: map[string]string{"x-api-key": orgKey},
			want:    want{result: authz.Deny, status: 403, reason: authz.ReasonOrgMissing, endpoint: "by-header"}},
		{name: "key and session of different tenants", method: "GET", path: "/whoami",
			headers: map[string]string{"x-api-key": tenantKey, "session": globexSess},
			want:    want{result: authz.Deny, status: 403, reason: authz.ReasonTenantMismatch, endpoint: "whoami"}},

		// no endpoint matches, default deny: 403
		{name: "no endpoint matches", method: "GET", path: "/nowhere",
			headers: map[string]string{"x-api-key": tenantKey},
			want:    want{result: authz.Deny, status: 403, reason: authz.ReasonNoMatch}},
		{name: "method does not match", method: "DELETE", path: "/orgs/acme-eu/sales/q1",
			headers: map[string]string{"x-api-key": tenantKey},
			want:    want{result: authz.Deny, status: 403, reason: authz.ReasonNoMatch}},
		{name: "host does not match", method: "POST", host: "evil.example.com", path: "/orgs/acme-eu/sales/q1",
			headers: map[string]string{"x-api-key": tenantKey, "session": aliceSess},
			want:    want{result: authz.Deny, status: 403, reason: authz.ReasonNoMatch}},
		{name: "unknown context endpoint", method: "GET", path: "/whoami", endpoint: "nope",
			headers: map[string]string{"x-api-key": tenantKey},
			want:    want{result: authz.Deny, status: 403, reason: authz.ReasonUnknownEndpoint}},
		{name: "path escaping the root", method: "GET", path: "/orgs/../../etc/passwd",
			want: want{result: authz.Deny, status: 403, reason: authz.ReasonBadPath}},
		{name: "encoded slash", method: "GET", path: "/orgs/acme-eu%2Fsales/q1",
			headers: map[string]string{"x-api-key": tenantKey},
			want:    want{result: authz.Deny, status: 403, reason: authz.ReasonBadPath}},
		{name: "query string does not affect matching", method: "GET", path: "/whoami?redirect=/healthz",
			headers: map[string]string{"x-api-key": tenantKey},
			want:    want{result: authz.Allow, status: 200, user: "api-bot", tenant: "acme", groups: "sales", auth: "api_key", endpoint: "whoami"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := tt.host
			if host == "" {
				host = "api.example.com"
			}
			req := authz.Request{Method: tt.method, Host: host, Path: tt.path, Headers: authz.MapHeaders(tt.headers), Endpoint: tt.endpoint}
			d := a.Decide(&req)
			got := want{result: d.Result, status: d.Status, reason: d.Reason, user: d.User(), tenant: d.Tenant, org: d.Org,
				groups: d.Groups(), auth: d.Auth(), endpoint: d.EndpointName(), shadowed: d.Shadowed}
			if d.Result == authz.Deny {
				// A denial names no one upstream; the identity it keeps for
				// the log is TestDenialKeepsVerifiedIdentity's.
				got.user, got.tenant, got.org, got.groups, got.auth = "", "", "", "", ""
			}
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func digest(s string) policy.Digest { return apikey.Digest(s) }

// corruptLast changes a key's last character, whatever it is.
func corruptLast(k string) string {
	last := byte('0')
	if k[len(k)-1] == '0' {
		last = '1'
	}
	return k[:len(k)-1] + string(last)
}

// TestBusy: Busy says whether requests were decided in the last 100 ms,
// which reloads use to give way to them.
func TestBusy(t *testing.T) {
	c, err := cache.New(1000, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	a := authz.New(&store{compileTestPolicy(t, "")}, c, authz.WithClock(func() time.Time { return now }))
	if a.Busy() {
		t.Fatal("busy before any request")
	}
	a.Decide(&authz.Request{Method: "GET", Path: "/whoami"})
	now = now.Add(99 * time.Millisecond)
	if !a.Busy() {
		t.Fatal("not busy 99 ms after a request")
	}
	now = now.Add(2 * time.Millisecond)
	if a.Busy() {
		t.Fatal("still busy 101 ms after the last request")
	}
}
