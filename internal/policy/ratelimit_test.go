package policy

import (
	"fmt"
	"strings"
	"testing"
	"time"
	"unsafe"
)

// The rate-limit fixtures join TestBadConfigs' table (bad_test.go), which
// TestBadConfigsListed keeps in step with testdata/bad.
func init() {
	badConfigs = append(badConfigs, []struct {
		file string
		line int
		path string
		msg  string
	}{
		{"ratelimit_key_unknown.bad.yaml", 12, "api_keys[0].rate_limit", `rate limit "premium" is not declared under rate_limits`},
		{"ratelimit_session_unknown.bad.json", 11, "sessions[0].rate_limit", `rate limit "gold" is not declared under rate_limits`},
		{"ratelimit_endpoint_unknown.bad.yaml", 8, "endpoints[0].rate_limit.name", `rate limit "search" is not declared under rate_limits`},
		{"ratelimit_by_bad.bad.yaml", 10, "endpoints[0].rate_limit.by", `rate_limit.by must be key, user, org or tenant, not "ip"`},
		{"ratelimit_anonymous.bad.yaml", 9, "endpoints[0].rate_limit", "an anonymous endpoint cannot have a rate limit"},
		{"ratelimit_per_short.bad.yaml", 6, "rate_limits[0].per", "per must be between 1s and 24h, not 500ms"},
		{"ratelimit_per_long.bad.yaml", 6, "rate_limits[0].per", "per must be between 1s and 24h, not 168h0m0s"},
		{"ratelimit_per_fraction.bad.yaml", 6, "rate_limits[0].per", "per must be a whole number of seconds"},
		{"ratelimit_per_missing.bad.yaml", 4, "rate_limits[0].per", "per is required"},
		{"ratelimit_per_bad.bad.yaml", 6, "", `"a minute" is not a duration such as 30s, 15m, 24h or 7d`},
		{"ratelimit_requests_zero.bad.yaml", 5, "rate_limits[0].requests", "requests must be between 1 and 1000000000, not 0"},
		{"ratelimit_rate_too_high.bad.yaml", 5, "rate_limits[0].requests", "2000000 requests per 1s is more than 1000000 a second"},
		{"ratelimit_dup.bad.yaml", 5, "rate_limits[1]", `duplicate rate limit "standard" (first defined at testdata/bad/ratelimit_dup.bad.yaml:4)`},
	}...)
}

const rateLimitPolicy = `version: 1
groups: [{name: sales}]
tenants: [{id: acme, orgs: [acme-eu]}]
rate_limits:
  - {name: standard, requests: 100, per: 1m}
  - {name: search, requests: 10, per: 1s}
  - {name: daily, requests: 5000, per: 24h}
endpoints:
  - name: search
    match: {path: /search}
    rate_limit: {name: search, by: user}
  - name: orders
    match: {path: "/orgs/{org}/orders"}
    org: {from: path, name: org}
    rate_limit: {name: daily, by: org}
  - name: plain
    match: {path: /plain}
  - name: bykey
    match: {path: /bykey}
    rate_limit: {name: search}
api_keys:
  - id: k_limited
    hash: "sha256:1111111111111111111111111111111111111111111111111111111111111111"
    tenant: acme
    user: bot
    rate_limit: standard
  - id: k_free
    hash: "sha256:2222222222222222222222222222222222222222222222222222222222222222"
    tenant: acme
    user: bot2
sessions:
  - id: s_limited
    hash: "sha256:3333333333333333333333333333333333333333333333333333333333333333"
    tenant: acme
    user: alice
    rate_limit: search
`

func TestRateLimitsCompile(t *testing.T) {
	snap, err := Load([]Input{{Name: "p.yaml", Data: []byte(rateLimitPolicy)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, l := range snap.RateLimits() {
		names = append(names, fmt.Sprintf("%s=%d/%s %s", l.Name, l.Requests, l.Per, l.PolicyHeader))
	}
	want := `standard=100/1m0s "standard";q=100;w=60 search=10/1s "search";q=10;w=1 daily=5000/24h0m0s "daily";q=5000;w=86400`
	if got := strings.Join(names, " "); got != want {
		t.Errorf("limits:\n got  %s\n want %s", got, want)
	}
	endpoints := []struct {
		name, limit string
		by          RateLimitBy
	}{
		{"search", "search", ByUser},
		{"orders", "daily", ByOrg},
		{"plain", "", 0},
		{"bykey", "search", ByKey}, // by defaults to key
	}
	for _, tc := range endpoints {
		e := snap.Endpoint(tc.name)
		got := ""
		if e.RateLimit != nil {
			got = e.RateLimit.Name
		}
		if got != tc.limit || e.RateLimitBy != tc.by {
			t.Errorf("endpoint %s: limit %q by %v, want %q by %v", tc.name, got, e.RateLimitBy, tc.limit, tc.by)
		}
	}
	creds := []struct {
		kind  Kind
		hash  string
		limit string
	}{
		{KindAPIKey, "1111111111111111111111111111111111111111111111111111111111111111", "standard"},
		{KindAPIKey, "2222222222222222222222222222222222222222222222222222222222222222", ""},
		{KindSession, "3333333333333333333333333333333333333333333333333333333333333333", "search"},
	}
	for _, tc := range creds {
		d, _ := ParseDigest("sha256:" + tc.hash)
		p := snap.Lookup(tc.kind, d)
		got := ""
		if l := snap.RateLimitOf(p); l != nil {
			got = l.Name
		}
		if got != tc.limit {
			t.Errorf("%s %s: own limit %q, want %q", tc.kind, p.ID, got, tc.limit)
		}
	}
	if snap.RateLimit("daily").Per != 24*time.Hour || snap.RateLimit("none") != nil {
		t.Error("RateLimit by name")
	}
}

// TestRateLimitsJSONCredentials: a key's rate_limit reads the same from a
// large JSON policy, whose credentials are decoded one by one while
// compiling, as from YAML.
func TestRateLimitsJSONCredentials(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"version": 1, "tenants": [{"id": "acme"}], "rate_limits": [{"name": "standard", "requests": 3, "per": "1m"}], "api_keys": [`)
	for i := range 100 {
		if i > 0 {
			b.WriteString(",")
		}
		limit := ""
		if i%2 == 0 {
			limit = `, "rate_limit": "standard"`
		}
		fmt.Fprintf(&b, `{"id": "k%d", "hash": "sha256:%064x", "tenant": "acme", "user": "u"%s}`, i, i+1, limit)
	}
	b.WriteString("]}")
	snap, err := Load([]Input{{Name: "keys.json", Data: []byte(b.String())}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	limited := 0
	for _, p := range snap.APIKeys() {
		if l := snap.RateLimitOf(p); l != nil && l.Name == "standard" {
			limited++
		}
	}
	if limited != 50 {
		t.Errorf("%d keys have the standard limit, want 50", limited)
	}
}

// A policy may hold a million principals: naming a limit costs none of
// them a byte (the index sits in the struct's padding).
func TestPrincipalSizeWithRateLimit(t *testing.T) {
	if size := unsafe.Sizeof(Principal{}); size > 128 {
		t.Errorf("Principal is %d bytes; the rate limit index must fit in its padding (128)", size)
	}
}
