package authz_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
)

const storePolicy = `version: 1
groups: [{name: sales}, {name: support}]
tenants:
  - {id: acme, orgs: [acme-eu, acme-us]}
endpoints:
  - {name: health, match: {path: /healthz}, anonymous: true}
  - {name: sales, match: {path: "/orgs/{org}/sales/**"}, require: [session], groups: [sales], org: {from: path, name: org}}
  - {name: reports, match: {path: /reports}, require: [api_key]}
api_keys:
  - {id: kg_bot00001, hash: "%s", tenant: acme, user: bot, groups: [sales]}
sessions:
  - {id: kg_listed01, hash: "%s", tenant: acme, org: acme-eu, user: olivia, groups: [sales]}
%s`

// fakeSessionStore stands in for the Redis session store, whose own tests
// run against a real redis-server (internal/store/redissessions, and
// test/api end to end): here the decisions around it are the subject, and
// the fake sets an outage or an odd answer at will.
type fakeSessionStore struct {
	mu       sync.Mutex
	sessions map[policy.Digest]policy.SignedClaims
	down     bool
	cacheFor time.Duration
	lookups  int
}

func (f *fakeSessionStore) Lookup(_ context.Context, d policy.Digest) (*policy.SignedClaims, time.Duration, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	if f.down {
		return nil, 0, errors.New("redis at 127.0.0.1:6379: connection refused")
	}
	c, ok := f.sessions[d]
	if !ok {
		return nil, f.cacheFor, nil
	}
	return &c, f.cacheFor, nil
}

func (f *fakeSessionStore) add(t testing.TB, c policy.SignedClaims) string {
	t.Helper()
	tok, err := apikey.New(c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c.ExpiresAt.IsZero() {
		c.ExpiresAt = time.Now().Add(time.Hour)
	}
	f.sessions[apikey.Digest(tok)] = c
	return tok
}

// storeKey and storeOlivia are the policy's API key and listed kg_
// session, the same in every environment.
var storeKey, storeOlivia = mustKey("kg_bot00001"), mustKey("kg_listed01")

func mustKey(id string) string {
	k, err := apikey.New(id)
	if err != nil {
		panic(err)
	}
	return k
}

type storeEnv struct {
	a     *authz.Authorizer
	f     *fakeSessionStore
	key   string
	olivi string // the kg_ session the policy lists
}

func newStoreEnv(t testing.TB, extra string) *storeEnv {
	t.Helper()
	e := &storeEnv{f: &fakeSessionStore{sessions: map[policy.Digest]policy.SignedClaims{}, cacheFor: 5 * time.Second}}
	e.key, e.olivi = storeKey, storeOlivia
	snap, err := policy.Load([]policy.Input{{Name: "p.yaml", Data: []byte(fmt.Sprintf(storePolicy,
		policy.FormatDigest(apikey.Digest(e.key)), policy.FormatDigest(apikey.Digest(e.olivi)), extra))}}, policy.Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(1000, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	e.a = authz.New(&store{snap}, c, authz.WithSessionStore(e.f))
	return e
}

// TestStoredSessionDecided: a session only the store knows is decided
// like a listed one; while the store cannot answer it is denied 503 with
// PERMISSION_DENIED's reason session_store_unavailable, never allowed,
// and nothing else changes.
func TestStoredSessionDecided(t *testing.T) {
	e := newStoreEnv(t, "revoked_sessions: [{id: kg_revoked1}]\n")
	alice := e.f.add(t, policy.SignedClaims{ID: "kg_alice001", User: "alice", Tenant: "acme", Org: "acme-eu", Groups: []string{"sales", "undeclared"}})
	wide := e.f.add(t, policy.SignedClaims{ID: "kg_wide0001", User: "wendy", Tenant: "acme", Groups: []string{"sales"}})
	other := e.f.add(t, policy.SignedClaims{ID: "kg_other001", User: "mallory", Tenant: "acme", Groups: []string{"sales"}})
	e.f.sessions[apikey.Digest(other)] = policy.SignedClaims{ID: "kg_someone1", User: "mallory", Tenant: "acme", Groups: []string{"sales"}, ExpiresAt: time.Now().Add(time.Hour)}
	revoked := e.f.add(t, policy.SignedClaims{ID: "kg_revoked1", User: "rita", Tenant: "acme", Groups: []string{"sales"}})
	expired := e.f.add(t, policy.SignedClaims{ID: "kg_expired1", User: "ed", Tenant: "acme", Groups: []string{"sales"}, ExpiresAt: time.Now().Add(-time.Second)})
	gone := e.f.add(t, policy.SignedClaims{ID: "kg_tenant01", User: "tom", Tenant: "initech", Groups: []string{"sales"}})
	unknown, _ := apikey.New("kg_unknown1")

	type want struct {
		status  int
		reason  authz.Reason
		user    string
		org     string
		groups  string
		body    string // the body's error, for a denial
		lookups int    // store lookups the request makes (0: answered without the store)
	}
	for _, tc := range []struct {
		name    string
		down    bool
		path    string
		headers map[string]string
		want    want
	}{
		{"a stored session", false, "/orgs/acme-eu/sales/q1", map[string]string{"session": alice},
			want{200, authz.ReasonAllowed, "alice", "acme-eu", "sales", "", 1}},
		{"its org only", false, "/orgs/acme-us/sales/q1", map[string]string{"session": alice},
			want{403, authz.ReasonOrgDenied, "", "", "", "forbidden", 1}},
		{"a tenant-wide one reaches every org of the tenant", false, "/orgs/acme-us/sales/q1", map[string]string{"session": wide},
			want{200, authz.ReasonAllowed, "wendy", "acme-us", "sales", "", 1}},
		{"unknown to the store", false, "/orgs/acme-eu/sales/q1", map[string]string{"session": unknown},
			want{401, authz.ReasonUnknownCredential, "", "", "", "unauthorized", 1}},
		{"the store names another id than the token", false, "/orgs/acme-eu/sales/q1", map[string]string{"session": other},
			want{401, authz.ReasonUnknownCredential, "", "", "", "unauthorized", 1}},
		{"listed in revoked_sessions", false, "/orgs/acme-eu/sales/q1", map[string]string{"session": revoked},
			want{401, authz.ReasonDisabledCredential, "", "", "", "unauthorized", 1}},
		{"expired", false, "/orgs/acme-eu/sales/q1", map[string]string{"session": expired},
			want{401, authz.ReasonExpiredCredential, "", "", "", "unauthorized", 1}},
		{"a tenant the policy no longer declares", false, "/orgs/acme-eu/sales/q1", map[string]string{"session": gone},
			want{401, authz.ReasonUnknownCredential, "", "", "", "unauthorized", 1}},
		{"the policy answers first", false, "/orgs/acme-eu/sales/q1", map[string]string{"session": e.olivi},
			want{200, authz.ReasonAllowed, "olivia", "acme-eu", "sales", "", 0}},
		{"a value not in keygate's format is never looked up", false, "/orgs/acme-eu/sales/q1", map[string]string{"session": "some-opaque-value"},
			want{401, authz.ReasonUnknownCredential, "", "", "", "unauthorized", 0}},
		{"a kg_ value with a bad checksum is never looked up", false, "/orgs/acme-eu/sales/q1", map[string]string{"session": corruptLast(alice)},
			want{401, authz.ReasonMalformedCredential, "", "", "", "unauthorized", 0}},

		{"store down: 503, never allowed", true, "/orgs/acme-eu/sales/q1", map[string]string{"session": alice},
			want{503, authz.ReasonSessionStoreUnavailable, "", "", "", "unavailable", 1}},
		{"store down: with a valid key too", true, "/orgs/acme-eu/sales/q1", map[string]string{"session": alice, "authorization": "Bearer " + e.key},
			want{503, authz.ReasonSessionStoreUnavailable, "", "", "", "unavailable", 1}},
		{"store down: an API key alone is decided as ever", true, "/reports", map[string]string{"authorization": "Bearer " + e.key},
			want{200, authz.ReasonAllowed, "bot", "", "sales", "", 0}},
		{"store down: a listed session is decided as ever", true, "/orgs/acme-eu/sales/q1", map[string]string{"session": e.olivi},
			want{200, authz.ReasonAllowed, "olivia", "acme-eu", "sales", "", 0}},
		{"store down: an anonymous endpoint ignores the session", true, "/healthz", map[string]string{"session": alice},
			want{200, authz.ReasonAnonymous, "", "", "", "", 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newStoreEnv(t, "revoked_sessions: [{id: kg_revoked1}]\n") // a cold cache per case
			env.f.sessions = e.f.sessions
			env.f.down = tc.down
			d, _ := decide(env.a, tc.path, tc.headers)
			got := want{status: d.Status, reason: d.Reason, user: d.User(), org: d.Org, groups: d.Groups(), lookups: env.f.lookups}
			if d.Result == authz.Deny {
				var b struct{ Error string }
				if err := json.Unmarshal([]byte(d.Body("id")), &b); err != nil {
					t.Fatal(err)
				}
				got.body = b.Error
				got.user, got.org, got.groups = "", "", ""
			}
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if d.Status == 503 && (d.Result != authz.Deny || d.Challenge() != "") {
				t.Errorf("a 503 must be a denial (PERMISSION_DENIED) without a challenge: %v %q", d.Result, d.Challenge())
			}
		})
	}
}

// TestStoredSessionCached: a store resolution is asked once and then
// answered from the cache for as long as the store allows; an answer the
// store says not to cache (it hears no invalidations) is asked every time,
// and a failure is never cached.
func TestStoredSessionCached(t *testing.T) {
	for _, tc := range []struct {
		name     string
		cacheFor time.Duration
		down     bool
		lookups  int
	}{
		{"cached while invalidations are heard", 5 * time.Second, false, 1},
		{"not cached while they are not", 0, false, 5},
		{"a failure is asked again", 5 * time.Second, true, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newStoreEnv(t, "")
			e.f.cacheFor, e.f.down = tc.cacheFor, tc.down
			tok := e.f.add(t, policy.SignedClaims{ID: "kg_alice001", User: "alice", Tenant: "acme", Org: "acme-eu", Groups: []string{"sales"}})
			for range 5 {
				decide(e.a, "/orgs/acme-eu/sales/q1", map[string]string{"session": tok})
			}
			if e.f.lookups != tc.lookups {
				t.Errorf("%d store lookups for 5 requests, want %d", e.f.lookups, tc.lookups)
			}
		})
	}
}

// TestAuthenticateStoreDown: the management API's callers are
// authenticated the same way: a stored session while the store is down is
// a 503 denial with the generic unavailable body.
func TestAuthenticateStoreDown(t *testing.T) {
	e := newStoreEnv(t, "")
	tok := e.f.add(t, policy.SignedClaims{ID: "kg_alice001", User: "alice", Tenant: "acme", Groups: []string{"sales"}})
	e.f.down = true
	d := e.a.Authenticate(authz.MapHeaders{"session": tok})
	if d.Result != authz.Deny || d.Status != 503 || d.Reason != authz.ReasonSessionStoreUnavailable {
		t.Fatalf("Authenticate with the store down: %v %d %v", d.Result, d.Status, d.Reason)
	}
	var b struct{ Error, Message string }
	if err := json.Unmarshal([]byte(d.Body("id")), &b); err != nil || b.Error != "unavailable" {
		t.Errorf("body %s", d.Body("id"))
	}
	e.f.down = false
	if d := e.a.Authenticate(authz.MapHeaders{"session": tok}); d.Result != authz.Allow || d.User() != "alice" {
		t.Errorf("once the store answers: %v %v", d.Result, d.Reason)
	}
}

// BenchmarkDecideStoredSession is a request with a stored session whose
// resolution is cached: what every request but the first in 5 s costs.
// The miss, one round trip to a real Redis, is
// internal/store/redissessions' BenchmarkCheckStoreMiss.
func BenchmarkDecideStoredSession(b *testing.B) {
	e := newStoreEnv(b, "")
	tok := e.f.add(b, policy.SignedClaims{ID: "kg_alice001", User: "alice", Tenant: "acme", Org: "acme-eu", Groups: []string{"sales"}})
	req := authz.Request{Method: "GET", Host: "api.example.com:443", Path: "/orgs/acme-eu/sales/reports?year=2026",
		Headers: authz.MapHeaders{":authority": "api.example.com", "session": tok, "user-agent": "bench", "accept": "*/*", "x-request-id": "r1"}}
	if d := e.a.Decide(&req); d.Result != authz.Allow {
		b.Fatalf("denied: %v", d.Reason)
	}
	b.ReportAllocs()
	for b.Loop() {
		if d := e.a.Decide(&req); d.Result != authz.Allow {
			b.Fatal("denied")
		}
	}
	if e.f.lookups != 1 {
		b.Fatalf("%d lookups: the benchmark must hit the cache", e.f.lookups)
	}
}
