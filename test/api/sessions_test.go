package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/test/internal/harness"
)

// sessionWorld is a sign-in service's view: a tenant-level key in group
// sign-in (the login service), an org-level one of acme-eu, a key that may
// not issue sessions, and another tenant's sign-in key.
type sessionWorld struct {
	SignIn, EUSignIn, Plain, GlobexSignIn cred
}

var sessionPolicy = harness.PolicyTemplate("p", `# written by test/api (sessions)
version: 1
groups: [{name: sales}, {name: support}, {name: sign-in}, {name: ops}]
tenants:
  - {id: acme, orgs: [acme-eu, acme-us]}
  - {id: globex, orgs: [globex-main]}
management:
  session_issuer_groups: [sign-in]
  assignable_groups: [sales, support]
  max_session_ttl: 12h
endpoints:
  - name: sales-read
    match: {methods: [GET], path: "/orgs/{org}/sales/**"}
    require: [session]
    groups: [sales]
    org: {from: path, name: org}
api_keys:
  - {id: {{.SignIn.ID}}, hash: "{{h .SignIn.Raw}}", tenant: acme, user: login-service, groups: [sign-in]}
  - {id: {{.EUSignIn.ID}}, hash: "{{h .EUSignIn.Raw}}", tenant: acme, org: acme-eu, user: eu-login, groups: [sign-in]}
  - {id: {{.Plain.ID}}, hash: "{{h .Plain.Raw}}", tenant: acme, user: bot, groups: [sales]}
  - {id: {{.GlobexSignIn.ID}}, hash: "{{h .GlobexSignIn.Raw}}", tenant: globex, user: gx-login, groups: [sign-in]}
`)

// sessionCheck is Envoy's CheckRequest for GET /orgs/ORG/sales/q1 with a
// session header, over the real gRPC port; it returns the code and, when
// allowed, the identity headers.
func sessionCheck(t testing.TB, c authv3.AuthorizationClient, org, token string) (codes.Code, map[string]string) {
	t.Helper()
	req := envoytest.CheckRequest("")
	h := req.Attributes.Request.Http
	h.Path = "/orgs/" + org + "/sales/q1"
	h.Headers[":path"] = h.Path
	delete(h.Headers, "authorization")
	h.Headers["session"] = token
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	ident := map[string]string{}
	for _, hv := range resp.GetOkResponse().GetHeaders() {
		ident[hv.GetHeader().GetKey()] = hv.GetHeader().GetValue()
	}
	return codes.Code(resp.GetStatus().GetCode()), ident
}

// TestSessionsAPI: a login service in group sign-in issues a session with
// POST /v1/sessions and the token is decided over gRPC with the user's
// groups, tenant and organization, with no policy write; DELETE revokes it
// through the store and every replica refuses it at its next reload; the
// public key is at /.well-known/jwks.json. Every answer is checked against
// the OpenAPI document.
func TestSessionsAPI(t *testing.T) {
	w := sessionWorld{
		SignIn:       newCred(t, "acme", "", "login-service", "sign-in"),
		EUSignIn:     newCred(t, "acme", "acme-eu", "eu-login", "sign-in"),
		Plain:        newCred(t, "acme", "", "bot", "sales"),
		GlobexSignIn: newCred(t, "globex", "", "gx-login", "sign-in"),
	}
	dir := t.TempDir()
	path := harness.WritePolicy(t, dir, sessionPolicy, w)
	keyFile := filepath.Join(dir, "session.key")
	if r := harness.Run(t, 30*time.Second, "sessions", "keygen", "--out", keyFile); r.Code != 0 {
		t.Fatalf("keygen: %s", r.Out)
	}
	k := harness.Serve(t, harness.Options{Args: []string{"--policy", path, "--session-signing-key", keyFile}, API: true})
	c := newClient(t, k.APIAddr)
	grpcc := dial(t, k.GRPCAddr)

	// The login service signs alice in.
	a := c.do("POST", "/v1/sessions", bearer(w.SignIn), map[string]any{"user": "alice", "org": "acme-eu", "groups": []string{"sales"}, "ttl": "8h"})
	if a.Status != 201 {
		t.Fatalf("POST /v1/sessions: %d %s", a.Status, a.Body)
	}
	m := a.json(t)
	tok, id := m["session"].(string), m["id"].(string)
	harness.RegisterSecret(tok, "session "+id+" issued by the API")
	exp, err := time.Parse(time.RFC3339, m["expires_at"].(string))
	if err != nil || exp.Sub(time.Now()) > 8*time.Hour+time.Minute || exp.Sub(time.Now()) < 7*time.Hour {
		t.Errorf("expires_at %v (%v), want 8h from now", m["expires_at"], err)
	}
	code, ident := sessionCheck(t, grpcc, "acme-eu", tok)
	if code != codes.OK || ident["x-keygate-user"] != "alice" || ident["x-keygate-tenant"] != "acme" || ident["x-keygate-org"] != "acme-eu" ||
		ident["x-keygate-groups"] != "sales" || ident["x-keygate-session-id"] != id || ident["x-keygate-auth"] != "session" {
		t.Fatalf("Check with the issued session: %v %v", code, ident)
	}
	if code, _ := sessionCheck(t, grpcc, "acme-us", tok); code != codes.PermissionDenied {
		t.Errorf("the session's org is acme-eu; acme-us: %v", code)
	}

	// Its header names the key the JWKS serves.
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	var h struct{ Alg, Kid string }
	_ = json.Unmarshal(hdr, &h)
	j := c.do("GET", "/.well-known/jwks.json", nil, nil)
	if j.Status != 200 || h.Alg != "EdDSA" || !strings.Contains(string(j.Body), `"kid":"`+h.Kid+`"`) || strings.Contains(string(j.Body), `"d"`) {
		t.Errorf("JWKS %d %s for a token with header %+v", j.Status, j.Body, h)
	}

	// An org-level sign-in key issues for its own organization (the
	// default when the call names none) and no other.
	eu := c.do("POST", "/v1/sessions", bearer(w.EUSignIn), map[string]any{"user": "bob", "groups": []string{"support"}})
	if eu.Status != 201 {
		t.Fatalf("org-level issuer: %d %s", eu.Status, eu.Body)
	}
	euTok := eu.json(t)["session"].(string)
	harness.RegisterSecret(euTok, "session issued by the API")
	if code, _ := sessionCheck(t, grpcc, "acme-eu", euTok); code != codes.PermissionDenied {
		t.Errorf("a support session on a sales endpoint: %v, want PERMISSION_DENIED", code)
	}

	for _, tc := range []struct {
		name   string
		a      auth
		body   any
		status int
		msg    string
	}{
		{"no credential", nil, map[string]any{"user": "x"}, 401, ""},
		{"not a session issuer", bearer(w.Plain), map[string]any{"user": "x"}, 403, "session_issuer_groups"},
		{"org-level issuer, another org", bearer(w.EUSignIn), map[string]any{"user": "x", "org": "acme-us"}, 403, "own organization"},
		{"another tenant's org", bearer(w.GlobexSignIn), map[string]any{"user": "x", "org": "acme-eu"}, 403, "own organization"},
		{"unknown org", bearer(w.SignIn), map[string]any{"user": "x", "org": "nowhere"}, 404, "no such organization"},
		{"group not assignable", bearer(w.SignIn), map[string]any{"user": "x", "groups": []string{"ops"}}, 403, `ops\" is not in management.assignable_groups`},
		{"ttl over the maximum", bearer(w.SignIn), map[string]any{"user": "x", "ttl": "24h"}, 403, "max_session_ttl (12h0m0s)"},
		{"bad ttl", bearer(w.SignIn), map[string]any{"user": "x", "ttl": "soon"}, 400, "ttl must be"},
		{"unknown field", bearer(w.SignIn), map[string]any{"user": "x", "tenant": "globex"}, 400, "unknown field"},
		{"user with a comma", bearer(w.SignIn), map[string]any{"user": "a,b"}, 400, "commas"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := c.do("POST", "/v1/sessions", tc.a, tc.body)
			if a.Status != tc.status || !strings.Contains(string(a.Body), tc.msg) {
				t.Errorf("%d %s, want %d with %q", a.Status, a.Body, tc.status, tc.msg)
			}
		})
	}
	if a := c.do("DELETE", "/v1/sessions/"+id, bearer(w.Plain), nil); a.Status != 403 {
		t.Errorf("revoke by a key that may not: %d %s", a.Status, a.Body)
	}

	// Another tenant's sign-in service cannot revoke acme's session by
	// naming its id: its entry is for its own tenant only.
	if a := c.do("DELETE", "/v1/sessions/"+id, bearer(w.GlobexSignIn), nil); a.Status != 200 {
		t.Fatalf("revoke by another tenant: %d %s", a.Status, a.Body)
	}
	if f, err := policy.Parse(path, must(os.ReadFile(path))); err != nil {
		t.Fatal(err)
	} else if !slices.ContainsFunc(f.Doc.RevokedSessions, func(r policy.RevokedSession) bool { return r.ID == id && r.Tenant == "globex" }) {
		t.Fatalf("the revocation does not name the caller's tenant: %+v", f.Doc.RevokedSessions)
	}
	for deadline := time.Now().Add(600 * time.Millisecond); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if code, _ := sessionCheck(t, grpcc, "acme-eu", tok); code != codes.OK {
			t.Fatalf("globex's revocation of id %s refused acme's session: %v", id, code)
		}
	}

	// Revoked: written to the policy file, refused within the reload
	// budget however warm the cache.
	for range 20 {
		sessionCheck(t, grpcc, "acme-eu", tok)
	}
	start := time.Now()
	r := c.do("DELETE", "/v1/sessions/"+id, bearer(w.SignIn), nil)
	if r.Status != 200 || r.json(t)["state"] != "revoked" || r.json(t)["id"] != id {
		t.Fatalf("DELETE /v1/sessions/%s: %d %s", id, r.Status, r.Body)
	}
	for code, _ := sessionCheck(t, grpcc, "acme-eu", tok); code != codes.Unauthenticated; code, _ = sessionCheck(t, grpcc, "acme-eu", tok) {
		if time.Since(start) > time.Second {
			t.Fatalf("the revoked session still answers %v after 1 s", code)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("revoked session refused %v after the DELETE call returned", time.Since(start).Round(time.Millisecond))
	data, _ := os.ReadFile(path)
	if !strings.Contains(string(data), "revoked_sessions:") || !strings.Contains(string(data), id) {
		t.Errorf("the policy file has no revoked_sessions entry for %s:\n%s", id, data)
	}
	if a := c.do("DELETE", "/v1/sessions/"+id, bearer(w.SignIn), nil); a.Status != 200 {
		t.Errorf("revoking twice: %d %s", a.Status, a.Body)
	}
	if code, _ := sessionCheck(t, grpcc, "acme-eu", euTok); code != codes.PermissionDenied {
		t.Errorf("another session after a revocation: %v", code)
	}
	if line, ok := k.Out.Line(`"msg":"audit"`, `"action":"session.revoke"`, id, `"result":"ok"`); !ok {
		t.Errorf("no audit line for the revocation")
	} else if strings.Contains(line, tok) {
		t.Errorf("the audit line holds the token")
	}
	if _, ok := k.Out.Line(`"msg":"audit"`, `"action":"session.create"`, `"result":"ok"`); !ok {
		t.Errorf("no audit line for the creation")
	}
}
