package e2e

import (
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keygate/keygate/test/internal/harness"
)

// opensslIdP is an identity provider whose tokens are signed by OpenSSL
// (RS256 over the JWS signing input), not by keygate's code or its JOSE
// library, and whose JWKS is served over real HTTP. Its keys can be
// rotated while keygate runs.
type opensslIdP struct {
	t       *testing.T
	openssl string
	dir     string
	srv     *httptest.Server
	mu      sync.Mutex
	served  []string // kids in the JWKS
	pubs    map[string]*rsa.PublicKey
	fetches int
}

func newOpenSSLIdP(t *testing.T) *opensslIdP {
	bin, err := harness.LookPath("openssl")
	if err != nil {
		harness.Missing(t, "openssl signs the identity provider's tokens: apt-get install openssl")
	}
	i := &opensslIdP{t: t, openssl: bin, dir: t.TempDir(), pubs: map[string]*rsa.PublicKey{}}
	i.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		i.mu.Lock()
		defer i.mu.Unlock()
		i.fetches++
		set := jose.JSONWebKeySet{}
		for _, kid := range i.served {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: i.pubs[kid], KeyID: kid, Algorithm: "RS256", Use: "sig"})
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(i.srv.Close)
	return i
}

// newKey makes an RSA key with OpenSSL.
func (i *opensslIdP) newKey(kid string) {
	i.t.Helper()
	path := filepath.Join(i.dir, kid+".pem")
	if out, err := exec.Command(i.openssl, "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", path).CombinedOutput(); err != nil {
		i.t.Fatalf("openssl genpkey: %v\n%s", err, out)
	}
	pubPEM, err := exec.Command(i.openssl, "pkey", "-in", path, "-pubout").Output()
	if err != nil {
		i.t.Fatal(err)
	}
	block, _ := pem.Decode(pubPEM)
	pub, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil {
		i.t.Fatal(err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.pubs[kid] = pub.(*rsa.PublicKey)
}

// serve makes the JWKS hold exactly these keys.
func (i *opensslIdP) serve(kids ...string) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.served = kids
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

// token signs claims with key kid: openssl dgst -sha256 -sign.
func (i *opensslIdP) token(kid string, claims map[string]any) string {
	i.t.Helper()
	input := b64(map[string]any{"alg": "RS256", "typ": "JWT", "kid": kid}) + "." + b64(claims)
	cmd := exec.Command(i.openssl, "dgst", "-sha256", "-sign", filepath.Join(i.dir, kid+".pem"))
	cmd.Stdin = strings.NewReader(input)
	sig, err := cmd.Output()
	if err != nil {
		i.t.Fatalf("openssl dgst -sign: %v", err)
	}
	tok := input + "." + base64.RawURLEncoding.EncodeToString(sig)
	harness.RegisterSecret(tok, "identity provider token signed with "+kid)
	return tok
}

func (i *opensslIdP) claims(sub string, groups ...string) map[string]any {
	now := time.Now()
	return map[string]any{"iss": i.srv.URL, "aud": "api.e2e.test", "sub": sub, "tid": "acme", "org": "acme-eu",
		"groups": groups, "jti": "jti-" + sub, "iat": now.Unix(), "exp": now.Add(30 * time.Minute).Unix()}
}

const signedEndpoints = `endpoints:
  - name: sales
    match: {path: "/orgs/{org}/sales/**"}
    require: [session]
    groups: [sales]
    org: {from: path, name: org}
`

func signedPolicy(idpURL, extra string) string {
	return policyHeader + signedEndpoints + fmt.Sprintf(`session_issuers:
  - name: corp-idp
    issuer: %q
    audiences: [api.e2e.test]
    jwks_url: %q
    algorithms: [RS256]
    groups_map: {idp-sales-team: sales}
    max_ttl: 1h
`, idpURL, idpURL+"/keys") + extra
}

// TestSignedSessions runs the built binary: a session minted by `keygate
// sessions issue` and one signed by an identity provider (OpenSSL, JWKS
// over HTTP) are decided over gRPC and HTTP with the groups, tenant and
// organization they carry; forgeries are 401 with the generic answer; the
// IdP rotates its key and the removed key's token, warm in the cache, is
// refused at the next refresh; revoked_sessions and sessions_not_before
// refuse warm sessions within the file reload budget.
func TestSignedSessions(t *testing.T) {
	t.Parallel()
	idp := newOpenSSLIdP(t)
	idp.newKey("k1")
	idp.serve("k1")
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "session.key")
	if r := harness.Run(t, 30*time.Second, "sessions", "keygen", "--out", keyFile); r.Code != 0 {
		t.Fatalf("keygen: %s", r.Out)
	}
	path := newPolicyFile(t, signedPolicy(idp.srv.URL, ""))
	p := startKeygate(t, path, "--session-verify-key", keyFile+".pub", "--session-jwks-refresh", "1s", "--session-jwks-min-refresh", "200ms")

	// issue runs keygate sessions issue outside harness.Run: its standard
	// output is the one place the token is meant to appear, so it is not
	// scanned; the token is then registered, and serve must never print it.
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	issue := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"sessions", "issue", "--signing-key", keyFile, "--tenant", "acme"}, args...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		tok := strings.TrimSpace(string(out))
		if err != nil || strings.Count(tok, ".") != 2 || strings.Contains(stderr.String(), tok) {
			t.Fatalf("sessions issue: %v\n%s", err, stderr.String())
		}
		harness.RegisterSecret(tok, "session minted by keygate sessions issue")
		return tok
	}
	sessionCase := func(tok string, status int) answerCase {
		return answerCase{method: "GET", host: defaultHost, path: "/orgs/acme-eu/sales/q1", headers: map[string]string{"session": tok}, status: status}
	}
	ident := func(user, sid string) map[string]string {
		return map[string]string{"x-keygate-user": user, "x-keygate-tenant": "acme", "x-keygate-org": "acme-eu", "x-keygate-session-id": sid,
			"x-keygate-groups": "sales", "x-keygate-auth": "session", "x-keygate-endpoint": "sales"}
	}
	decide := func(name string, c answerCase, want map[string]string) {
		t.Helper()
		for _, transport := range []string{"grpc", "http"} {
			var o outcome
			if transport == "grpc" {
				o = grpcCheck(t, p, c)
			} else {
				o = httpOutcome(t, p, c)
			}
			if o.status != c.status {
				t.Errorf("%s over %s: %d, want %d (%+v)", name, transport, o.status, c.status, o)
				continue
			}
			if want != nil && fmt.Sprint(o.identity) != fmt.Sprint(want) {
				t.Errorf("%s over %s: identity %v, want %v", name, transport, o.identity, want)
			}
			if o.status == 401 && o.challenge != `Bearer realm="`+testRealm+`", error="invalid_token"` {
				t.Errorf("%s over %s: WWW-Authenticate %q", name, transport, o.challenge)
			}
		}
	}

	alice := issue("--user", "alice", "--org", "acme-eu", "--groups", "sales", "--ttl", "1h", "--id", "s_alice1")
	decide("keygate's own session", sessionCase(alice, 200), ident("alice", "s_alice1"))
	idpTok := idp.token("k1", idp.claims("carol", "idp-sales-team", "not-declared"))
	decide("the IdP's token", sessionCase(idpTok, 200), ident("carol", "jti-carol"))

	// Forgeries, through the whole binary.
	forged := map[string]string{
		"alg none":               b64(map[string]any{"alg": "none"}) + "." + b64(idp.claims("eve", "idp-sales-team")) + ".",
		"HS256 with the pub key": hs256WithPublicKey(idp, idp.claims("eve", "idp-sales-team")),
		"10 KiB":                 idpTok[:strings.LastIndexByte(idpTok, '.')] + strings.Repeat("A", 10<<10),
		"4 segments":             idpTok + ".e30",
		"wrong aud":              idp.token("k1", map[string]any{"iss": idp.srv.URL, "aud": "other", "sub": "eve", "tid": "acme", "exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix()}),
		"over max_ttl":           idp.token("k1", map[string]any{"iss": idp.srv.URL, "aud": "api.e2e.test", "sub": "eve", "tid": "acme", "exp": time.Now().Add(3 * time.Hour).Unix(), "iat": time.Now().Unix()}),
		"undeclared tenant":      idp.token("k1", map[string]any{"iss": idp.srv.URL, "aud": "api.e2e.test", "sub": "eve", "tid": "initech", "exp": time.Now().Add(time.Minute).Unix(), "iat": time.Now().Unix()}),
	}
	for name, tok := range forged {
		decide(name, sessionCase(tok, 401), nil)
	}

	// The IdP rotates: k2 comes and k1 goes. A k2 token names an unknown
	// kid and verifies after the refresh it causes; k1's token, warm in
	// the cache, is refused from the next refresh on.
	for range 20 {
		grpcCheck(t, p, sessionCase(idpTok, 200))
	}
	idp.newKey("k2")
	idp.serve("k2")
	idpTok2 := idp.token("k2", idp.claims("dave", "idp-sales-team"))
	took, ok := poll(5*time.Second, func() bool { return grpcCheck(t, p, sessionCase(idpTok2, 200)).status == 200 })
	if !ok {
		t.Fatalf("the rotated key never verified:\n%s", p.Out.Tail(20))
	}
	t.Logf("a token of the IdP's new key verified %v after the rotation", took.Round(time.Millisecond))
	took, ok = poll(5*time.Second, func() bool { return grpcCheck(t, p, sessionCase(idpTok, 200)).status == 401 })
	if !ok {
		t.Fatalf("the removed key's token is still allowed")
	}
	t.Logf("the removed key's warm token was refused %v after the k2 token verified", took.Round(time.Millisecond))
	if code, body := p.Admin("/metrics"); code != 200 || !strings.Contains(body, `keygate_session_jwks_fetches_total{issuer="corp-idp",result="ok"}`) {
		t.Errorf("/metrics has no JWKS fetch counts: %d", code)
	}
	if code, body := p.Admin("/readyz?verbose"); code != 200 || !strings.Contains(body, `"issuer":"corp-idp"`) || !strings.Contains(body, `"kids":["k2"]`) {
		t.Errorf("/readyz?verbose does not show the issuer's key set: %d %s", code, body)
	}

	// Revocation by session id, then signing alice out everywhere, each on
	// a warm cache, within the file reload budget.
	revoke := func(name, extra, tok string) {
		t.Helper()
		for range 20 {
			grpcCheck(t, p, sessionCase(tok, 200))
		}
		writeAtomic(t, path, signedPolicy(idp.srv.URL, extra))
		took, ok := poll(reloadDeadline, func() bool { return grpcCheck(t, p, sessionCase(tok, 401)).status == 401 })
		if !ok {
			t.Fatalf("%s: still allowed %v after the policy changed:\n%s", name, reloadDeadline, p.Out.Tail(20))
		}
		if took > time.Second {
			t.Errorf("%s took %v; the file budget is 1 s", name, took)
		}
		t.Logf("%s: refused %v after the policy file changed", name, took.Round(time.Millisecond))
	}
	revoke("revoked_sessions", "revoked_sessions: [{id: s_alice1}]\n", alice)
	alice2 := issue("--user", "alice", "--org", "acme-eu", "--groups", "sales", "--id", "s_alice2")
	decide("another session of alice", sessionCase(alice2, 200), ident("alice", "s_alice2"))
	time.Sleep(1100 * time.Millisecond) // the sign-out comes after alice2's iat (whole seconds)
	revoke("sessions_not_before", fmt.Sprintf("revoked_sessions: [{id: s_alice1}]\nsessions_not_before: [{tenant: acme, user: alice, before: %s}]\n",
		time.Now().UTC().Format(time.RFC3339)), alice2)
	decide("the IdP's token of another user", sessionCase(idpTok2, 200), ident("dave", "jti-dave"))
}

// hs256WithPublicKey is the classic key-confusion forgery: HS256 whose
// HMAC key is the issuer's public key bytes.
func hs256WithPublicKey(idp *opensslIdP, claims map[string]any) string {
	idp.mu.Lock()
	der, _ := x509.MarshalPKIXPublicKey(idp.pubs["k1"])
	idp.mu.Unlock()
	input := b64(map[string]any{"alg": "HS256", "typ": "JWT", "kid": "k1"}) + "." + b64(claims)
	m := hmac.New(sha256.New, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	m.Write([]byte(input))
	return input + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}
