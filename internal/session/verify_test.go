package session

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keygate/keygate/internal/policy"
)

// testKey is a signing key of a test issuer, with its public JWK.
type testKey struct {
	kid  string
	alg  jose.SignatureAlgorithm
	priv any
	pub  any
}

func newTestKey(t testing.TB, kid string, alg jose.SignatureAlgorithm) testKey {
	t.Helper()
	switch alg {
	case jose.RS256, jose.PS256:
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			t.Fatal(err)
		}
		return testKey{kid, alg, k, &k.PublicKey}
	case jose.ES256:
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return testKey{kid, alg, k, &k.PublicKey}
	default:
		pub, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return testKey{kid, jose.EdDSA, k, pub}
	}
}

func (k testKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.pub, KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"}
}

// sign signs claims with k through go-jose (kid in the header).
func (k testKey) sign(t testing.TB, claims map[string]any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if k.kid != "" {
		opts = opts.WithHeader("kid", k.kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	obj, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := obj.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func jwksJSON(keys ...testKey) string {
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.jwk())
	}
	b, _ := json.Marshal(set)
	return string(b)
}

// rawToken assembles a token from a header and claims with any signature
// bytes: the forgeries go-jose would not make.
func rawToken(header, claims map[string]any, sig []byte) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return enc.EncodeToString(h) + "." + enc.EncodeToString(c) + "." + enc.EncodeToString(sig)
}

const basePolicy = `{"version": 1,
 "groups": [{"name": "sales"}, {"name": "support"}],
 "tenants": [{"id": "acme", "orgs": ["acme-eu", "acme-us"]}, {"id": "globex", "orgs": ["globex-main"]}],
 "endpoints": [{"name": "all", "match": {"path": "/**"}, "require": ["session"]}],
 %s}`

func loadSnap(t testing.TB, body string) *policy.Snapshot {
	t.Helper()
	snap, err := policy.Load([]policy.Input{{Name: "p.json", Data: []byte(fmt.Sprintf(basePolicy, body))}}, policy.Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func TestVerifyRefusals(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	ed := newTestKey(t, "ed-1", jose.EdDSA)
	rs := newTestKey(t, "rs-1", jose.RS256)
	other := newTestKey(t, "ed-1", jose.EdDSA) // same kid, another key: an attacker's
	snap := loadSnap(t, fmt.Sprintf(`
 "session_issuers": [
  {"name": "corp", "issuer": "https://idp.example.com", "audiences": ["api.example.com"], "jwks": %s,
   "algorithms": ["EdDSA", "RS256"], "groups_map": {"idp-sales-team": "sales"}, "max_ttl": "24h"},
  {"name": "acme-app", "issuer": "https://auth.acme.test", "audiences": ["api"], "jwks": %s, "tenant": "acme",
   "algorithms": ["EdDSA"], "claims": {"user": "email", "groups": "roles"}}],
 "revoked_sessions": [{"id": "s_revoked", "until": "2026-06-02T00:00:00Z"}],
 "sessions_not_before": [{"tenant": "acme", "user": "mallory", "before": "2026-06-01T11:30:00Z"}]`,
		jwksJSON(ed, rs), jwksJSON(newTestKey(t, "app-1", jose.EdDSA))))
	v := NewVerifier(Options{})
	defer v.Close()
	v.Sync(snap)

	claims := func(over map[string]any) map[string]any {
		c := map[string]any{"iss": "https://idp.example.com", "aud": "api.example.com", "sub": "alice", "tid": "acme",
			"groups": []string{"idp-sales-team", "undeclared"}, "sid": "s_1", "iat": now.Add(-time.Hour).Unix(), "exp": now.Add(time.Hour).Unix()}
		for k, v := range over {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
		}
		return c
	}
	edHeader := map[string]any{"alg": "EdDSA", "kid": "ed-1", "typ": "JWT"}
	pubDER, _ := x509.MarshalPKIXPublicKey(rs.pub)
	hs256 := func() string { // HS256 "signed" with the RSA public key's bytes
		h := map[string]any{"alg": "HS256", "kid": "rs-1", "typ": "JWT"}
		unsigned := strings.Join(strings.Split(rawToken(h, claims(nil), nil), ".")[:2], ".")
		m := hmac.New(sha256.New, pubDER)
		m.Write([]byte(unsigned))
		return unsigned + "." + base64.RawURLEncoding.EncodeToString(m.Sum(nil))
	}()

	cases := []struct {
		name     string
		token    string
		want     Refusal
		disabled bool
		why      string
	}{
		{"valid EdDSA", ed.sign(t, claims(nil)), Verified, false, ""},
		{"valid RS256", rs.sign(t, claims(nil)), Verified, false, ""},
		{"aud as a list", ed.sign(t, claims(map[string]any{"aud": []string{"other", "api.example.com"}})), Verified, false, ""},
		{"expired within the leeway", ed.sign(t, claims(map[string]any{"exp": now.Add(-30 * time.Second).Unix()})), Verified, false, ""},
		{"10 KiB token", ed.sign(t, claims(map[string]any{"pad": strings.Repeat("x", 10<<10)})), Malformed, false, "8192 at most"},
		{"4 segments", ed.sign(t, claims(nil)) + ".e30", Malformed, false, "4 segments"},
		{"bad base64", strings.Replace(ed.sign(t, claims(nil)), ".", ".*", 1), Malformed, false, "outside base64url"},
		{"alg none, empty signature", rawToken(map[string]any{"alg": "none"}, claims(nil), nil), Malformed, false, "empty segment"},
		{"alg none with a signature", rawToken(map[string]any{"alg": "none"}, claims(nil), []byte("x")), Unknown, false, `"none" is never accepted`},
		{"HS256 with the public key's bytes", hs256, Unknown, false, `"HS256" is never accepted`},
		{"claims not JSON", strings.Split(ed.sign(t, claims(nil)), ".")[0] + ".bm90IGpzb24." + strings.Split(ed.sign(t, claims(nil)), ".")[2], Malformed, false, "not a JSON object"},
		{"valid signature from an unknown key", other.sign(t, claims(nil)), Unknown, false, "signature does not verify"},
		{"unknown kid", newTestKey(t, "ed-9", jose.EdDSA).sign(t, claims(nil)), Unknown, false, `no key with kid "ed-9"`},
		{"tampered claims", func() string {
			p := strings.Split(ed.sign(t, claims(nil)), ".")
			c, _ := json.Marshal(claims(map[string]any{"sub": "root"}))
			return p[0] + "." + base64.RawURLEncoding.EncodeToString(c) + "." + p[2]
		}(), Unknown, false, "signature does not verify"},
		{"wrong iss", ed.sign(t, claims(map[string]any{"iss": "https://evil.example"})), Unknown, false, "not declared under session_issuers"},
		{"no iss", ed.sign(t, claims(map[string]any{"iss": nil})), Unknown, false, "no iss"},
		{"alg not in the issuer's list", func() string {
			k := newTestKey(t, "app-1", jose.ES256)
			return k.sign(t, claims(map[string]any{"iss": "https://auth.acme.test", "aud": "api"}))
		}(), Unknown, false, "not among issuer acme-app's algorithms"},
		{"wrong aud", ed.sign(t, claims(map[string]any{"aud": "other.example.com"})), Unknown, false, "aud does not hold"},
		{"no aud", ed.sign(t, claims(map[string]any{"aud": nil})), Unknown, false, "aud does not hold"},
		{"expired", ed.sign(t, claims(map[string]any{"exp": now.Add(-2 * time.Minute).Unix()})), Expired, false, "expired at 2026-06-01T11:58:00Z"},
		{"no exp", ed.sign(t, claims(map[string]any{"exp": nil})), Malformed, false, "no exp"},
		{"exp not a number", ed.sign(t, claims(map[string]any{"exp": "tomorrow"})), Malformed, false, "numbers of seconds"},
		{"nbf in the future", ed.sign(t, claims(map[string]any{"nbf": now.Add(5 * time.Minute).Unix()})), Expired, false, "not valid before"},
		{"iat in the future", ed.sign(t, claims(map[string]any{"iat": now.Add(5 * time.Minute).Unix()})), Expired, false, "issued in the future"},
		{"exp - iat over max_ttl", ed.sign(t, claims(map[string]any{"iat": now.Add(-time.Hour).Unix(), "exp": now.Add(24 * time.Hour).Unix()})), Unknown, false, "max_ttl is 24h0m0s"},
		{"no iat with max_ttl", ed.sign(t, claims(map[string]any{"iat": nil})), Unknown, false, "no iat"},
		{"undeclared tenant", ed.sign(t, claims(map[string]any{"tid": "initech"})), Unknown, false, `tenant "initech" is not declared`},
		{"no tenant", ed.sign(t, claims(map[string]any{"tid": nil})), Unknown, false, "names no tenant"},
		{"org of another tenant", ed.sign(t, claims(map[string]any{"org": "globex-main"})), Unknown, false, `"globex-main" is not in tenant "acme"`},
		{"undeclared org", ed.sign(t, claims(map[string]any{"org": "nowhere"})), Unknown, false, `"nowhere" is not declared`},
		{"no user", ed.sign(t, claims(map[string]any{"sub": nil})), Unknown, false, "names no user"},
		{"user with a comma", ed.sign(t, claims(map[string]any{"sub": "a,b"})), Unknown, false, "comma"},
		{"groups not a list", ed.sign(t, claims(map[string]any{"groups": 7})), Malformed, false, "not a list of strings"},
		{"revoked sid", ed.sign(t, claims(map[string]any{"sid": "s_revoked"})), Verified, true, "revoked_sessions"},
		{"revoked jti", ed.sign(t, claims(map[string]any{"sid": nil, "jti": "s_revoked"})), Verified, true, "revoked_sessions"},
		{"signed out everywhere", ed.sign(t, claims(map[string]any{"sub": "mallory"})), Verified, true, "signed out everywhere"},
		{"issued after signing out", ed.sign(t, claims(map[string]any{"sub": "mallory", "iat": now.Add(-20 * time.Minute).Unix()})), Verified, false, ""},
		{"raw header tricks: jwk embedded", rawToken(map[string]any{"alg": "EdDSA", "kid": "ed-1", "jwk": other.jwk()}, claims(nil), make([]byte, 64)), Unknown, false, "signature does not verify"},
		{"zero signature", rawToken(edHeader, claims(nil), make([]byte, 64)), Unknown, false, "signature does not verify"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := v.Verify(snap, tc.token, now.UnixNano())
			if r.Refusal != tc.want {
				t.Fatalf("refusal %v (%s), want %v", r.Refusal, r.Why, tc.want)
			}
			if !strings.Contains(r.Why, tc.why) {
				t.Errorf("why %q, want it to say %q", r.Why, tc.why)
			}
			if tc.token != "" && strings.Contains(r.Why, tc.token) {
				t.Errorf("the explanation holds the token")
			}
			if (r.Principal != nil) != (tc.want == Verified) {
				t.Fatalf("principal %v with refusal %v", r.Principal, r.Refusal)
			}
			if r.Principal != nil && r.Principal.Disabled != tc.disabled {
				t.Errorf("disabled %v, want %v", r.Principal.Disabled, tc.disabled)
			}
		})
	}

	t.Run("claims mapping", func(t *testing.T) {
		r := v.Verify(snap, ed.sign(t, claims(map[string]any{"org": "acme-eu"})), now.UnixNano())
		p := r.Principal
		if p == nil {
			t.Fatal(r.Why)
		}
		// groups_map renamed idp-sales-team; "undeclared" is dropped.
		if p.User != "alice" || p.Tenant != "acme" || p.Org != "acme-eu" || p.ID != "s_1" || !reflect.DeepEqual(p.Groups(), []string{"sales"}) {
			t.Errorf("principal %+v groups %v", p, p.Groups())
		}
		if !p.ExpiredAt(now.Add(time.Hour+Leeway).UnixNano()) || p.ExpiredAt(now.Add(time.Hour).UnixNano()) {
			t.Error("the principal must expire at exp plus the leeway")
		}
	})
	t.Run("fixed tenant and claim names", func(t *testing.T) {
		app := newTestKey(t, "app-1", jose.EdDSA)
		snap := loadSnap(t, fmt.Sprintf(`"session_issuers": [{"name": "acme-app", "issuer": "https://auth.acme.test", "audiences": ["api"],
		  "jwks": %s, "tenant": "acme", "algorithms": ["EdDSA"], "claims": {"user": "email", "groups": "roles"}}]`, jwksJSON(app)))
		v.Sync(snap)
		base := map[string]any{"iss": "https://auth.acme.test", "aud": "api", "email": "bob@acme.test", "roles": "support", "exp": now.Add(time.Hour).Unix()}
		r := v.Verify(snap, app.sign(t, base), now.UnixNano())
		if p := r.Principal; p == nil || p.User != "bob@acme.test" || p.Tenant != "acme" || p.GroupsHeader() != "support" {
			t.Fatalf("%v %s", p, r.Why)
		}
		base["tid"] = "globex"
		if r := v.Verify(snap, app.sign(t, base), now.UnixNano()); r.Refusal != Malformed || !strings.Contains(r.Why, `not issuer acme-app's tenant "acme"`) {
			t.Errorf("a token of another tenant than the issuer's: %v %s", r.Refusal, r.Why)
		}
	})
}

// TestOwnKeys: keygate's own tokens, signed by Signer, verify with the
// public key alone (what --session-verify-key gives the replicas).
func TestOwnKeys(t *testing.T) {
	s, err := NewEphemeralSigner()
	if err != nil {
		t.Fatal(err)
	}
	_, pubPEM, _ := GenerateKey() // another key, to show the kid picks
	keys, err := ParseVerifyKeys(append(pubPEM, []byte(fmt.Sprintf("-----BEGIN PUBLIC KEY-----\n%s\n-----END PUBLIC KEY-----\n", pkixBase64(t, s)))...))
	if err != nil {
		t.Fatal(err)
	}
	snap := loadSnap(t, `"management": {"max_session_ttl": "8h"}`)
	v := NewVerifier(Options{OwnKeys: keys})
	defer v.Close()
	v.Sync(snap)
	now := time.Now()
	tok, err := s.Sign(Claims{User: "alice", Tenant: "acme", Org: "acme-us", Groups: []string{"sales"}, ExpiresAt: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	r := v.Verify(snap, tok, now.UnixNano())
	if r.Principal == nil || r.Principal.User != "alice" || r.Principal.Org != "acme-us" || r.KID != s.KID() || r.Alg != "EdDSA" || !strings.HasPrefix(r.Principal.ID, "s_") {
		t.Fatalf("%+v", r)
	}
	// Without the own keys, keygate's issuer is unknown.
	v2 := NewVerifier(Options{})
	defer v2.Close()
	if r := v2.Verify(snap, tok, now.UnixNano()); r.Refusal != Unknown {
		t.Errorf("verified without keys: %v", r.Refusal)
	}
	if _, err := ParseVerifyKeys(mustPrivatePEM(t)); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Errorf("a private key given to verify: %v", err)
	}
}

func pkixBase64(t *testing.T, s *Signer) string {
	der, err := x509.MarshalPKIXPublicKey(s.key.Public())
	if err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(der)
}

func mustPrivatePEM(t *testing.T) []byte {
	priv, _, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return priv
}
