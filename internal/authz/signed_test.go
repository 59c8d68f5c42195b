package authz_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/session"
)

const signedPolicy = `version: 1
settings: {realm: api.example.com}
groups: [{name: sales}, {name: support}]
tenants:
  - {id: acme, orgs: [acme-eu, acme-us]}
  - {id: globex, orgs: [globex-main]}
endpoints:
  - {name: sales, match: {path: "/orgs/{org}/sales/**"}, require: [session], groups: [sales], org: {from: path, name: org}}
  - {name: me, match: {path: /me}, require: [session]}
session_issuers:
  - {name: idp, issuer: "https://idp.test", audiences: [api], jwks_url: "%s", groups_map: {idp-sales: sales}, algorithms: [EdDSA]}
sessions:
  - {id: s-opaque, hash: "%s", tenant: acme, org: acme-eu, user: olivia, groups: [sales]}
%s`

// idp serves a key set over real HTTP; its signing key can be rotated.
type idp struct {
	srv  *httptest.Server
	mu   sync.Mutex
	keys []*session.Signer
}

func newIDP(t testing.TB) *idp {
	i := &idp{}
	i.rotate(t)
	i.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		i.mu.Lock()
		defer i.mu.Unlock()
		w.Write(i.keys[len(i.keys)-1].JWKS())
	}))
	t.Cleanup(i.srv.Close)
	return i
}

// rotate makes a new key and serves only it: the old one is removed.
func (i *idp) rotate(t testing.TB) *session.Signer {
	s, err := session.NewEphemeralSigner()
	if err != nil {
		t.Fatal(err)
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.keys = append(i.keys, s)
	return s
}

func (i *idp) signer() *session.Signer {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.keys[len(i.keys)-1]
}

func (i *idp) token(t testing.TB, s *session.Signer, c session.Claims) string {
	t.Helper()
	c.Issuer, c.Audience = "https://idp.test", "api"
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = time.Now().Add(time.Hour)
	}
	tok, err := s.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type signedEnv struct {
	a     *authz.Authorizer
	st    *store
	v     *session.Verifier
	cache *cache.Cache
	idp   *idp
	gen   uint64
}

func newSignedEnv(t testing.TB, minRefresh time.Duration) *signedEnv {
	e := &signedEnv{idp: newIDP(t)}
	e.v = session.NewVerifier(session.Options{MinRefresh: minRefresh})
	t.Cleanup(e.v.Close)
	var err error
	if e.cache, err = cache.New(1000, time.Minute); err != nil {
		t.Fatal(err)
	}
	e.st = &store{}
	e.publish(t, "")
	e.a = authz.New(e.st, e.cache, authz.WithSessionVerifier(e.v))
	return e
}

// publish compiles the policy with extra sections as a new generation,
// as a reload does.
func (e *signedEnv) publish(t testing.TB, extra string) {
	t.Helper()
	e.gen++
	snap, err := policy.Load([]policy.Input{{Name: "p.yaml", Data: []byte(fmt.Sprintf(signedPolicy, e.idp.srv.URL,
		policy.FormatDigest(apikey.Digest("opaque-session-olivia")), extra))}}, policy.Options{Generation: e.gen})
	if err != nil {
		t.Fatal(err)
	}
	e.st.s = snap
	e.v.Sync(snap)
}

func (e *signedEnv) decide(path, tok string) authz.Decision {
	d, _ := decide(e.a, path, map[string]string{"session": tok, "x-request-id": "r1"})
	return d
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
	}
}

// TestSignedSessionDecided: a signed session is decided with the groups,
// tenant and organization it carries, as a listed session is; every token
// that does not verify is a 401 with the same generic answer.
func TestSignedSessionDecided(t *testing.T) {
	e := newSignedEnv(t, time.Second)
	s := e.idp.signer()
	alice := e.idp.token(t, s, session.Claims{ID: "s_alice", User: "alice", Tenant: "acme", Org: "acme-eu", Groups: []string{"idp-sales", "unknown"}})
	waitFor(t, "the IdP's keys are fetched", func() bool { return e.decide("/me", alice).Result == authz.Allow })

	tenantWide := e.idp.token(t, s, session.Claims{User: "tara", Tenant: "acme", Groups: []string{"sales"}})
	bob := e.idp.token(t, s, session.Claims{User: "bob", Tenant: "acme", Org: "acme-eu", Groups: []string{"support"}})
	stranger, _ := session.NewEphemeralSigner()
	forged := e.idp.token(t, stranger, session.Claims{User: "alice", Tenant: "acme", Org: "acme-eu", Groups: []string{"sales"}})
	expired := e.idp.token(t, s, session.Claims{User: "alice", Tenant: "acme", IssuedAt: time.Now().Add(-3 * time.Hour), ExpiresAt: time.Now().Add(-2 * time.Hour)})
	otherTenant := e.idp.token(t, s, session.Claims{User: "alice", Tenant: "initech"})
	parts := strings.Split(alice, ".")

	cases := []struct {
		name, path, tok string
		status          int
		reason          authz.Reason
		ident           string
	}{
		{"org-level, own org", "/orgs/acme-eu/sales/q1", alice, 200, authz.ReasonAllowed, ident("alice", "acme", "acme-eu", "", "s_alice", "sales", "session", "sales")},
		{"org-level, another org", "/orgs/acme-us/sales/q1", alice, 403, authz.ReasonOrgDenied, ""},
		{"tenant-level reaches every org", "/orgs/acme-us/sales/q1", tenantWide, 200, authz.ReasonAllowed, ""},
		{"no group of the endpoint", "/orgs/acme-eu/sales/q1", bob, 403, authz.ReasonGroupDenied, ""},
		{"signed by an unknown key", "/me", forged, 401, authz.ReasonUnknownCredential, ""},
		{"expired", "/me", expired, 401, authz.ReasonExpiredCredential, ""},
		{"undeclared tenant", "/me", otherTenant, 401, authz.ReasonUnknownCredential, ""},
		{"bad base64", "/me", parts[0] + ".%%%." + parts[2], 401, authz.ReasonMalformedCredential, ""},
		{"10 KiB", "/me", parts[0] + "." + strings.Repeat("A", 10<<10) + "." + parts[2], 401, authz.ReasonMalformedCredential, ""},
		{"4 segments: not a JWT, an unknown opaque token", "/me", alice + ".x", 401, authz.ReasonUnknownCredential, ""},
		{"opaque session still listed by digest", "/orgs/acme-eu/sales/q1", "opaque-session-olivia", 200, authz.ReasonAllowed, ""},
	}
	opaqueUnknown := e.decide("/me", "no-such-session")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := e.decide(tc.path, tc.tok)
			if d.Status != tc.status || d.Reason != tc.reason {
				t.Fatalf("got %d %v, want %d %v", d.Status, d.Reason, tc.status, tc.reason)
			}
			if tc.ident != "" {
				if got := identOf(&d); got != tc.ident {
					t.Errorf("identity\n got %s\nwant %s", got, tc.ident)
				}
			}
			if tc.status == 401 && string(d.Body("r1")) != string(opaqueUnknown.Body("r1")) {
				t.Errorf("body %s differs from an unknown opaque session's %s", d.Body("r1"), opaqueUnknown.Body("r1"))
			}
		})
	}
}

// identOf is the identity headers an allowed decision sets, as ident
// writes them.
func identOf(d *authz.Decision) string {
	m := map[string]string{}
	for _, h := range d.IdentityHeaders(nil) {
		m[strings.TrimPrefix(h.Name, "x-keygate-")] = h.Value
	}
	return ident(m["user"], m["tenant"], m["org"], m["key-id"], m["session-id"], m["groups"], m["auth"], m["endpoint"])
}

// TestSignedSessionCacheFollowsKeys: a verified token is answered from the
// cache, and the entry dies when its issuer's key set changes (a key
// removed from the JWKS refuses the token at the next refresh however warm
// the cache), when the policy revokes the session, or signs its user out.
func TestSignedSessionCacheFollowsKeys(t *testing.T) {
	e := newSignedEnv(t, 100*time.Millisecond)
	old := e.idp.signer()
	tok := e.idp.token(t, old, session.Claims{ID: "s_warm", User: "alice", Tenant: "acme", Org: "acme-eu", Groups: []string{"sales"}})
	waitFor(t, "the IdP's keys are fetched", func() bool { return e.decide("/me", tok).Result == authz.Allow })
	hits := e.cache.Stats().Hits
	for range 3 {
		if d := e.decide("/orgs/acme-eu/sales/x", tok); d.Result != authz.Allow {
			t.Fatalf("warm: %v", d.Reason)
		}
	}
	if got := e.cache.Stats().Hits - hits; got != 3 {
		t.Fatalf("%d cache hits of 3 decisions", got)
	}

	// Revoked in the policy: the next decision refuses it.
	e.publish(t, "revoked_sessions: [{id: s_warm}]\n")
	if d := e.decide("/me", tok); d.Status != 401 || d.Reason != authz.ReasonDisabledCredential {
		t.Errorf("revoked with a warm cache: %d %v", d.Status, d.Reason)
	}
	e.publish(t, "")
	if d := e.decide("/me", tok); d.Result != authz.Allow {
		t.Fatalf("revocation lifted: %v", d.Reason)
	}
	e.publish(t, fmt.Sprintf("sessions_not_before: [{tenant: acme, user: alice, before: %s}]\n", time.Now().Add(2*time.Second).UTC().Format(time.RFC3339)))
	if d := e.decide("/me", tok); d.Status != 401 || d.Reason != authz.ReasonDisabledCredential {
		t.Errorf("signed out everywhere with a warm cache: %d %v", d.Status, d.Reason)
	}
	e.publish(t, "")
	if d := e.decide("/me", tok); d.Result != authz.Allow {
		t.Fatalf("sign-out lifted: %v", d.Reason)
	}

	// The IdP rotates and drops the old key. A token of the new key names
	// an unknown kid, which refreshes the set; the old token, warm in the
	// cache, is refused from then on.
	fresh := e.idp.rotate(t)
	newTok := e.idp.token(t, fresh, session.Claims{User: "bob", Tenant: "acme"})
	waitFor(t, "the new key verifies", func() bool { return e.decide("/me", newTok).Result == authz.Allow })
	if d := e.decide("/me", tok); d.Status != 401 || d.Reason != authz.ReasonUnknownCredential {
		t.Errorf("a token of a removed key, cached before: %d %v", d.Status, d.Reason)
	}
}

// TestSignedSessionHitDoesNotAllocate: a warm signed session costs a
// decision what an opaque one does.
func TestSignedSessionHitDoesNotAllocate(t *testing.T) {
	e := newSignedEnv(t, time.Second)
	tok := e.idp.token(t, e.idp.signer(), session.Claims{User: "alice", Tenant: "acme", Org: "acme-eu", Groups: []string{"sales"}})
	waitFor(t, "the IdP's keys are fetched", func() bool { return e.decide("/me", tok).Result == authz.Allow })
	req := authz.Request{Method: "GET", Host: "api.example.com", Path: "/orgs/acme-eu/sales/q1", Headers: authz.MapHeaders{"session": tok}}
	if n := testing.AllocsPerRun(200, func() {
		if d := e.a.Decide(&req); d.Result != authz.Allow {
			t.Fatal(d.Reason)
		}
	}); n != 0 {
		t.Errorf("Decide allocated %v times per request with a warm signed session", n)
	}
}
