package authz_test

import (
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/ratelimit"
)

// BenchmarkDecideRateLimit is BenchmarkDecide's request (10,000 keys, 10
// endpoints, a cache hit) with the local limiter: limits=none is a policy
// without limits (the limiter is never asked), endpoint adds the matched
// endpoint's limit counted by user, and endpoint+own the key's own limit
// as well. The budgets are too large to run out. The cost of counting is
// the difference from limits=none; cpu-ns/op is the process's CPU time per
// decision, which other processes on the machine do not inflate.
func BenchmarkDecideRateLimit(b *testing.B) {
	base := string(genPolicy(10_000, 10, fillDistinct))
	withLimits := func(own bool) string {
		p := strings.Replace(base, `{"version": 1,`, `{"version": 1, "rate_limits": [{"name": "standard", "requests": 1000000000, "per": "24h"}],`, 1)
		p = strings.Replace(p, `"path": "/orgs/{org}/sales/**"}, "groups": ["sales"],`, `"path": "/orgs/{org}/sales/**"}, "rate_limit": {"name": "standard", "by": "user"}, "groups": ["sales"],`, 1)
		if own {
			p = strings.ReplaceAll(p, `"groups": ["sales"]}`, `"groups": ["sales"], "rate_limit": "standard"}`)
		}
		return p
	}
	cases := []struct{ name, policy string }{
		{"limits=none", base},
		{"limits=endpoint", withLimits(false)},
		{"limits=endpoint+own", withLimits(true)},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			snap, err := policy.Load([]policy.Input{{Name: "bench.json", Data: []byte(bc.policy)}}, policy.Options{Generation: 1})
			if err != nil {
				b.Fatal(err)
			}
			c, _ := cache.New(cache.DefaultSize, cache.DefaultNegativeTTL)
			lim, _ := ratelimit.NewLocal(ratelimit.DefaultLocalSize)
			a := authz.New(fixedStore{snap}, c, authz.WithRateLimiter(lim, true))
			req := authz.Request{
				Method: "GET", Host: "api.example.com:443", Path: "/orgs/acme-eu/sales/reports?year=2026",
				Headers: authz.MapHeaders{
					":authority": "api.example.com", "authorization": "Bearer bench-key-00004242",
					"user-agent": "bench", "accept": "*/*", "x-request-id": "r1", "x-forwarded-for": "10.0.0.1",
					"x-keygate-user": "spoof", "content-type": "application/json",
				},
			}
			d := a.Decide(&req)
			if d.Result != authz.Allow || d.Endpoint.Name != "sales" || (bc.name != "limits=none") != (d.RateLimit.Limit != nil) {
				b.Fatalf("want allow by sales, got %v %v, limit %+v", d.Status, d.Reason, d.RateLimit)
			}
			b.ReportAllocs()
			defer reportCPU(b)() // CPU time per op: steadier than ns/op on a shared machine
			for b.Loop() {
				if d := a.Decide(&req); d.Result != authz.Allow {
					b.Fatal("denied")
				}
			}
		})
	}
}
