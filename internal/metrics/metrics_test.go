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
	"github.com/keygate/keygate/internal/source"
)

func setup(t *testing.T) (*prometheus.Registry, *metrics.Metrics, *authz.Authorizer, *source.Store) {
	t.Helper()
	soon := time.Now().Add(48 * time.Hour).UTC().Format(time.RFC3339)
	later := time.Now().Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	doc := fmt.Sprintf(`version: 1
groups: [{name: g}]
tenants: [{id: acme}]
endpoints:
  - {name: whoami, match: {path: /whoami}}
  - {name: beta, match: {path: /beta}, groups: [g], mode: shadow}
api_keys:
  - {id: k1, hash: %q, tenant: acme, user: u, expires_at: %s}
  - {id: k2, hash: %q, tenant: acme, user: u, expires_at: %s}
  - {id: k3, hash: %q, tenant: acme, user: u, expires_at: %s, disabled: true}
`, policy.FormatDigest(apikey.Digest("key-1")), soon, policy.FormatDigest(apikey.Digest("key-2")), later,
		policy.FormatDigest(apikey.Digest("key-3")), soon)
	snap, err := policy.Load([]policy.Input{{Name: "p.yaml", Data: []byte(doc)}}, policy.Options{Generation: 7})
	if err != nil {
		t.Fatal(err)
	}
	st := source.NewStore()
	st.Publish(snap)
	c, _ := cache.New(100, time.Minute)
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.Config{Store: st, Cache: c, Source: "file"})
	if err != nil {
		t.Fatal(err)
	}
	return reg, m, authz.New(st, c), st
}

func TestMetricNamesFollowPrometheusConventions(t *testing.T) {
	reg, _, _, _ := setup(t)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "keygate_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
}

func TestMetricsAfterDecisions(t *testing.T) {
	reg, m, a, st := setup(t)
	for _, h := range []map[string]string{
		{"x-api-key": "key-1"}, {"x-api-key": "key-1"}, {}, {"x-api-key": "nope"},
	} {
		req := authz.Request{Method: "GET", Host: "h", Path: "/whoami", Headers: authz.MapHeaders(h)}
		d := a.Decide(&req)
		m.ObserveDecision("grpc", &d, time.Millisecond)
	}
	req := authz.Request{Method: "GET", Host: "h", Path: "/beta", Headers: authz.MapHeaders{"x-api-key": "key-2"}}
	d := a.Decide(&req)
	m.ObserveDecision("http", &d, time.Millisecond)
	st.Refuse(fmt.Errorf("p.yaml:3: broken"))

	want := `
# HELP keygate_decisions_total Authorization decisions by result (allow, deny, shadow_deny, unavailable), reason and policy endpoint.
# TYPE keygate_decisions_total counter
keygate_decisions_total{endpoint="beta",reason="group_denied",result="shadow_deny"} 1
keygate_decisions_total{endpoint="whoami",reason="allowed",result="allow"} 2
keygate_decisions_total{endpoint="whoami",reason="missing_credential",result="deny"} 1
keygate_decisions_total{endpoint="whoami",reason="unknown_credential",result="deny"} 1
# HELP keygate_cache_requests_total Credential resolutions by cache result (hit, miss, negative_hit).
# TYPE keygate_cache_requests_total counter
keygate_cache_requests_total{result="hit"} 1
keygate_cache_requests_total{result="miss"} 3
keygate_cache_requests_total{result="negative_hit"} 0
# HELP keygate_policy_generation Generation of the policy snapshot in force; 0 before the first load.
# TYPE keygate_policy_generation gauge
keygate_policy_generation 7
# HELP keygate_policy_reloads_total Policy loads by source and result (success, failure); a failure keeps the last good policy.
# TYPE keygate_policy_reloads_total counter
keygate_policy_reloads_total{result="failure",source="file"} 1
keygate_policy_reloads_total{result="success",source="file"} 1
# HELP keygate_policy_last_reload_successful 1 if the last policy load attempt succeeded, 0 if it was refused.
# TYPE keygate_policy_last_reload_successful gauge
keygate_policy_last_reload_successful 0
# HELP keygate_policy_objects Objects in the policy in force, by kind.
# TYPE keygate_policy_objects gauge
keygate_policy_objects{kind="api_keys"} 3
keygate_policy_objects{kind="endpoints"} 2
keygate_policy_objects{kind="groups"} 1
keygate_policy_objects{kind="sessions"} 0
# HELP keygate_api_keys_expiring Active API keys that expire within the window.
# TYPE keygate_api_keys_expiring gauge
keygate_api_keys_expiring{within="7d"} 1
`
	names := []string{"keygate_decisions_total", "keygate_cache_requests_total", "keygate_policy_generation",
		"keygate_policy_reloads_total", "keygate_policy_last_reload_successful", "keygate_policy_objects", "keygate_api_keys_expiring"}
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(reg, "keygate_check_duration_seconds"); n != 2 {
		t.Errorf("want a histogram per transport, got %d series", n)
	}
}

// TestNoCredentialInLabels: label values come from closed sets and policy
// names, so no request can create a series or leak a key into one.
func TestNoCredentialInLabels(t *testing.T) {
	reg, m, a, _ := setup(t)
	for i := 0; i < 50; i++ {
		req := authz.Request{Method: "GET", Host: "h", Path: fmt.Sprintf("/random/%d", i),
			Headers: authz.MapHeaders{"x-api-key": fmt.Sprintf("secret-%d", i)}}
		d := a.Decide(&req)
		m.ObserveDecision("grpc", &d, time.Microsecond)
	}
	if n := testutil.CollectAndCount(reg, "keygate_decisions_total"); n != 1 {
		t.Errorf("50 different requests made %d series, want 1", n)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if strings.Contains(mf.String(), "secret-") {
			t.Fatalf("%s carries a credential", mf.GetName())
		}
	}
}
