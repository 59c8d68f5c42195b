package e2e

import (
	"strings"
	"testing"
)

// TestCustomSettings runs keygate with every setting changed from the
// defaults the other tests use: identity header prefix, credential headers,
// no credential stripping, default allow, and an HTTP path prefix.
func TestCustomSettings(t *testing.T) {
	t.Parallel()
	k := newKey(t, "acme", "acme-eu", "api-bot", "sales")
	s := newKey(t, "acme", "", "alice", "support")
	text := `version: 1
settings:
  realm: custom.example.com
  api_key_headers: [x-token]
  session_header: x-session
  identity_header_prefix: x-auth-
  strip_credentials: false
  default: allow
groups:
  - name: sales
  - name: support
tenants:
  - id: acme
    orgs: [acme-eu]
endpoints:
  - name: whoami
    match: {path: /whoami}
    require: [api_key]
api_keys:
`
	var b strings.Builder
	b.WriteString(text)
	k.yaml(&b)
	b.WriteString("sessions:\n")
	s.yaml(&b)
	p := startKeygate(t, newPolicyFile(t, b.String()), "--http-path-prefix", "/ext_authz/")

	id := func(user, tenant, org, keyID, sessionID, groups, auth, endpoint string) map[string]string {
		m := map[string]string{}
		for k, v := range ident(user, tenant, org, keyID, sessionID, groups, auth, endpoint) {
			m["x-auth-"+k[len("x-keygate-"):]] = v
		}
		return m
	}
	const pre, hp = "x-auth-", "/ext_authz"
	missing := `Bearer realm="custom.example.com"`
	runAnswerCases(t, p, []answerCase{
		{
			name: "configured key header, no stripping", path: "/whoami", prefix: pre, httpPrefix: hp,
			headers:  hdrs("x-token", k.Raw, "x-auth-user", "root", "x-auth-session-id", "forged", "x-keygate-user", "other-prefix"),
			status:   200,
			identity: id("api-bot", "acme", "acme-eu", k.ID, "", "sales", "api_key", "whoami"),
			remove:   []string{"x-auth-session-id"},
		},
		{
			name: "key and session", path: "/whoami", prefix: pre, httpPrefix: hp,
			headers: hdrs("x-token", k.Raw, "x-session", s.Raw), status: 200,
			identity: id("alice", "acme", "acme-eu", k.ID, s.ID, "sales,support", "api_key+session", "whoami"),
		},
		{
			name: "authorization is not a configured key header", path: "/whoami", prefix: pre, httpPrefix: hp,
			headers: bearer(k.Raw), status: 401, challenge: missing, errorCode: "unauthorized",
		},
		{
			name: "no endpoint matches, default allow", path: "/elsewhere", prefix: pre, httpPrefix: hp,
			status: 200, identity: id("", "", "", "", "", "", "anonymous", ""),
		},
		{
			name: "default allow identifies a valid key", path: "/elsewhere", prefix: pre, httpPrefix: hp,
			headers: hdrs("x-token", k.Raw), status: 200,
			identity: id("api-bot", "acme", "acme-eu", k.ID, "", "sales", "api_key", ""),
		},
	})

	// HTTP requests outside the path prefix are refused, never guessed.
	for _, path := range []string{"/whoami", "/ext_authzwhoami", "/other/ext_authz/whoami"} {
		if got := p.httpStatus(t, "GET", path, hdrs("x-token", k.Raw)); got != 403 {
			t.Errorf("HTTP %s outside --http-path-prefix: %d, want 403", path, got)
		}
	}
}
