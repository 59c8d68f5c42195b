package authz_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
)

// genPolicy writes a policy with endpoints endpoints and n keys; key i is
// fmt.Sprintf("bench-key-%08d", i). The request matches the last endpoint,
// the worst case of first-match order. It returns the YAML text.
func genPolicy(n, endpoints int) string {
	var b strings.Builder
	b.WriteString("version: 1\ngroups: [{name: sales}, {name: ops}]\ntenants: [{id: acme, orgs: [acme-eu, acme-us]}]\nendpoints:\n")
	for i := 0; i < endpoints-1; i++ {
		fmt.Fprintf(&b, "  - {name: e%d, match: {methods: [GET], path: \"/svc%d/{org}/items/**\"}, groups: [ops], org: {from: path, name: org}}\n", i, i)
	}
	b.WriteString("  - {name: sales, match: {methods: [GET, POST], path: \"/orgs/{org}/sales/**\"}, groups: [sales], org: {from: path, name: org}}\n")
	b.WriteString("api_keys:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - {id: k%d, hash: %q, tenant: acme, user: u%d, groups: [sales]}\n", i, policy.FormatDigest(apikey.Digest(fmt.Sprintf("bench-key-%08d", i))), i)
	}
	return b.String()
}

type fixedStore struct{ s *policy.Snapshot }

func (f fixedStore) Current() *policy.Snapshot { return f.s }

// BenchmarkDecide is an API-key request on a cache hit that matches the last
// endpoint: keys=N with 10 endpoints, and endpoints=M with 10,000 keys.
func BenchmarkDecide(b *testing.B) {
	cases := []struct {
		name            string
		keys, endpoints int
	}{
		{"keys=10000", 10_000, 10},
		{"keys=100000", 100_000, 10},
		{"keys=10000/endpoints=100", 10_000, 100},
		{"keys=10000/endpoints=1000", 10_000, 1000},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			snap, err := policy.Load([]policy.Input{{Name: "bench.yaml", Data: []byte(genPolicy(bc.keys, bc.endpoints))}}, policy.Options{Generation: 1})
			if err != nil {
				b.Fatal(err)
			}
			c, _ := cache.New(cache.DefaultSize, cache.DefaultNegativeTTL)
			a := authz.New(fixedStore{snap}, c)
			req := authz.Request{
				Method: "GET", Host: "api.example.com:443", Path: "/orgs/acme-eu/sales/reports?year=2026",
				Headers: authz.MapHeaders{
					":authority": "api.example.com", "authorization": "Bearer bench-key-00004242",
					"user-agent": "bench", "accept": "*/*", "x-request-id": "r1", "x-forwarded-for": "10.0.0.1",
					"x-keygate-user": "spoof", "content-type": "application/json",
				},
			}
			if d := a.Decide(&req); d.Result != authz.Allow {
				b.Fatalf("want allow, got %v %v", d.Status, d.Reason)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				d := a.Decide(&req)
				if d.Result != authz.Allow {
					b.Fatal("denied")
				}
			}
		})
	}
}
