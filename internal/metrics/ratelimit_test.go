package metrics_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/metrics"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/source"
)

// TestRateLimitMetrics: the limiter's counts reach /metrics, with names a
// Prometheus linter accepts.
func TestRateLimitMetrics(t *testing.T) {
	doc := fmt.Sprintf(`version: 1
tenants: [{id: acme}]
rate_limits: [{name: standard, requests: 2, per: 1m}]
endpoints: [{name: whoami, match: {path: /whoami}}]
api_keys: [{id: k1, hash: %q, tenant: acme, user: u, rate_limit: standard}]
`, policy.FormatDigest(apikey.Digest("key-1")))
	snap, err := policy.Load([]policy.Input{{Name: "p.yaml", Data: []byte(doc)}}, policy.Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	st := source.NewStore()
	st.Publish(snap)
	c, _ := cache.New(100, time.Minute)
	lim, _ := ratelimit.NewLocal(100)
	reg := prometheus.NewRegistry()
	if _, err := metrics.New(reg, metrics.Config{Store: st, Cache: c, Source: "file", RateLimiter: lim}); err != nil {
		t.Fatal(err)
	}
	a := authz.New(st, c, authz.WithRateLimiter(lim, true))
	for range 5 {
		a.Decide(&authz.Request{Method: "GET", Path: "/whoami", Headers: authz.MapHeaders{"authorization": "Bearer key-1"}})
	}
	want := `
# HELP keygate_ratelimit_decisions_total Requests counted against rate limits, by result: allowed, limited (answered 429), error (the store could not answer; --ratelimit-failure decided).
# TYPE keygate_ratelimit_decisions_total counter
keygate_ratelimit_decisions_total{result="allowed"} 2
keygate_ratelimit_decisions_total{result="error"} 0
keygate_ratelimit_decisions_total{result="limited"} 3
# HELP keygate_ratelimit_errors_total Requests the rate-limit store could not count (Redis unreachable or slower than --ratelimit-timeout).
# TYPE keygate_ratelimit_errors_total counter
keygate_ratelimit_errors_total 0
# HELP keygate_ratelimit_buckets Rate-limit budgets held in memory by the local store.
# TYPE keygate_ratelimit_buckets gauge
keygate_ratelimit_buckets 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "keygate_ratelimit_decisions_total", "keygate_ratelimit_errors_total", "keygate_ratelimit_buckets"); err != nil {
		t.Error(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "keygate_ratelimit") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}
