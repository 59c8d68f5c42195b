package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/source"
)

const rlKey = "rate-limited-key"

// rlAuthorizer decides envoytest.CheckRequest's request (GET
// /orgs/acme-eu/sales/q1) for a key with its own budget of 2 a minute.
func rlAuthorizer(t *testing.T, lim *ratelimit.Limiter, failOpen bool) *authz.Authorizer {
	t.Helper()
	doc := fmt.Sprintf(`version: 1
tenants: [{id: acme, orgs: [acme-eu]}]
rate_limits: [{name: standard, requests: 2, per: 1m}]
endpoints:
  - {name: sales, match: {path: "/orgs/{org}/sales/**"}, org: {from: path, name: org}}
api_keys:
  - {id: k1, hash: %q, tenant: acme, user: bot, rate_limit: standard}
`, policy.FormatDigest(apikey.Digest(rlKey)))
	snap, err := policy.Load([]policy.Input{{Name: "p.yaml", Data: []byte(doc)}}, policy.Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	st := source.NewStore()
	st.Publish(snap)
	c, _ := cache.New(10, time.Second)
	if lim == nil {
		if lim, err = ratelimit.NewLocal(100); err != nil {
			t.Fatal(err)
		}
	}
	return authz.New(st, c, authz.WithRateLimiter(lim, failOpen))
}

// grpcAnswer is what Envoy would read from a CheckResponse.
type grpcAnswer struct {
	code     codes.Code
	status   int // 200 for an OkResponse
	headers  map[string]string
	body     map[string]string
	metadata map[string]string
}

func readGRPCAnswer(t *testing.T, resp *authv3.CheckResponse) grpcAnswer {
	t.Helper()
	a := grpcAnswer{code: codes.Code(resp.GetStatus().GetCode()), headers: map[string]string{}, metadata: map[string]string{}}
	for k, v := range resp.GetDynamicMetadata().GetFields() {
		a.metadata[k] = fmt.Sprint(v.AsInterface())
	}
	switch r := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		a.status = 200
	case *authv3.CheckResponse_DeniedResponse:
		a.status = int(r.DeniedResponse.GetStatus().GetCode())
		for _, h := range r.DeniedResponse.GetHeaders() {
			a.headers[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if err := json.Unmarshal([]byte(r.DeniedResponse.GetBody()), &a.body); err != nil {
			t.Fatalf("denial body %q: %v", r.DeniedResponse.GetBody(), err)
		}
	}
	return a
}

// TestRateLimitGRPC: over its limit a key gets PERMISSION_DENIED with 429,
// retry-after and the IETF headers in denied_response, over a real gRPC
// client; the dynamic metadata names the limit on every answer.
func TestRateLimitGRPC(t *testing.T) {
	client := serveGRPC(t, NewAuthServer(rlAuthorizer(t, nil, true), NewDecisionLog(zap.NewNop(), LogOff), nil))
	var got []grpcAnswer
	for range 3 {
		resp, err := client.Check(context.Background(), envoytest.CheckRequest(rlKey))
		if err != nil {
			t.Fatalf("Check: %v", err)
		}
		got = append(got, readGRPCAnswer(t, resp))
	}
	for i, a := range got[:2] {
		if a.code != codes.OK || a.status != 200 || a.metadata["rate_limit"] != "standard" || a.metadata["rate_limit_id"] != "k1" || a.metadata["tenant"] != "acme" {
			t.Errorf("request %d: %v %d, metadata %v; want OK naming the limit", i+1, a.code, a.status, a.metadata)
		}
	}
	a := got[2]
	if a.code != codes.PermissionDenied || a.status != 429 {
		t.Fatalf("3rd request: %v %d, want PERMISSION_DENIED with 429", a.code, a.status)
	}
	want := map[string]string{
		"content-type": "application/json", "retry-after": "30",
		"ratelimit-policy": `"standard";q=2;w=60`, "ratelimit": `"standard";r=0;t=60`,
	}
	if fmt.Sprint(a.headers) != fmt.Sprint(want) {
		t.Errorf("headers %v, want %v", a.headers, want)
	}
	if a.body["error"] != "rate_limited" || a.body["decision_id"] == "" {
		t.Errorf("body %v", a.body)
	}
	if a.metadata["rate_limit"] != "standard" || a.metadata["rate_limit_id"] != "k1" || a.metadata["reason"] != "rate_limited" || a.metadata["user"] != "" {
		t.Errorf("metadata %v: want rate_limit and reason, and no identity on a denial", a.metadata)
	}
}

// TestRateLimitHTTP: the HTTP adapter answers 429 with the same headers
// and body.
func TestRateLimitHTTP(t *testing.T) {
	h := NewHTTPAuth(rlAuthorizer(t, nil, true), NewDecisionLog(zap.NewNop(), LogOff), "", OriginEnvoy, nil)
	var resp *http.Response
	for range 3 {
		req := httptest.NewRequest("GET", envoytest.Path, nil)
		req.Header.Set("Authorization", "Bearer "+rlKey)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		resp = w.Result()
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("3rd request: %d %s, want 429", resp.StatusCode, body)
	}
	for name, want := range map[string]string{
		"Retry-After": "30", "Ratelimit-Policy": `"standard";q=2;w=60`, "Ratelimit": `"standard";r=0;t=60`, "Content-Type": "application/json",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	if !strings.Contains(string(body), `"error":"rate_limited"`) {
		t.Errorf("body %s", body)
	}
}

// TestRateLimitStoreDown: with --ratelimit-failure closed, a store that
// cannot answer denies with PERMISSION_DENIED and 503 (never a code that
// Envoy's failure_mode_allow would let through), reason
// ratelimit_unavailable; with open, the request passes.
func TestRateLimitStoreDown(t *testing.T) {
	for _, open := range []bool{false, true} {
		t.Run(fmt.Sprint("open=", open), func(t *testing.T) {
			down, err := ratelimit.NewRedis("redis://127.0.0.1:1/0", 50*time.Millisecond) // nothing listens on port 1
			if err != nil {
				t.Fatal(err)
			}
			defer down.Close()
			client := serveGRPC(t, NewAuthServer(rlAuthorizer(t, down, open), NewDecisionLog(zap.NewNop(), LogOff), nil))
			resp, err := client.Check(context.Background(), envoytest.CheckRequest(rlKey))
			if err != nil {
				t.Fatalf("Check answered with a gRPC error: %v", err)
			}
			a := readGRPCAnswer(t, resp)
			switch {
			case open && (a.code != codes.OK || a.status != 200):
				t.Errorf("open: %v %d, want OK", a.code, a.status)
			case !open && (a.code != codes.PermissionDenied || a.status != 503 || a.metadata["reason"] != "ratelimit_unavailable" || a.body["error"] != "unavailable"):
				t.Errorf("closed: %v %d, metadata %v, body %v; want PERMISSION_DENIED 503 ratelimit_unavailable", a.code, a.status, a.metadata, a.body)
			}
			if len(a.headers) > 0 && a.headers["retry-after"] != "" {
				t.Errorf("headers %v: retry-after without a count", a.headers)
			}
		})
	}
}
