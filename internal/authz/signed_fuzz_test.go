package authz_test

import (
	"encoding/base64"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/session"
)

// FuzzSignedSession decides arbitrary session values with exactly two dots
// (the signed-token path) against a policy with an inline issuer: never a
// panic, only 401/403/200, the same answer twice (the cache answers the
// second), and an allowed request only for a token keygate's test signer
// made: nothing else can be forged into a principal.
func FuzzSignedSession(f *testing.F) {
	signer, err := session.NewEphemeralSigner()
	if err != nil {
		f.Fatal(err)
	}
	snap, err := policy.Load([]policy.Input{{Name: "p.json", Data: []byte(fmt.Sprintf(`{"version": 1,
 "groups": [{"name": "sales"}], "tenants": [{"id": "acme", "orgs": ["acme-eu"]}],
 "endpoints": [{"name": "sales", "match": {"path": "/orgs/{org}/sales/**"}, "require": ["session"], "groups": ["sales"], "org": {"from": "path", "name": "org"}}],
 "session_issuers": [{"name": "idp", "issuer": "https://idp.test", "audiences": ["api"], "jwks": %s, "algorithms": ["EdDSA"]}]}`, signer.JWKS()))}},
		policy.Options{Generation: 1})
	if err != nil {
		f.Fatal(err)
	}
	v := session.NewVerifier(session.Options{})
	defer v.Close()
	v.Sync(snap)
	good := map[string]bool{}
	sign := func(c session.Claims) string {
		c.Issuer, c.Audience = "https://idp.test", "api"
		tok, err := signer.Sign(c)
		if err != nil {
			f.Fatal(err)
		}
		return tok
	}
	now := time.Now()
	valid := sign(session.Claims{User: "alice", Tenant: "acme", Org: "acme-eu", Groups: []string{"sales"}, ExpiresAt: now.Add(time.Hour)})
	good[valid] = true
	f.Add(valid)
	f.Add(sign(session.Claims{User: "alice", Tenant: "acme", ExpiresAt: now.Add(-time.Hour)}))
	f.Add(sign(session.Claims{User: "alice", Tenant: "nope", ExpiresAt: now.Add(time.Hour)}))
	parts := strings.Split(valid, ".")
	f.Add(parts[0] + "." + parts[1] + ".")
	f.Add(parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(`{"iss":"https://idp.test","aud":"api","sub":"x","tid":"acme","exp":99999999999}`)) + "." + parts[2])
	f.Add(base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none"}`)) + "." + parts[1] + ".x")
	f.Add("a.b.c")
	f.Add("..")
	f.Fuzz(func(t *testing.T, tok string) {
		if strings.Count(tok, ".") != 2 {
			return // not the signed-token path
		}
		c, err := cache.New(64, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		a := authz.New(&store{snap}, c, authz.WithSessionVerifier(v))
		req := authz.Request{Method: "GET", Host: "api.example.com", Path: "/orgs/acme-eu/sales/q1", Headers: authz.MapHeaders{"session": tok}}
		d1 := a.Decide(&req)
		d2 := a.Decide(&req)
		switch {
		case d1.Status != 200 && d1.Status != 401 && d1.Status != 403:
			t.Fatalf("status %d (%v)", d1.Status, d1.Reason)
		case d1.Status != d2.Status || d1.Reason != d2.Reason:
			t.Fatalf("the cached answer differs: %d %v, then %d %v", d1.Status, d1.Reason, d2.Status, d2.Reason)
		case d1.Result == authz.Allow && !good[strings.TrimSpace(tok)]:
			t.Fatalf("a token keygate's signer did not make was allowed as %+v", d1.Session)
		}
	})
}
