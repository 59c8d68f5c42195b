package authz_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/policy"
)

// hardPolicy is the policy of the hardening tests (issue 10): a DELETE-only
// rule in front of a catch-all, shadow endpoints with org rules, and
// organization-level credentials of two organizations of one tenant.
func hardPolicy(t testing.TB) *policy.Snapshot {
	t.Helper()
	h := func(s string) string { return policy.FormatDigest(digest(s)) }
	text := `version: 1
settings: {realm: api.example.com}
groups: [{name: sales}, {name: ops}]
tenants:
  - {id: acme, orgs: [acme-eu, acme-us]}
  - {id: globex, orgs: [globex-main]}
endpoints:
  - {name: items-delete, match: {methods: [DELETE], path: "/items/**"}, groups: [ops]}
  - {name: items, match: {path: "/items/**"}, anonymous: true}
  - {name: shadow-path, match: {path: "/sorgs/{org}/**"}, groups: [ops], org: {from: path, name: org}, mode: shadow}
  - {name: shadow-header, match: {path: /sreports}, org: {from: header, name: x-org-id}, mode: shadow}
  - {name: shadow-any, match: {path: /sany}, groups: [ops], mode: shadow}
  - {name: by-header, match: {path: /reports}, org: {from: header, name: x-org-id}}
  - {name: docs, match: {path: "/docs/**"}, anonymous: true}
  - {name: whoami, match: {path: /whoami}}
api_keys:
  - {id: k-tenant, hash: "` + h(tenantKey) + `", tenant: acme, user: api-bot, groups: [sales]}
  - {id: k-org, hash: "` + h(orgKey) + `", tenant: acme, org: acme-eu, user: eu-bot, groups: [sales]}
  - {id: k-ops, hash: "` + h(opsKey) + `", tenant: acme, user: ops-bot, groups: [ops]}
sessions:
  - {id: s-alice, hash: "` + h(aliceSess) + `", tenant: acme, user: alice, groups: [sales]}
  - {id: s-us, hash: "` + h(usSess) + `", tenant: acme, org: acme-us, user: carol, groups: [sales]}
  - {id: s-globex, hash: "` + h(globexSess) + `", tenant: globex, user: bob, groups: [sales]}
`
	snap, err := policy.Load([]policy.Input{{Name: "hard.yaml", Data: []byte(text)}}, policy.Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

const usSess = "session-carol-acme-us"

// outcome is what a user of an answer notices: status, reason, and on an
// allow the identity headers set and the inbound headers removed.
type outcome struct {
	status   int
	reason   authz.Reason
	shadowed bool
	set      string // sorted name=value pairs
	remove   string // sorted names
}

func (o outcome) String() string {
	return fmt.Sprintf("%d %v shadowed=%v set=[%s] remove=[%s]", o.status, o.reason, o.shadowed, o.set, o.remove)
}

func outcomeOf(d *authz.Decision, in authz.Headers) outcome {
	o := outcome{status: d.Status, reason: d.Reason, shadowed: d.Shadowed}
	set := d.IdentityHeaders(nil)
	var kv []string
	for _, h := range set {
		kv = append(kv, h.Name+"="+h.Value)
	}
	slices.Sort(kv)
	o.set = strings.Join(kv, " ")
	if d.Result == authz.Allow {
		rm := d.HeadersToRemove(nil, in, set)
		slices.Sort(rm)
		o.remove = strings.Join(rm, " ")
	}
	return o
}

// TestMethodCase: a method is matched whatever its case, as a backend that
// upper-cases methods would route it; a method that is not an RFC 9110
// token is refused.
func TestMethodCase(t *testing.T) {
	a, _ := newAuthorizer(t, hardPolicy(t))
	key := map[string]string{"x-api-key": tenantKey}
	tests := []struct {
		method   string
		status   int
		reason   authz.Reason
		endpoint string
	}{
		{"DELETE", 403, authz.ReasonGroupDenied, "items-delete"},
		{"delete", 403, authz.ReasonGroupDenied, "items-delete"},
		{"Delete", 403, authz.ReasonGroupDenied, "items-delete"},
		{"dELETe", 403, authz.ReasonGroupDenied, "items-delete"},
		{"GET", 200, authz.ReasonAnonymous, "items"},
		{"get", 200, authz.ReasonAnonymous, "items"},
		{"PROPFIND", 200, authz.ReasonAnonymous, "items"}, // a token no rule names: the catch-all
		{"m-search", 200, authz.ReasonAnonymous, "items"},
		{"", 403, authz.ReasonBadMethod, ""},
		{"DELETE ", 403, authz.ReasonBadMethod, ""},
		{" DELETE", 403, authz.ReasonBadMethod, ""},
		{"DEL ETE", 403, authz.ReasonBadMethod, ""},
		{"DELETE\x00", 403, authz.ReasonBadMethod, ""},
		{"DEL(ETE)", 403, authz.ReasonBadMethod, ""},
		{"GET,DELETE", 403, authz.ReasonBadMethod, ""},
		{"DELETÉ", 403, authz.ReasonBadMethod, ""},
		{"\xff", 403, authz.ReasonBadMethod, ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.method), func(t *testing.T) {
			req := authz.Request{Method: tt.method, Host: "api.example.com", Path: "/items/x", Headers: authz.MapHeaders(key)}
			d := a.Decide(&req)
			if d.Status != tt.status || d.Reason != tt.reason || d.EndpointName() != tt.endpoint {
				t.Errorf("got %d %v %q, want %d %v %q", d.Status, d.Reason, d.EndpointName(), tt.status, tt.reason, tt.endpoint)
			}
		})
	}
	t.Run("a bad method is refused on an endpoint Envoy names too", func(t *testing.T) {
		req := authz.Request{Method: "GET\r\n", Path: "/whoami", Endpoint: "whoami", Headers: authz.MapHeaders(key)}
		if d := a.Decide(&req); d.Status != 403 || d.Reason != authz.ReasonBadMethod {
			t.Errorf("got %d %v, want 403 bad_method", d.Status, d.Reason)
		}
	})
	if got := authz.ReasonBadMethod.String(); got != "bad_method" {
		t.Errorf("ReasonBadMethod is %q", got)
	}
}

func TestMethodCaseDoesNotAllocate(t *testing.T) {
	a, _ := newAuthorizer(t, compileTestPolicy(t, ""))
	for _, m := range []string{"GET", "get", "Get"} {
		req := authz.Request{Method: m, Host: "api.example.com", Path: "/orgs/acme-eu/sales/q1",
			Headers: authz.MapHeaders{"authorization": bearer(kgKeyValue)}}
		if d := a.Decide(&req); d.Result != authz.Allow {
			t.Fatalf("%s: %v %v", m, d.Status, d.Reason)
		}
		if n := testing.AllocsPerRun(100, func() { a.Decide(&req) }); n != 0 {
			t.Errorf("method %q: Decide allocated %v times", m, n)
		}
	}
}

// TestRepeatedHeadersHTTPLikeGRPC: the HTTP adapter's headers answer like
// the map Envoy sends over gRPC, where a repeated header arrives joined
// with ",": the same request gets the same decision on both.
func TestRepeatedHeadersHTTPLikeGRPC(t *testing.T) {
	a, _ := newAuthorizer(t, hardPolicy(t))
	tests := []struct {
		name    string
		path    string
		headers [][2]string // in order; a name may repeat
		status  int
		reason  authz.Reason
	}{
		{"two different keys in x-api-key", "/whoami", [][2]string{{"x-api-key", tenantKey}, {"x-api-key", orgKey}}, 401, authz.ReasonUnknownCredential},
		{"the same key twice in x-api-key", "/whoami", [][2]string{{"x-api-key", tenantKey}, {"x-api-key", tenantKey}}, 401, authz.ReasonUnknownCredential},
		{"two bearer keys", "/whoami", [][2]string{{"authorization", bearer(tenantKey)}, {"authorization", bearer(orgKey)}}, 401, authz.ReasonMalformedCredential},
		{"basic then bearer", "/whoami", [][2]string{{"authorization", "Basic dXNlcjpwYXNz"}, {"authorization", bearer(orgKey)}}, 401, authz.ReasonMalformedCredential},
		{"two sessions", "/whoami", [][2]string{{"x-api-key", tenantKey}, {"session", aliceSess}, {"session", usSess}}, 401, authz.ReasonUnknownCredential},
		{"two different org headers", "/reports", [][2]string{{"x-api-key", tenantKey}, {"x-org-id", "acme-eu"}, {"x-org-id", "acme-us"}}, 403, authz.ReasonOrgDenied},
		{"the same org header twice", "/reports", [][2]string{{"x-api-key", tenantKey}, {"x-org-id", "acme-eu"}, {"x-org-id", "acme-eu"}}, 403, authz.ReasonOrgDenied},
		{"a comma-joined org", "/reports", [][2]string{{"x-api-key", tenantKey}, {"x-org-id", "acme-eu,acme-us"}}, 403, authz.ReasonOrgDenied},
		{"single values", "/reports", [][2]string{{"x-api-key", tenantKey}, {"x-org-id", "acme-eu"}, {"x-keygate-user", "spoof"}}, 200, authz.ReasonAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hh := http.Header{}
			mh := authz.MapHeaders{}
			for _, kv := range tt.headers {
				hh.Add(kv[0], kv[1])
				if prev, ok := mh[kv[0]]; ok {
					mh[kv[0]] = prev + "," + kv[1] // as Envoy joins them
				} else {
					mh[kv[0]] = kv[1]
				}
			}
			hreq := authz.Request{Method: "GET", Host: "api.example.com", Path: tt.path, Headers: authz.HTTPHeaders(hh)}
			greq := authz.Request{Method: "GET", Host: "api.example.com", Path: tt.path, Headers: mh}
			hd, gd := a.Decide(&hreq), a.Decide(&greq)
			ho, g := outcomeOf(&hd, hreq.Headers), outcomeOf(&gd, greq.Headers)
			if ho != g {
				t.Errorf("HTTP and gRPC differ:\n http %v\n grpc %v", ho, g)
			}
			if g.status != tt.status || g.reason != tt.reason {
				t.Errorf("got %v, want %d %v", g, tt.status, tt.reason)
			}
		})
	}
}

func TestHTTPHeadersGet(t *testing.T) {
	h := http.Header{}
	h.Add("X-Api-Key", "a")
	h.Add("X-Api-Key", "b")
	h.Set("Authorization", "Bearer k")
	h.Set("X-Org-Id", "")
	hh := authz.HTTPHeaders(h)
	for name, want := range map[string]string{"x-api-key": "a,b", "authorization": "Bearer k", "x-org-id": "", "session": "", "X-API-KEY": "a,b"} {
		if got := hh.Get(name); got != want {
			t.Errorf("Get(%q) = %q, want %q", name, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { hh.Get("authorization"); hh.Get("x-org-id"); hh.Get("session") }); n != 0 {
		t.Errorf("Get of single or absent headers allocated %v times", n)
	}
}

// TestCredentialForms: a header keygate reads credentials from is verified
// whatever its form; what looks like a bearer credential but does not
// parse is refused on a protected endpoint and stripped everywhere.
func TestCredentialForms(t *testing.T) {
	a, _ := newAuthorizer(t, hardPolicy(t))
	tests := []struct {
		name    string
		path    string
		headers map[string]string
		want    outcome
	}{
		{"bearer and TAB is a bearer credential", "/whoami",
			map[string]string{"authorization": "Bearer\t" + tenantKey},
			outcome{status: 200, set: ident("api-bot", "acme", "", "k-tenant", "", "sales", "api_key", "whoami"), remove: "authorization"}},
		{"bearer and TAB next to another key conflicts", "/whoami",
			map[string]string{"authorization": "Bearer\t" + orgKey, "x-api-key": tenantKey},
			outcome{status: 401, reason: authz.ReasonConflictingCredentials}},
		{"bearer and spaces", "/whoami",
			map[string]string{"authorization": "bearer   " + tenantKey + " "},
			outcome{status: 200, set: ident("api-bot", "acme", "", "k-tenant", "", "sales", "api_key", "whoami"), remove: "authorization"}},
		{"bearer without a token next to a valid key", "/whoami",
			map[string]string{"authorization": "Bearer", "x-api-key": tenantKey},
			outcome{status: 401, reason: authz.ReasonMalformedCredential}},
		{"bearer and blanks only", "/whoami",
			map[string]string{"authorization": "Bearer \t ", "x-api-key": tenantKey},
			outcome{status: 401, reason: authz.ReasonMalformedCredential}},
		{"bearer colon", "/whoami",
			map[string]string{"authorization": "bearer:" + tenantKey},
			outcome{status: 401, reason: authz.ReasonMalformedCredential}},
		{"bearer glued to the key", "/whoami",
			map[string]string{"authorization": "Bearer" + tenantKey},
			outcome{status: 401, reason: authz.ReasonMalformedCredential}},
		{"bearer with two tokens", "/whoami",
			map[string]string{"authorization": "Bearer " + tenantKey + " " + orgKey},
			outcome{status: 401, reason: authz.ReasonMalformedCredential}},
		{"blank x-api-key next to a valid bearer", "/whoami",
			map[string]string{"authorization": bearer(tenantKey), "x-api-key": " \t"},
			outcome{status: 401, reason: authz.ReasonMalformedCredential}},
		{"basic is the upstream's: not read, not stripped", "/whoami",
			map[string]string{"authorization": "Basic dXNlcjpwYXNz", "x-api-key": tenantKey},
			outcome{status: 200, set: ident("api-bot", "acme", "", "k-tenant", "", "sales", "api_key", "whoami"), remove: "x-api-key"}},
		{"anonymous endpoint ignores a malformed bearer but strips it", "/docs/x",
			map[string]string{"authorization": "Bearer\t\t"},
			outcome{status: 200, reason: authz.ReasonAnonymous, set: ident("", "", "", "", "", "", "anonymous", "docs"), remove: "authorization"}},
		{"anonymous endpoint strips every credential header present", "/docs/x",
			map[string]string{"authorization": "bearer:x", "x-api-key": "nope", "session": "nope"},
			outcome{status: 200, reason: authz.ReasonAnonymous, set: ident("", "", "", "", "", "", "anonymous", "docs"), remove: "authorization session x-api-key"}},
		{"anonymous endpoint: a malformed bearer next to a valid key identifies no one", "/docs/x",
			map[string]string{"authorization": "Bearer", "x-api-key": tenantKey},
			outcome{status: 200, reason: authz.ReasonAnonymous, set: ident("", "", "", "", "", "", "anonymous", "docs"), remove: "authorization x-api-key"}},
		{"shadow endpoint strips a malformed bearer", "/sany",
			map[string]string{"authorization": "BearerX"},
			outcome{status: 200, reason: authz.ReasonMalformedCredential, shadowed: true, set: ident("", "", "", "", "", "", "anonymous", "shadow-any"), remove: "authorization"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := authz.Request{Method: "GET", Host: "api.example.com", Path: tt.path, Headers: authz.MapHeaders(tt.headers)}
			d := a.Decide(&req)
			if got := outcomeOf(&d, req.Headers); got != tt.want {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

// ident is the identity headers of an allow, as outcome.set has them.
func ident(user, tenant, org, keyID, sessionID, groups, auth, endpoint string) string {
	var kv []string
	for _, p := range [][2]string{{"user", user}, {"tenant", tenant}, {"org", org}, {"key-id", keyID},
		{"session-id", sessionID}, {"groups", groups}, {"auth", auth}, {"endpoint", endpoint}} {
		if p[1] != "" {
			kv = append(kv, "x-keygate-"+p[0]+"="+p[1])
		}
	}
	slices.Sort(kv)
	return strings.Join(kv, " ")
}

// TestOnlyVerifiedIdentity: identity headers carry only values that
// verified: never an organization the client chose that its credentials
// do not reach, never a mix of two organizations' credentials.
func TestOnlyVerifiedIdentity(t *testing.T) {
	a, _ := newAuthorizer(t, hardPolicy(t))
	tests := []struct {
		name    string
		path    string
		headers map[string]string
		want    outcome
	}{
		{"shadow: an org key on another org names its own org", "/sorgs/acme-us/x",
			map[string]string{"x-api-key": orgKey},
			outcome{status: 200, reason: authz.ReasonGroupDenied, shadowed: true, set: ident("eu-bot", "acme", "acme-eu", "k-org", "", "sales", "api_key", "shadow-path"), remove: "x-api-key"}},
		{"shadow: a tenant key on another tenant's org names no org", "/sorgs/globex-main/x",
			map[string]string{"x-api-key": opsKey},
			outcome{status: 200, reason: authz.ReasonOrgDenied, shadowed: true, set: ident("ops-bot", "acme", "", "k-ops", "", "ops", "api_key", "shadow-path"), remove: "x-api-key"}},
		{"shadow: no credential names no org", "/sorgs/acme-us/x", nil,
			outcome{status: 200, reason: authz.ReasonMissingCredential, shadowed: true, set: ident("", "", "", "", "", "", "anonymous", "shadow-path")}},
		{"shadow: a reached org is the target as usual", "/sorgs/acme-us/x",
			map[string]string{"x-api-key": opsKey},
			outcome{status: 200, reason: authz.ReasonAllowed, set: ident("ops-bot", "acme", "acme-us", "k-ops", "", "ops", "api_key", "shadow-path"), remove: "x-api-key"}},
		{"shadow: org from a header the key does not reach", "/sreports",
			map[string]string{"x-api-key": orgKey, "x-org-id": "acme-us"},
			outcome{status: 200, reason: authz.ReasonOrgDenied, shadowed: true, set: ident("eu-bot", "acme", "acme-eu", "k-org", "", "sales", "api_key", "shadow-header"), remove: "x-api-key"}},
		{"org key and session of another org of the tenant", "/whoami",
			map[string]string{"x-api-key": orgKey, "session": usSess},
			outcome{status: 403, reason: authz.ReasonOrgMismatch}},
		{"org key and tenant-level session agree", "/whoami",
			map[string]string{"x-api-key": orgKey, "session": aliceSess},
			outcome{status: 200, set: ident("alice", "acme", "acme-eu", "k-org", "s-alice", "sales", "api_key+session", "whoami"), remove: "session x-api-key"}},
		{"tenant key and org-level session agree", "/whoami",
			map[string]string{"x-api-key": tenantKey, "session": usSess},
			outcome{status: 200, set: ident("carol", "acme", "acme-us", "k-tenant", "s-us", "sales", "api_key+session", "whoami"), remove: "session x-api-key"}},
		{"anonymous: two orgs identify no one", "/docs/x",
			map[string]string{"x-api-key": orgKey, "session": usSess},
			outcome{status: 200, reason: authz.ReasonAnonymous, set: ident("", "", "", "", "", "", "anonymous", "docs"), remove: "session x-api-key"}},
		{"anonymous: two tenants identify no one", "/docs/x",
			map[string]string{"x-api-key": tenantKey, "session": globexSess},
			outcome{status: 200, reason: authz.ReasonAnonymous, set: ident("", "", "", "", "", "", "anonymous", "docs"), remove: "session x-api-key"}},
		{"shadow: two orgs identify no one", "/sany",
			map[string]string{"x-api-key": orgKey, "session": usSess},
			outcome{status: 200, reason: authz.ReasonOrgMismatch, shadowed: true, set: ident("", "", "", "", "", "", "anonymous", "shadow-any"), remove: "session x-api-key"}},
		{"shadow: two tenants identify no one", "/sany",
			map[string]string{"x-api-key": tenantKey, "session": globexSess},
			outcome{status: 200, reason: authz.ReasonTenantMismatch, shadowed: true, set: ident("", "", "", "", "", "", "anonymous", "shadow-any"), remove: "session x-api-key"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := authz.Request{Method: "GET", Host: "api.example.com", Path: tt.path, Headers: authz.MapHeaders(tt.headers)}
			d := a.Decide(&req)
			if got := outcomeOf(&d, req.Headers); got != tt.want {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

// TestDenialKeepsVerifiedIdentity: a denial remembers the credentials that
// verified, for the decision log, and never one that did not; it sets no
// identity header.
func TestDenialKeepsVerifiedIdentity(t *testing.T) {
	a, _ := newAuthorizer(t, hardPolicy(t))
	type who struct{ key, session, user, tenant, org string }
	tests := []struct {
		name    string
		method  string
		path    string
		headers map[string]string
		status  int
		want    who
	}{
		{"group not allowed", "DELETE", "/items/x", map[string]string{"x-api-key": orgKey}, 403,
			who{"k-org", "", "eu-bot", "acme", "acme-eu"}},
		{"other org: the credential's own org, not the target", "GET", "/reports",
			map[string]string{"x-api-key": orgKey, "x-org-id": "acme-us"}, 403, who{"k-org", "", "eu-bot", "acme", "acme-eu"}},
		{"key and session of two orgs", "GET", "/whoami",
			map[string]string{"x-api-key": orgKey, "session": usSess}, 403, who{"k-org", "s-us", "carol", "acme", ""}},
		{"key and session of two tenants", "GET", "/whoami",
			map[string]string{"x-api-key": tenantKey, "session": globexSess}, 403, who{"k-tenant", "s-globex", "bob", "", ""}},
		{"no endpoint matches", "GET", "/nowhere", map[string]string{"x-api-key": tenantKey}, 403,
			who{"k-tenant", "", "api-bot", "acme", ""}},
		{"a verified key next to an unknown session", "GET", "/whoami",
			map[string]string{"x-api-key": tenantKey, "session": "nope"}, 401, who{"k-tenant", "", "api-bot", "acme", ""}},
		{"an unknown key leaves no id", "GET", "/whoami", map[string]string{"x-api-key": "nope"}, 401, who{}},
		{"two keys: neither is the caller", "GET", "/whoami",
			map[string]string{"x-api-key": tenantKey, "authorization": bearer(orgKey)}, 401, who{}},
		{"a malformed bearer hides the other key", "GET", "/whoami",
			map[string]string{"x-api-key": tenantKey, "authorization": "Bearer"}, 401, who{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := authz.Request{Method: tt.method, Host: "api.example.com", Path: tt.path, Headers: authz.MapHeaders(tt.headers)}
			d := a.Decide(&req)
			if d.Result != authz.Deny || d.Status != tt.status {
				t.Fatalf("got %v %d %v, want a %d denial", d.Result, d.Status, d.Reason, tt.status)
			}
			got := who{d.KeyID(), d.SessionID(), d.User(), d.Tenant, d.Org}
			if got != tt.want {
				t.Errorf("logged identity %+v, want %+v", got, tt.want)
			}
			if set := d.IdentityHeaders(nil); len(set) != 0 {
				t.Errorf("a denial sets identity headers: %v", set)
			}
		})
	}
}
