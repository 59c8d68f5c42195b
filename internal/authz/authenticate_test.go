package authz_test

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/policy"
)

// cookiePolicy is the test policy reading sessions from the kg_session
// cookie too.
func cookiePolicy(t *testing.T) *policy.Snapshot {
	t.Helper()
	var b strings.Builder
	if err := testPolicy.Execute(&b, map[string]string{"KG": kgKeyValue}); err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(b.String(), "settings: {realm: api.example.com}", "settings: {realm: api.example.com, session_cookie: kg_session}", 1)
	snap, err := policy.Load([]policy.Input{{Name: "test.yaml", Data: []byte(text)}}, policy.Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestAuthenticate(t *testing.T) {
	a, _ := newAuthorizer(t, cookiePolicy(t))
	for _, tc := range []struct {
		name       string
		headers    authz.MapHeaders
		status     int
		reason     authz.Reason
		user       string
		fromCookie bool
	}{
		{"no credential", nil, 401, authz.ReasonMissingCredential, "", false},
		{"api key", authz.MapHeaders{"authorization": bearer(orgKey)}, 200, authz.ReasonAllowed, "eu-bot", false},
		{"unknown key", authz.MapHeaders{"x-api-key": "nope"}, 401, authz.ReasonUnknownCredential, "", false},
		{"expired key", authz.MapHeaders{"x-api-key": expiredKey}, 401, authz.ReasonExpiredCredential, "", false},
		{"session header", authz.MapHeaders{"session": aliceSess}, 200, authz.ReasonAllowed, "alice", false},
		{"session cookie", authz.MapHeaders{"cookie": "theme=dark; kg_session=" + aliceSess + "; x=1"}, 200, authz.ReasonAllowed, "alice", true},
		{"quoted cookie", authz.MapHeaders{"cookie": `kg_session="` + aliceSess + `"`}, 200, authz.ReasonAllowed, "alice", true},
		{"header wins over cookie", authz.MapHeaders{"session": aliceSess, "cookie": "kg_session=" + expiredSess}, 200, authz.ReasonAllowed, "alice", false},
		{"expired session cookie", authz.MapHeaders{"cookie": "kg_session=" + expiredSess}, 401, authz.ReasonExpiredCredential, "", true},
		{"other cookie only", authz.MapHeaders{"cookie": "kg_sessionx=" + aliceSess}, 401, authz.ReasonMissingCredential, "", false},
		{"two tenants", authz.MapHeaders{"x-api-key": tenantKey, "session": globexSess}, 403, authz.ReasonTenantMismatch, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := a.Authenticate(tc.headers)
			if d.Status != tc.status || d.Reason != tc.reason {
				t.Fatalf("Authenticate = %d %s, want %d %s", d.Status, d.Reason, tc.status, tc.reason)
			}
			if tc.status == 200 && d.User() != tc.user {
				t.Errorf("user = %q, want %q", d.User(), tc.user)
			}
			if d.SessionFromCookie != tc.fromCookie {
				t.Errorf("SessionFromCookie = %v, want %v", d.SessionFromCookie, tc.fromCookie)
			}
		})
	}
}

// TestSessionCookieOnCheck: a browser's request carries its session in the
// cookie the policy names; without session_cookie the cookie is ignored.
func TestSessionCookieOnCheck(t *testing.T) {
	withCookie, _ := newAuthorizer(t, cookiePolicy(t))
	without, _ := newAuthorizer(t, compileTestPolicy(t, ""))
	r := func() *authz.Request {
		return &authz.Request{Method: "GET", Path: "/me", Headers: authz.MapHeaders{"cookie": "kg_session=" + aliceSess}}
	}
	if d := withCookie.Decide(r()); d.Status != 200 || d.User() != "alice" {
		t.Errorf("with session_cookie: %d %s user %q, want 200 alice", d.Status, d.Reason, d.User())
	}
	if d := without.Decide(r()); d.Status != 401 || d.Reason != authz.ReasonMissingCredential {
		t.Errorf("without session_cookie: %d %s, want 401 missing_credential", d.Status, d.Reason)
	}
}
