package authz_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/ratelimit"
)

// rlPolicy has a key with its own budget (3 a minute), endpoints counted by
// key, user, org and tenant, and one in shadow mode. %d is the own limit's
// requests, so a reload can raise it.
const rlPolicy = `version: 1
groups: [{name: sales}, {name: ops}]
tenants:
  - {id: acme, orgs: [acme-eu, acme-us]}
  - {id: globex, orgs: [globex-main]}
rate_limits:
  - {name: standard, requests: %d, per: 1m}
  - {name: search, requests: 2, per: 1s}
  - {name: roomy, requests: 100, per: 1m}
endpoints:
  - {name: plain, match: {path: /plain}}
  - {name: ops-only, match: {path: /ops}, groups: [ops]}
  - {name: search, match: {path: /search}, rate_limit: {name: search, by: user}}
  - {name: by-key, match: {path: /bykey}, rate_limit: {name: search}}
  - {name: orders, match: {path: "/orgs/{org}/orders"}, org: {from: path, name: org}, rate_limit: {name: search, by: org}}
  - {name: tenant, match: {path: /tenant}, rate_limit: {name: search, by: tenant}}
  - {name: same-as-own, match: {path: /same}, rate_limit: {name: standard, by: key}}
  - {name: beta, match: {path: /beta}, mode: shadow, rate_limit: {name: search, by: key}}
  - {name: me, match: {path: /me}, require: [session], rate_limit: {name: search, by: key}}
api_keys:
  - {id: k-limited, hash: "%s", tenant: acme, user: bot, rate_limit: standard}
  - {id: k-alice-1, hash: "%s", tenant: acme, org: acme-eu, user: alice, rate_limit: roomy}
  - {id: k-alice-2, hash: "%s", tenant: acme, org: acme-us, user: alice}
  - {id: k-globex, hash: "%s", tenant: globex, user: alice}
sessions:
  - {id: s-carol, hash: "%s", tenant: acme, user: carol, rate_limit: roomy}
`

const (
	limitedKey = "limited-key"
	alice1Key  = "alice-1-key"
	alice2Key  = "alice-2-key"
	globexKey2 = "globex-alice-key"
	carolSess  = "carol-session"
)

func rlSnapshot(t testing.TB, own int, gen uint64) *policy.Snapshot {
	t.Helper()
	h := func(s string) string { return policy.FormatDigest(apikey.Digest(s)) }
	text := fmt.Sprintf(rlPolicy, own, h(limitedKey), h(alice1Key), h(alice2Key), h(globexKey2), h(carolSess))
	snap, err := policy.Load([]policy.Input{{Name: "rl.yaml", Data: []byte(text)}}, policy.Options{Generation: gen})
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// rlAuthorizer decides with a local limiter on a clock the test moves.
type rlAuthorizer struct {
	*authz.Authorizer
	st    *store
	clock time.Time
}

func newRLAuthorizer(t testing.TB, opts ...authz.Option) *rlAuthorizer {
	t.Helper()
	lim, err := ratelimit.NewLocal(1000)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := cache.New(100, time.Second)
	a := &rlAuthorizer{st: &store{rlSnapshot(t, 3, 1)}, clock: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	opts = append([]authz.Option{authz.WithRateLimiter(lim, true), authz.WithClock(func() time.Time { return a.clock })}, opts...)
	a.Authorizer = authz.New(a.st, c, opts...)
	return a
}

func (a *rlAuthorizer) key(path, key string) authz.Decision {
	return a.Decide(&authz.Request{Method: "GET", Host: "api.example.com", Path: path, Headers: authz.MapHeaders{"authorization": "Bearer " + key}})
}

func headers(d *authz.Decision) map[string]string {
	m := map[string]string{}
	for _, h := range d.RateLimitHeaders(nil) {
		m[h.Name] = h.Value
	}
	return m
}

// TestRateLimitOwnBudget: a key with 3 requests a minute gets three
// answers of 200, then 429 with the headers a client needs, and room again
// once the budget refills.
func TestRateLimitOwnBudget(t *testing.T) {
	a := newRLAuthorizer(t)
	for i := range 3 {
		if d := a.key("/plain", limitedKey); d.Result != authz.Allow || d.RateLimit.Limit == nil || d.RateLimit.Limit.Name != "standard" {
			t.Fatalf("request %d: %v %v, limit %+v", i+1, d.Status, d.Reason, d.RateLimit)
		}
	}
	d := a.key("/plain", limitedKey)
	if d.Result != authz.Deny || d.Status != 429 || d.Reason != authz.ReasonRateLimited {
		t.Fatalf("4th request: %v %d %v, want a 429 rate_limited denial", d.Result, d.Status, d.Reason)
	}
	want := map[string]string{"retry-after": "20", "ratelimit-policy": `"standard";q=3;w=60`, "ratelimit": `"standard";r=0;t=60`}
	if got := headers(&d); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("headers %v, want %v", got, want)
	}
	var body map[string]string
	if err := json.Unmarshal([]byte(d.Body("id-1")), &body); err != nil {
		t.Fatal(err)
	}
	if body["error"] != "rate_limited" || !strings.Contains(body["message"], "retry after 20 seconds") || body["decision_id"] != "id-1" {
		t.Errorf("body %v", body)
	}
	if len(d.IdentityHeaders(nil)) != 0 {
		t.Error("a 429 names the caller upstream")
	}
	a.clock = a.clock.Add(19 * time.Second)
	if d := a.key("/plain", limitedKey); d.Status != 429 || headers(&d)["retry-after"] != "1" {
		t.Errorf("after 19s: %d, headers %v; want 429 with retry-after 1", d.Status, headers(&d))
	}
	a.clock = a.clock.Add(time.Second)
	if d := a.key("/plain", limitedKey); d.Result != authz.Allow {
		t.Errorf("after 20s: %d %v, want allowed", d.Status, d.Reason)
	}
}

// TestRateLimitOnlyAllowedCounted: requests denied for any other reason
// (an unknown key, a group the key lacks) spend no budget, so a flood of
// bad keys cannot use up a real key's.
func TestRateLimitOnlyAllowedCounted(t *testing.T) {
	a := newRLAuthorizer(t)
	for range 50 {
		if d := a.key("/plain", "not-a-key"); d.Status != 401 {
			t.Fatalf("unknown key: %d", d.Status)
		}
		if d := a.key("/ops", limitedKey); d.Status != 403 || d.Reason != authz.ReasonGroupDenied {
			t.Fatalf("ops: %d %v", d.Status, d.Reason)
		}
		if d := a.key("/plain", limitedKey+"x"); d.Status != 401 {
			t.Fatalf("a near miss of the real key: %d", d.Status)
		}
	}
	for i := range 3 {
		if d := a.key("/plain", limitedKey); d.Result != authz.Allow {
			t.Fatalf("request %d after 150 denied ones: %d %v", i+1, d.Status, d.Reason)
		}
	}
}

// TestRateLimitCountedBy: an endpoint's limit counts by key, user, org or
// tenant, and a key's own budget and the endpoint's both apply.
func TestRateLimitCountedBy(t *testing.T) {
	type req struct {
		path, key string
		status    int
	}
	cases := []struct {
		name string
		reqs []req
	}{
		{"by user: alice's two keys share, alice of another tenant does not", []req{
			{"/search", alice1Key, 200}, {"/search", alice2Key, 200}, {"/search", alice1Key, 429}, {"/search", alice2Key, 429},
			{"/search", globexKey2, 200}, {"/search", limitedKey, 200},
		}},
		{"by key: each key its own", []req{
			{"/bykey", alice1Key, 200}, {"/bykey", alice1Key, 200}, {"/bykey", alice1Key, 429}, {"/bykey", alice2Key, 200},
		}},
		{"by org: the organization acted on", []req{
			{"/orgs/acme-eu/orders", alice1Key, 200}, {"/orgs/acme-eu/orders", alice1Key, 200}, {"/orgs/acme-eu/orders", alice1Key, 429},
			{"/orgs/acme-us/orders", alice2Key, 200},
		}},
		{"by tenant", []req{
			{"/tenant", alice1Key, 200}, {"/tenant", alice2Key, 200}, {"/tenant", limitedKey, 429}, {"/tenant", globexKey2, 200},
		}},
		{"the stricter wins: the key's own budget", []req{
			{"/search", limitedKey, 200}, {"/plain", limitedKey, 200}, {"/plain", limitedKey, 200}, {"/search", limitedKey, 429},
		}},
		{"one limit named twice for one key is one budget, spent once a request", []req{
			{"/same", limitedKey, 200}, {"/same", limitedKey, 200}, {"/same", limitedKey, 200}, {"/same", limitedKey, 429},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newRLAuthorizer(t)
			for i, r := range tc.reqs {
				if d := a.key(r.path, r.key); d.Status != r.status {
					t.Errorf("request %d (%s): %d %v, want %d", i+1, r.path, d.Status, d.Reason, r.status)
				}
			}
		})
	}
}

// TestRateLimitRefusedSpendsNothing: a request refused by the endpoint's
// limit does not spend the key's own budget.
func TestRateLimitRefusedSpendsNothing(t *testing.T) {
	a := newRLAuthorizer(t)
	for range 2 {
		a.key("/bykey", limitedKey)
	}
	for range 10 {
		if d := a.key("/bykey", limitedKey); d.Status != 429 || d.RateLimit.Limit.Name != "search" {
			t.Fatalf("%d %+v, want 429 by the search limit", d.Status, d.RateLimit)
		}
	}
	if d := a.key("/plain", limitedKey); d.Result != authz.Allow {
		t.Errorf("the key's own budget was spent by refused requests: %d %v", d.Status, d.Reason)
	}
}

// TestRateLimitSession: a session's own budget and an endpoint counting
// "by key" count the session when no key verified.
func TestRateLimitSession(t *testing.T) {
	a := newRLAuthorizer(t)
	sess := func() authz.Decision {
		return a.Decide(&authz.Request{Method: "GET", Path: "/me", Headers: authz.MapHeaders{"session": carolSess}})
	}
	for i := range 2 {
		if d := sess(); d.Result != authz.Allow {
			t.Fatalf("request %d: %d %v", i+1, d.Status, d.Reason)
		}
	}
	d := sess()
	if d.Status != 429 || d.RateLimit.Limit.Name != "search" {
		t.Fatalf("3rd: %d %+v", d.Status, d.RateLimit)
	}
	var got []string
	a.clock = a.clock.Add(time.Second)
	d = sess()
	for _, l := range d.AppliedRateLimits() {
		got = append(got, fmt.Sprintf("%s %d/%v by %s %s", l.Name, l.Requests, l.Per, l.By, l.Counted))
	}
	if want := "search 2/1s by session s-carol; roomy 100/1m0s by session s-carol"; strings.Join(got, "; ") != want {
		t.Errorf("applied limits %q, want %q", strings.Join(got, "; "), want)
	}
}

// TestRateLimitReload: a snapshot that raises a key's limit takes effect
// on the next request.
func TestRateLimitReload(t *testing.T) {
	a := newRLAuthorizer(t)
	for range 3 {
		a.key("/plain", limitedKey)
	}
	if d := a.key("/plain", limitedKey); d.Status != 429 {
		t.Fatalf("%d, want 429", d.Status)
	}
	a.st.s = rlSnapshot(t, 10, 2)
	for i := range 10 {
		if d := a.key("/plain", limitedKey); d.Result != authz.Allow {
			t.Fatalf("request %d after the limit was raised to 10: %d %v", i+1, d.Status, d.Reason)
		}
	}
	if d := a.key("/plain", limitedKey); d.Status != 429 || headers(&d)["ratelimit-policy"] != `"standard";q=10;w=60` {
		t.Errorf("11th: %d %v", d.Status, headers(&d))
	}
}

// TestRateLimitShadow: on a shadow-mode endpoint a request over the limit
// passes, and the decision says it would have been refused.
func TestRateLimitShadow(t *testing.T) {
	a := newRLAuthorizer(t)
	for range 2 {
		a.key("/beta", alice1Key)
	}
	d := a.key("/beta", alice1Key)
	if d.Result != authz.Allow || !d.Shadowed || d.Reason != authz.ReasonRateLimited || d.Outcome() != "shadow_deny" {
		t.Errorf("%v shadowed=%v %v, want a shadow_deny allow for rate_limited", d.Result, d.Shadowed, d.Reason)
	}
	if len(d.RateLimitHeaders(nil)) != 0 {
		t.Error("an allowed request carries 429 headers")
	}
}

// TestRateLimitStoreFailure: a store that cannot answer (a Redis client
// whose server refuses connections) allows with --ratelimit-failure open
// and denies 503 ratelimit_unavailable with closed; nothing else changes.
func TestRateLimitStoreFailure(t *testing.T) {
	for _, open := range []bool{true, false} {
		t.Run(fmt.Sprint("open=", open), func(t *testing.T) {
			down, err := ratelimit.NewRedis("redis://127.0.0.1:1/0", 50*time.Millisecond) // port 1: nothing listens
			if err != nil {
				t.Fatal(err)
			}
			defer down.Close()
			a := newRLAuthorizer(t, authz.WithRateLimiter(down, open))
			d := a.key("/plain", limitedKey)
			if !d.RateLimit.StoreFailed {
				t.Error("StoreFailed not set")
			}
			switch {
			case open && d.Result != authz.Allow:
				t.Errorf("open: %d %v, want allowed", d.Status, d.Reason)
			case !open && (d.Status != 503 || d.Reason != authz.ReasonRateLimitUnavailable || d.Result != authz.Deny):
				t.Errorf("closed: %d %v, want 503 ratelimit_unavailable", d.Status, d.Reason)
			}
			if !open && !strings.Contains(d.Body("x"), `"error":"unavailable"`) {
				t.Errorf("closed: body %s", d.Body("x"))
			}
			// Without a limit nothing is counted, so nothing fails.
			if d := a.key("/plain", alice2Key); d.Result != authz.Allow || d.RateLimit.StoreFailed {
				t.Errorf("a key without limits: %d %v %+v", d.Status, d.Reason, d.RateLimit)
			}
			if st := down.Stats(); st.Errors != 1 {
				t.Errorf("errors counted %d, want 1", st.Errors)
			}
		})
	}
}

// TestRateLimitNoLimiter: without a limiter nothing is counted, and the
// decision still names the limit (for Envoy's rate limit service).
func TestRateLimitNoLimiter(t *testing.T) {
	c, _ := cache.New(100, time.Second)
	a := authz.New(&store{rlSnapshot(t, 3, 1)}, c)
	for i := range 10 {
		d := a.Decide(&authz.Request{Method: "GET", Path: "/search", Headers: authz.MapHeaders{"authorization": "Bearer " + limitedKey}})
		if d.Result != authz.Allow || d.RateLimit.Limit == nil || d.RateLimit.Limit.Name != "search" || d.RateLimit.Counted != "bot" || d.Tenant != "acme" {
			t.Fatalf("request %d: %d %v %+v, want the search limit counted by user acme/bot", i+1, d.Status, d.Reason, d.RateLimit)
		}
	}
}
