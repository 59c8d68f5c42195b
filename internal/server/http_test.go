package server

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/source"
)

const testKey = "http-test-key"

func testHTTPAuth(t *testing.T, prefix string, origin Origin) *HTTPAuth {
	t.Helper()
	doc := fmt.Sprintf(`version: 1
tenants: [{id: acme}]
endpoints:
  - {name: public, match: {path: "/public/**"}, anonymous: true}
  - {name: private, match: {methods: [POST], path: "/private"}}
api_keys:
  - {id: k1, hash: %q, tenant: acme, user: bot}
`, policy.FormatDigest(apikey.Digest(testKey)))
	snap, err := policy.Load([]policy.Input{{Name: "p.yaml", Data: []byte(doc)}}, policy.Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	st := source.NewStore()
	st.Publish(snap)
	c, _ := cache.New(10, time.Second)
	return NewHTTPAuth(authz.New(st, c), NewDecisionLog(zap.NewNop(), LogOff), prefix, origin, nil)
}

// TestHTTPOriginalRequest shows which request keygate decides for each proxy
// convention: a POST to /private with a key is allowed, a GET is not (no
// endpoint), and /public/x is anonymous.
func TestHTTPOriginalRequest(t *testing.T) {
	tests := []struct {
		name     string
		origin   Origin
		prefix   string
		method   string
		target   string
		headers  map[string]string
		status   int
		endpoint string
	}{
		{"envoy: request line", OriginAuto, "", "POST", "/private?x=1", nil, 200, "private"},
		{"envoy: path_prefix stripped", OriginEnvoy, "/authz", "POST", "/authz/private", nil, 200, "private"},
		{"envoy: outside path_prefix is denied", OriginEnvoy, "/authz", "POST", "/private", nil, 403, ""},
		{"envoy: prefix must end at a segment", OriginEnvoy, "/authz", "POST", "/authzprivate", nil, 403, ""},
		{"nginx: X-Original-URI and -Method", OriginAuto, "", "GET", "/_auth",
			map[string]string{"X-Original-Uri": "/private", "X-Original-Method": "POST"}, 200, "private"},
		{"nginx: method missing is denied", OriginAuto, "", "GET", "/_auth",
			map[string]string{"X-Original-Uri": "/private"}, 403, ""},
		{"caddy: X-Forwarded-Uri and -Method", OriginAuto, "", "GET", "/authz",
			map[string]string{"X-Forwarded-Uri": "/private", "X-Forwarded-Method": "POST"}, 200, "private"},
		{"auto refuses both conventions at once: one came from the client", OriginAuto, "", "GET", "/x",
			map[string]string{"X-Original-Uri": "/public/a", "X-Original-Method": "GET", "X-Forwarded-Uri": "/private", "X-Forwarded-Method": "POST"}, 403, ""},
		{"pinned to envoy ignores proxy headers", OriginEnvoy, "", "GET", "/private",
			map[string]string{"X-Original-Uri": "/public/a", "X-Original-Method": "GET"}, 403, ""},
		{"pinned to x-forwarded requires them", OriginXForwarded, "", "POST", "/private", nil, 403, ""},
		{"the zero value is envoy: a lone client-sent X-Original-URI does not choose", Origin(0), "", "GET", "/private",
			map[string]string{"X-Original-Uri": "/public/a", "X-Original-Method": "GET"}, 403, ""},
		{"OPTIONS * is decided: no path", OriginEnvoy, "", "OPTIONS", "*", nil, 403, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := testHTTPAuth(t, tt.prefix, tt.origin)
			req := httptest.NewRequest(tt.method, tt.target, nil)
			req.Header.Set("X-Api-Key", testKey)
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.status {
				t.Fatalf("status %d, want %d (body %s)", rec.Code, tt.status, rec.Body)
			}
			if got := rec.Header().Get("X-Keygate-Endpoint"); got != tt.endpoint {
				t.Errorf("endpoint %q, want %q", got, tt.endpoint)
			}
			if rec.Code != http.StatusOK && rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("a denial must be JSON")
			}
		})
	}
}

func TestParseOrigin(t *testing.T) {
	for _, s := range []string{"auto", "envoy", "x-original", "x-forwarded"} {
		if _, err := ParseOrigin(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	if _, err := ParseOrigin("nginx"); err == nil {
		t.Error("an unknown origin must be refused")
	}
}

// TestHTTPHostIsNotClientChosen: behind nginx the host comes from the
// subrequest's Host, which nginx sets; a client's X-Forwarded-Host, which
// nginx passes on untouched, must not choose the endpoint.
func TestHTTPHostIsNotClientChosen(t *testing.T) {
	doc := `version: 1
tenants: [{id: acme}]
endpoints:
  - {name: open-host, match: {host: open.example.test, path: "/**"}, anonymous: true}
  - {name: private, match: {path: "/**"}}
`
	snap, err := policy.Load([]policy.Input{{Name: "p.yaml", Data: []byte(doc)}}, policy.Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	st := source.NewStore()
	st.Publish(snap)
	c, _ := cache.New(10, time.Second)
	for _, origin := range []Origin{OriginAuto, OriginXOriginal} {
		h := NewHTTPAuth(authz.New(st, c), NewDecisionLog(zap.NewNop(), LogOff), "", origin, nil)
		req := httptest.NewRequest("GET", "/_keygate", nil)
		req.Host = "api.example.test"
		req.Header.Set("X-Original-Uri", "/orgs/x")
		req.Header.Set("X-Original-Method", "GET")
		req.Header.Set("X-Forwarded-Host", "open.example.test")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusUnauthorized {
			t.Errorf("origin %d: a client's X-Forwarded-Host chose the endpoint: status %d, endpoint %q",
				origin, rec.Code, rec.Header().Get("X-Keygate-Endpoint"))
		}
	}
}
