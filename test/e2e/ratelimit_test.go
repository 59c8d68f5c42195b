package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/test/internal/harness"
)

// rateLimitPolicy gives each key its own budget of `requests` a minute on
// the endpoint envoytest.CheckRequest asks about (GET /orgs/acme-eu/sales/q1).
func rateLimitPolicy(requests int, keys ...cred) string {
	endpoints := fmt.Sprintf(`rate_limits:
  - {name: standard, requests: %d, per: 1m}
endpoints:
  - name: sales
    match: {path: "/orgs/{org}/sales/**"}
    org: {from: path, name: org}
`, requests)
	text := renderPolicy(endpoints, keys, nil)
	// Each key names the limit: its own budget.
	return regexp.MustCompile(`(?m)^(    user: .*)$`).ReplaceAllString(text, "$1\n    rate_limit: standard")
}

// rlAnswer is a Check's answer as a client of either port sees it.
type rlAnswer struct {
	code    codes.Code // gRPC only
	status  int
	headers map[string]string // of a denial
	reason  string            // gRPC dynamic metadata
	body    map[string]string
}

func grpcRateCheck(t *testing.T, p *proc, key string) rlAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(p.grpcConn()).Check(ctx, envoytest.CheckRequest(key))
	if err != nil {
		t.Fatalf("gRPC Check answered with an error, not a decision: %v", err)
	}
	a := rlAnswer{code: codes.Code(resp.GetStatus().GetCode()), headers: map[string]string{}}
	a.reason = resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue()
	switch r := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		a.status = 200
	case *authv3.CheckResponse_DeniedResponse:
		a.status = int(r.DeniedResponse.GetStatus().GetCode())
		for _, h := range r.DeniedResponse.GetHeaders() {
			a.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		_ = json.Unmarshal([]byte(r.DeniedResponse.GetBody()), &a.body)
	}
	return a
}

func httpRateCheck(t *testing.T, p *proc, key string) rlAnswer {
	t.Helper()
	resp := p.httpCheck(t, "GET", "api.example.com", envoytest.Path, bearer(key))
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	a := rlAnswer{status: resp.StatusCode, headers: map[string]string{}}
	for _, h := range []string{"retry-after", "ratelimit-policy", "ratelimit"} {
		if v := resp.Header.Get(h); v != "" {
			a.headers[h] = v
		}
	}
	_ = json.Unmarshal(body, &a.body)
	return a
}

// TestRateLimitAnswers: a key with 3 requests a minute gets three allows,
// then 429 with retry-after and the IETF headers: PERMISSION_DENIED with
// the 429 in denied_response over gRPC, and 429 over the HTTP port.
func TestRateLimitAnswers(t *testing.T) {
	t.Parallel()
	kGRPC := newKey(t, "acme", "", "grpc-bot", "sales")
	kHTTP := newKey(t, "acme", "", "http-bot", "sales")
	p := startKeygate(t, newPolicyFile(t, rateLimitPolicy(3, kGRPC, kHTTP)))
	for _, tr := range []struct {
		name  string
		key   string
		check func(*testing.T, *proc, string) rlAnswer
	}{{"grpc", kGRPC.Raw, grpcRateCheck}, {"http", kHTTP.Raw, httpRateCheck}} {
		for i := range 3 {
			if a := tr.check(t, p, tr.key); a.status != 200 || tr.name == "grpc" && a.code != codes.OK {
				t.Fatalf("%s: request %d: %v %d, want allowed", tr.name, i+1, a.code, a.status)
			}
		}
		a := tr.check(t, p, tr.key)
		if a.status != http.StatusTooManyRequests || tr.name == "grpc" && (a.code != codes.PermissionDenied || a.reason != "rate_limited") {
			t.Fatalf("%s: 4th request: %v %d reason %q, want 429 (PERMISSION_DENIED over gRPC, reason rate_limited)", tr.name, a.code, a.status, a.reason)
		}
		retry, _ := strconv.Atoi(a.headers["retry-after"])
		if retry < 19 || retry > 20 { // one every 20 s; a second may pass between the requests
			t.Errorf("%s: retry-after %q, want 20", tr.name, a.headers["retry-after"])
		}
		if got := a.headers["ratelimit-policy"]; got != `"standard";q=3;w=60` {
			t.Errorf("%s: ratelimit-policy %q", tr.name, got)
		}
		if got := a.headers["ratelimit"]; !regexp.MustCompile(`^"standard";r=0;t=(59|60)$`).MatchString(got) {
			t.Errorf("%s: ratelimit %q, want \"standard\";r=0;t=60", tr.name, got)
		}
		if a.body["error"] != "rate_limited" || a.body["decision_id"] == "" {
			t.Errorf("%s: body %v", tr.name, a.body)
		}
	}
	// A bad key is refused without spending anyone's budget, and the
	// counts reach /metrics.
	if a := grpcRateCheck(t, p, "kg_nope"); a.status != 401 {
		t.Errorf("unknown key: %d", a.status)
	}
	_, metrics := p.Admin("/metrics")
	for _, want := range []string{`keygate_ratelimit_decisions_total{result="allowed"} 6`, `keygate_ratelimit_decisions_total{result="limited"} 2`, `keygate_decisions_total{endpoint="sales",reason="rate_limited",result="deny"} 2`} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).MatchString(metrics) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestRateLimitSharedRedis: two keygate processes sharing one real
// redis-server let exactly the limit through between them: 50 of 200
// requests spread over both, not 100.
func TestRateLimitSharedRedis(t *testing.T) {
	t.Parallel()
	rs := harness.Redis(t)
	k := newKey(t, "acme", "", "shared-bot", "sales")
	path := newPolicyFile(t, rateLimitPolicy(50, k))
	// Closed and a generous timeout: a slow answer on a busy machine must
	// not be let through uncounted.
	args := []string{"--ratelimit-store", rs.URL(), "--ratelimit-failure", "closed", "--ratelimit-timeout", "2s"}
	replicas := []*proc{startKeygate(t, path, args...), startKeygate(t, path, args...)}
	var mu sync.Mutex
	count := map[int]int{}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				var a rlAnswer
				if (w+i)%2 == 0 {
					a = grpcRateCheck(t, replicas[0], k.Raw)
				} else {
					a = httpRateCheck(t, replicas[1], k.Raw)
				}
				mu.Lock()
				count[a.status]++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if count[200] != 50 || count[429] != 150 {
		t.Errorf("answers %v over two replicas, want exactly 50 allowed and 150 refused with 429", count)
	}
}

// TestRateLimitRedisOutage kills Redis under two keygates: with
// --ratelimit-failure open requests pass and are counted as errors in
// /metrics; with closed they are denied PERMISSION_DENIED 503, reason
// ratelimit_unavailable, never a gRPC error. When Redis returns, counting
// resumes.
func TestRateLimitRedisOutage(t *testing.T) {
	t.Parallel()
	rs := harness.Redis(t)
	k := newKey(t, "acme", "", "outage-bot", "sales")
	path := newPolicyFile(t, rateLimitPolicy(2, k))
	// A killed Redis refuses connections at once: the timeout only bounds a
	// slow answer, and a roomy one keeps a busy CI machine from failing
	// the requests before the outage.
	store := []string{"--ratelimit-store", rs.URL(), "--ratelimit-timeout", "2s"}
	open := startKeygate(t, path, append(store, "--ratelimit-failure", "open")...)
	closed := startKeygate(t, path, append(store, "--ratelimit-failure", "closed")...)
	for i, want := range []int{200, 200, 429} {
		if a := grpcRateCheck(t, open, k.Raw); a.status != want {
			t.Fatalf("before the outage, request %d: %d, want %d", i+1, a.status, want)
		}
	}

	rs.Kill()
	for i := range 3 {
		if a := grpcRateCheck(t, open, k.Raw); a.code != codes.OK || a.status != 200 {
			t.Errorf("open, Redis down, request %d: %v %d, want allowed", i+1, a.code, a.status)
		}
		a := grpcRateCheck(t, closed, k.Raw)
		if a.code != codes.PermissionDenied || a.status != 503 || a.reason != "ratelimit_unavailable" || a.body["error"] != "unavailable" {
			t.Errorf("closed, Redis down, request %d: %v %d reason %q body %v; want PERMISSION_DENIED 503 ratelimit_unavailable", i+1, a.code, a.status, a.reason, a.body)
		}
		if a := httpRateCheck(t, closed, k.Raw); a.status != 503 {
			t.Errorf("closed, Redis down, HTTP request %d: %d, want 503", i+1, a.status)
		}
	}
	for _, p := range []*proc{open, closed} {
		_, metrics := p.Admin("/metrics")
		m := regexp.MustCompile(`(?m)^keygate_ratelimit_errors_total (\d+)$`).FindStringSubmatch(metrics)
		if m == nil || m[1] == "0" {
			t.Errorf("keygate_ratelimit_errors_total %v after the outage, want the failed requests counted", m)
		}
	}

	if err := rs.Restart(); err != nil { // empty: the budget starts afresh
		t.Fatal(err)
	}
	if took, ok := poll(10*time.Second, func() bool { return grpcRateCheck(t, closed, k.Raw).status == 200 }); !ok {
		t.Fatalf("closed: still refused %v after Redis returned", took)
	}
	if a := grpcRateCheck(t, closed, k.Raw); a.status != 200 {
		t.Errorf("after recovery, 2nd request: %d", a.status)
	}
	if a := grpcRateCheck(t, closed, k.Raw); a.status != 429 {
		t.Errorf("after recovery, 3rd request: %d, want 429: counting resumed", a.status)
	}
}
