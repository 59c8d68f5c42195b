package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSignedSessionsCLI: keygen makes a key pair, issue signs a token with
// it, and check decides and explains the token (issuer, kid, claims, why
// refused) without printing it.
func TestSignedSessionsCLI(t *testing.T) {
	dir := t.TempDir()
	policyText := `version: 1
groups: [{name: sales}]
tenants: [{id: acme, orgs: [acme-eu, acme-us]}]
endpoints:
  - {name: sales, match: {path: "/orgs/{org}/sales/**"}, require: [session], groups: [sales], org: {from: path, name: org}}
revoked_sessions: [{id: s_revoked}]
`
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policyText), 0o600); err != nil {
		t.Fatal(err)
	}
	r := must(t, 0, dir, "", "sessions", "keygen", "--out", "session.key")
	if st, err := os.Stat(filepath.Join(dir, "session.key")); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key file: %v %v", st, err)
	}
	if !strings.Contains(r.stderr, "session.key.pub") || strings.Contains(r.stderr+r.stdout, "PRIVATE KEY") {
		t.Errorf("keygen output:\n%s", r)
	}
	if r := must(t, 1, dir, "", "sessions", "keygen", "--out", "session.key"); !strings.Contains(r.stderr, "never overwrites") {
		t.Errorf("keygen over an existing key:\n%s", r)
	}

	issue := func(args ...string) string {
		r := must(t, 0, dir, "", append([]string{"sessions", "issue", "--signing-key", "session.key", "--tenant", "acme"}, args...)...)
		tok := strings.TrimSpace(r.stdout)
		if strings.Count(tok, ".") != 2 || strings.Contains(r.stderr, tok) {
			t.Fatalf("issue: stdout must be the token alone, stderr must not hold it:\n%s", r)
		}
		return tok
	}
	alice := issue("--user", "alice", "--org", "acme-eu", "--groups", "sales", "--ttl", "1h")
	revoked := issue("--user", "alice", "--groups", "sales", "--id", "s_revoked")
	foreign := issue("--user", "alice", "--groups", "sales", "--issuer", "https://elsewhere.test")

	checkJSON := func(code int, tok string, extra ...string) checkResult {
		args := append([]string{"check", "--policy", "policy.yaml", "--path", "/orgs/acme-eu/sales/q1", "-H", "Session: " + tok, "--format", "json"}, extra...)
		r := must(t, code, dir, "", args...)
		if strings.Contains(r.stdout+r.stderr, tok) || strings.Contains(r.stdout+r.stderr, strings.Split(tok, ".")[2]) {
			t.Fatalf("check printed the token:\n%s", r)
		}
		var res checkResult
		if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
			t.Fatalf("%v\n%s", err, r)
		}
		return res
	}
	res := checkJSON(0, alice, "--session-verify-key", "session.key.pub")
	if s := res.SignedSession; s == nil || !s.Verified || s.Issuer != "(keygate)" || s.KID == "" || s.Alg != "EdDSA" || s.Claims["sub"] != "alice" || s.Claims["org"] != "acme-eu" {
		t.Errorf("explanation of a good token: %+v", res.SignedSession)
	}
	if res.Principal == nil || res.Principal.User != "alice" || res.Principal.Org != "acme-eu" || !strings.HasPrefix(res.Principal.SessionID, "s_") {
		t.Errorf("principal: %+v", res.Principal)
	}
	for _, tc := range []struct {
		name, tok string
		args      []string
		reason    string
		why       string
	}{
		{"no verify key", alice, nil, "unknown_credential", "has no keys here"},
		{"revoked", revoked, []string{"--session-verify-key", "session.key.pub"}, "disabled_credential", "revoked_sessions"},
		{"undeclared issuer", foreign, []string{"--session-verify-key", "session.key.pub"}, "unknown_credential", `"https://elsewhere.test" is not declared`},
		{"expired by --at", alice, []string{"--session-verify-key", "session.key.pub", "--at", "3h"}, "expired_credential", "expired at"},
	} {
		res := checkJSON(1, tc.tok, tc.args...)
		if res.Reason != tc.reason || res.SignedSession == nil || !strings.Contains(res.SignedSession.Refused, tc.why) {
			t.Errorf("%s: reason %s, explanation %+v; want %s and %q", tc.name, res.Reason, res.SignedSession, tc.reason, tc.why)
		}
	}
}
