package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/test/internal/harness"
)

// TestOIDCProviderTokens runs keygate against an OpenID provider that
// someone else wrote: zitadel/oidc's example OP as a process
// (hack/build-zitadel-op.sh). Users sign in through its login form, its
// token endpoint hands out RS256 ID tokens, and keygate, told only the
// issuer and its JWKS URL, fetches the OP's keys over HTTP and decides
// those tokens in the session header over gRPC and HTTP. The OP's tokens
// carry no groups, so an endpoint that needs one is forbidden.
func TestOIDCProviderTokens(t *testing.T) {
	t.Parallel()
	start := time.Now()
	op := harness.ZitadelOP(t)
	web := op.Login(t, "web", harness.ZitadelOPUser1, harness.ZitadelOPPassword)
	web2 := op.Login(t, "web", harness.ZitadelOPUser2, harness.ZitadelOPPassword)
	otherClient := op.Login(t, "api", harness.ZitadelOPUser1, harness.ZitadelOPPassword)
	t.Logf("the OP started and three logins through its form took %v", time.Since(start).Round(time.Millisecond))
	if web.Claims["iss"] != op.Issuer || web.Claims["sub"] == web2.Claims["sub"] {
		t.Fatalf("the OP's ID tokens say iss %v and subjects %v, %v", web.Claims["iss"], web.Claims["sub"], web2.Claims["sub"])
	}

	policy := policyHeader + `endpoints:
  - name: profile
    match: {path: /profile}
    require: [session]
  - name: sales
    match: {path: "/sales/**"}
    require: [session]
    groups: [sales]
` + fmt.Sprintf(`session_issuers:
  - name: zitadel-op
    issuer: %q
    audiences: [web]
    jwks_url: %q
    algorithms: [RS256]
    tenant: acme
    claims: {user: sub}
    max_ttl: 2h
`, op.Issuer, op.JWKSURL)
	p := startKeygate(t, newPolicyFile(t, policy))

	session := func(path, tok string) answerCase {
		return answerCase{method: "GET", host: defaultHost, path: path, headers: map[string]string{"session": tok}}
	}
	signedIn := func(user any) map[string]string {
		return map[string]string{"x-keygate-user": fmt.Sprint(user), "x-keygate-tenant": "acme",
			"x-keygate-auth": "session", "x-keygate-endpoint": "profile"}
	}
	cases := []struct {
		name   string
		check  answerCase
		status int
		want   map[string]string // identity headers of an allowed request, exactly
	}{
		{"the first user's ID token", session("/profile", web.IDToken), 200, signedIn(web.Claims["sub"])},
		{"the second user's ID token", session("/profile", web2.IDToken), 200, signedIn(web2.Claims["sub"])},
		{"a byte of the signature changed", session("/profile", changeByte(t, web.IDToken, 2)), 401, nil},
		{"a byte of the claims changed", session("/profile", changeByte(t, web.IDToken, 1)), 401, nil},
		{"an ID token the OP issued to another client", session("/profile", otherClient.IDToken), 401, nil},
		{"a group the OP's tokens do not carry", session("/sales/q1", web.IDToken), 403, nil},
		{"the OP's opaque access token", session("/profile", web.AccessToken), 401, nil},
	}
	for _, c := range cases {
		for _, transport := range []string{"grpc", "http"} {
			var o outcome
			if transport == "grpc" {
				o = grpcCheck(t, p, c.check)
			} else {
				o = httpOutcome(t, p, c.check)
			}
			if o.status != c.status {
				t.Errorf("%s over %s: %d, want %d", c.name, transport, o.status, c.status)
				continue
			}
			if c.want != nil && fmt.Sprint(o.identity) != fmt.Sprint(c.want) {
				t.Errorf("%s over %s: identity %v, want %v", c.name, transport, o.identity, c.want)
			}
			if o.status == 401 && o.challenge != `Bearer realm="`+testRealm+`", error="invalid_token"` {
				t.Errorf("%s over %s: WWW-Authenticate %q", c.name, transport, o.challenge)
			}
		}
	}

	// keygate got the OP's keys from the OP itself, over HTTP.
	code, metrics := p.Admin("/metrics")
	m := regexp.MustCompile(`(?m)^keygate_session_jwks_fetches_total\{issuer="zitadel-op",result="ok"\} (\d+)`).FindStringSubmatch(metrics)
	if code != 200 || m == nil {
		t.Errorf("/metrics (%d) counts no JWKS fetch from the OP", code)
	} else if n, _ := strconv.Atoi(m[1]); n < 1 {
		t.Errorf("/metrics: %d JWKS fetches from the OP", n)
	}
	if code, body := p.Admin("/readyz?verbose"); code != 200 || !strings.Contains(body, `"issuer":"zitadel-op"`) || !strings.Contains(body, strconv.Quote(web.Kid)) {
		t.Errorf("/readyz?verbose (%d) does not show the OP's key %q: %s", code, web.Kid, body)
	}
}

// changeByte returns tok with one character of segment seg (0 header,
// 1 claims, 2 signature) replaced by another base64url character, in the
// middle of the segment, where every bit of it counts. The result is
// registered as a secret: it is nearly the token.
func changeByte(t *testing.T, tok string, seg int) string {
	t.Helper()
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || len(parts[seg]) < 4 {
		t.Fatalf("not a three-segment token")
	}
	b := []byte(parts[seg])
	i := len(b) / 2
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	parts[seg] = string(b)
	changed := strings.Join(parts, ".")
	harness.RegisterSecret(changed, "the OP's ID token with one byte changed")
	return changed
}
