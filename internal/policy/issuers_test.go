package policy

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestSessionIssuersCompile: the same issuers written in YAML and in JSON
// compile to the same plain data, with the defaults filled in.
func TestSessionIssuersCompile(t *testing.T) {
	yamlText := `version: 1
groups: [{name: sales}]
tenants: [{id: acme, orgs: [acme-eu]}, {id: globex}]
session_issuers:
  - name: corp-idp
    issuer: https://idp.example.com
    audiences: [api.example.com]
    jwks:
      keys:
        - {kty: OKP, crv: Ed25519, kid: k1, x: 11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo}
    groups_map: {idp-sales-team: sales}
    claims: {user: email}
    max_ttl: 24h
  - name: app
    issuer: https://auth.acme.test
    audiences: [api]
    jwks_url: http://auth.acme.test/keys
    tenant: acme
revoked_sessions:
  - {id: s_2V9KXq, until: 2026-12-02T08:00:00Z}
  - {id: s_acme1, tenant: acme, until: 2026-12-02T08:00:00Z}
sessions_not_before:
  - {tenant: acme, user: alice, before: 2026-12-01T10:00:00Z}
  - {tenant: acme, user: alice, before: 2026-11-01T10:00:00Z}
`
	jsonText := `{"version": 1, "groups": [{"name": "sales"}], "tenants": [{"id": "acme", "orgs": ["acme-eu"]}, {"id": "globex"}],
 "session_issuers": [
  {"name": "corp-idp", "issuer": "https://idp.example.com", "audiences": ["api.example.com"],
   "jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]},
   "groups_map": {"idp-sales-team": "sales"}, "claims": {"user": "email"}, "max_ttl": "24h"},
  {"name": "app", "issuer": "https://auth.acme.test", "audiences": ["api"], "jwks_url": "http://auth.acme.test/keys", "tenant": "acme"}],
 "revoked_sessions": [{"id": "s_2V9KXq", "until": "2026-12-02T08:00:00Z"}, {"id": "s_acme1", "tenant": "acme", "until": "2026-12-02T08:00:00Z"}],
 "sessions_not_before": [{"tenant": "acme", "user": "alice", "before": "2026-12-01T10:00:00Z"}, {"tenant": "acme", "user": "alice", "before": "2026-11-01T10:00:00Z"}]}`
	var snaps []*Snapshot
	for _, in := range []Input{{Name: "p.yaml", Data: []byte(yamlText)}, {Name: "p.json", Data: []byte(jsonText)}} {
		s, err := Load([]Input{in}, Options{})
		if err != nil {
			t.Fatalf("%s: %v", in.Name, err)
		}
		snaps = append(snaps, s)
	}
	for i, s := range snaps {
		is := s.IssuerOf("https://idp.example.com")
		if is == nil || s.IssuerOf("https://evil.example") != nil || len(s.SessionIssuers()) != 2 {
			t.Fatalf("snapshot %d: issuers %+v", i, s.SessionIssuers())
		}
		var keys map[string]any
		if err := json.Unmarshal(is.JWKS, &keys); err != nil {
			t.Fatalf("inline jwks is not JSON: %v", err)
		}
		want := ClaimNames{User: "email", Tenant: "tid", Org: "org", Groups: "groups", SessionID: "sid"}
		if is.Claims != want || !reflect.DeepEqual(is.Algorithms, DefaultSessionAlgorithms) || is.MaxTTL != 24*time.Hour || is.GroupsMap["idp-sales-team"] != "sales" {
			t.Errorf("snapshot %d: %+v", i, is)
		}
		if app := s.IssuerOf("https://auth.acme.test"); app.Tenant != "acme" || app.JWKSURL == "" || app.JWKS != nil || app.KeySource() == is.KeySource() {
			t.Errorf("snapshot %d: %+v", i, app)
		}
		// An entry without a tenant revokes the id everywhere; one with a
		// tenant (what the management API writes) only that tenant's.
		if !s.SessionRevoked("globex", "s_2V9KXq") || s.SessionRevoked("acme", "s_other") || s.SessionRevoked("acme", "") ||
			!s.SessionRevoked("acme", "s_acme1") || s.SessionRevoked("globex", "s_acme1") || s.SessionRevoked("", "s_acme1") {
			t.Errorf("snapshot %d: revoked_sessions", i)
		}
		// The latest sign-out of a user wins.
		if got := s.SignedOutBefore("acme", "alice"); !got.Equal(time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)) {
			t.Errorf("snapshot %d: signed out before %v", i, got)
		}
	}
	if a, b := snaps[0].IssuerOf("https://idp.example.com"), snaps[1].IssuerOf("https://idp.example.com"); a.KeySource() != b.KeySource() {
		t.Errorf("the same inline keys in YAML and JSON read as two key sets: %s, %s", a.KeySource(), b.KeySource())
	}
}

// TestSignedSession: what a verified token's claims become.
func TestSignedSession(t *testing.T) {
	s, err := Load([]Input{{Name: "p.yaml", Data: []byte(`version: 1
groups: [{name: sales}, {name: support}]
tenants: [{id: acme, orgs: [acme-eu]}, {id: globex, orgs: [globex-main]}]
revoked_sessions: [{id: s_gone}]
sessions_not_before: [{tenant: acme, user: mallory, before: 2026-06-01T00:00:00Z}]
`)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	exp := time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)
	p, err := s.SignedSession(SignedClaims{ID: "s_1", User: "alice", Tenant: "acme", Org: "acme-eu", Groups: []string{"support", "ghost", "sales", "sales"}, ExpiresAt: exp})
	if err != nil {
		t.Fatal(err)
	}
	if p.Kind != KindSession || p.GroupsHeader() != "sales,support" || p.Disabled || p.ExpiredAt(exp.Add(-time.Second).UnixNano()) || !p.ExpiredAt(exp.UnixNano()) {
		t.Errorf("%+v %v", p, p.Groups())
	}
	for _, tc := range []struct {
		c        SignedClaims
		err      string
		disabled bool
	}{
		{SignedClaims{User: "alice", Tenant: "initech", ExpiresAt: exp}, `tenant "initech" is not declared under tenants`, false},
		{SignedClaims{User: "alice", Tenant: "acme", Org: "globex-main", ExpiresAt: exp}, `organization "globex-main" is not in tenant "acme"`, false},
		{SignedClaims{User: "", Tenant: "acme", ExpiresAt: exp}, "names no user", false},
		{SignedClaims{ID: "s_gone", User: "alice", Tenant: "acme", ExpiresAt: exp}, "", true},
		{SignedClaims{User: "mallory", Tenant: "acme", IssuedAt: time.Date(2026, 5, 31, 0, 0, 0, 0, time.UTC), ExpiresAt: exp}, "", true},
		{SignedClaims{User: "mallory", Tenant: "acme", ExpiresAt: exp}, "", true}, // no iat: cannot show it came after
		{SignedClaims{User: "mallory", Tenant: "acme", IssuedAt: time.Date(2026, 6, 2, 0, 0, 0, 0, time.UTC), ExpiresAt: exp}, "", false},
		{SignedClaims{User: "mallory", Tenant: "globex", ExpiresAt: exp}, "", false}, // another tenant's mallory
	} {
		p, err := s.SignedSession(tc.c)
		switch {
		case tc.err != "":
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: %v, want %q", tc.c, err, tc.err)
			}
		case err != nil:
			t.Errorf("%+v: %v", tc.c, err)
		case p.Disabled != tc.disabled:
			t.Errorf("%+v: disabled %v, want %v", tc.c, p.Disabled, tc.disabled)
		}
	}
}
