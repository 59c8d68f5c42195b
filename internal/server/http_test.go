package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
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
// convention, on each HTTP server: a POST to /private with a key is
// allowed, a GET is not (no endpoint), and /public/x is anonymous.
func TestHTTPOriginalRequest(t *testing.T) {
	tests := []struct {
		name     string
		origin   Origin
		prefix   string
		method   string
		target   string
		headers  [][2]string
		status   int
		endpoint string
	}{
		{"envoy: request line", OriginAuto, "", "POST", "/private?x=1", nil, 200, "private"},
		{"envoy: path_prefix stripped", OriginEnvoy, "/authz", "POST", "/authz/private", nil, 200, "private"},
		{"envoy: outside path_prefix is denied", OriginEnvoy, "/authz", "POST", "/private", nil, 403, ""},
		{"envoy: prefix must end at a segment", OriginEnvoy, "/authz", "POST", "/authzprivate", nil, 403, ""},
		{"envoy: the target as sent, normalized by keygate", OriginEnvoy, "", "POST", "/public/../private", nil, 200, "private"},
		{"envoy: an encoded slash is denied, never decoded", OriginEnvoy, "", "GET", "/public%2F..%2Fprivate", nil, 403, ""},
		{"nginx: X-Original-URI and -Method", OriginAuto, "", "GET", "/_auth",
			[][2]string{{"X-Original-Uri", "/private"}, {"X-Original-Method", "POST"}}, 200, "private"},
		{"nginx: names in any case", OriginXOriginal, "", "GET", "/_auth",
			[][2]string{{"x-original-uri", "/private"}, {"X-ORIGINAL-METHOD", "POST"}}, 200, "private"},
		{"nginx: method missing is denied", OriginAuto, "", "GET", "/_auth",
			[][2]string{{"X-Original-Uri", "/private"}}, 403, ""},
		{"nginx: a repeated X-Original-URI reads as both, joined", OriginXOriginal, "", "GET", "/_auth",
			[][2]string{{"X-Original-Uri", "/private"}, {"X-Original-Uri", "/public/a"}, {"X-Original-Method", "POST"}}, 403, ""},
		{"caddy: X-Forwarded-Uri and -Method", OriginAuto, "", "GET", "/authz",
			[][2]string{{"X-Forwarded-Uri", "/private"}, {"X-Forwarded-Method", "POST"}}, 200, "private"},
		{"auto refuses both conventions at once: one came from the client", OriginAuto, "", "GET", "/x",
			[][2]string{{"X-Original-Uri", "/public/a"}, {"X-Original-Method", "GET"}, {"X-Forwarded-Uri", "/private"}, {"X-Forwarded-Method", "POST"}}, 403, ""},
		{"pinned to envoy ignores proxy headers", OriginEnvoy, "", "GET", "/private",
			[][2]string{{"X-Original-Uri", "/public/a"}, {"X-Original-Method", "GET"}}, 403, ""},
		{"pinned to x-forwarded requires them", OriginXForwarded, "", "POST", "/private", nil, 403, ""},
		{"the zero value is envoy: a lone client-sent X-Original-URI does not choose", Origin(0), "", "GET", "/private",
			[][2]string{{"X-Original-Uri", "/public/a"}, {"X-Original-Method", "GET"}}, 403, ""},
		{"OPTIONS * is decided: no path", OriginEnvoy, "", "OPTIONS", "*", nil, 403, ""},
		{"GET * is decided: no path", OriginEnvoy, "", "GET", "*", nil, 403, ""},
	}
	for _, tr := range httpTransports {
		t.Run(tr.name, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					addr := tr.serve(t, testHTTPAuth(t, tt.prefix, tt.origin))
					headers := append([][2]string{{"X-Api-Key", testKey}}, tt.headers...)
					resp, body := roundTrip(t, addr, rawRequest(tt.method, tt.target, "api.example.test", headers...))
					if resp.StatusCode != tt.status {
						t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, tt.status, body)
					}
					if got := resp.Header.Get("X-Keygate-Endpoint"); got != tt.endpoint {
						t.Errorf("endpoint %q, want %q", got, tt.endpoint)
					}
					if resp.StatusCode != http.StatusOK && resp.Header.Get("Content-Type") != "application/json" {
						t.Errorf("a denial must be JSON")
					}
				})
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
	for _, tr := range httpTransports {
		for _, origin := range []Origin{OriginAuto, OriginXOriginal} {
			h := NewHTTPAuth(authz.New(st, c), NewDecisionLog(zap.NewNop(), LogOff), "", origin, nil)
			resp, _ := roundTrip(t, tr.serve(t, h), rawRequest("GET", "/_keygate", "api.example.test",
				[2]string{"X-Original-Uri", "/orgs/x"}, [2]string{"X-Original-Method", "GET"}, [2]string{"X-Forwarded-Host", "open.example.test"}))
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("%s, origin %d: a client's X-Forwarded-Host chose the endpoint: status %d, endpoint %q",
					tr.name, origin, resp.StatusCode, resp.Header.Get("X-Keygate-Endpoint"))
			}
		}
	}
}

// httpTransports are the servers the HTTP adapter runs on (--http-server):
// every adapter test runs on each, over a loopback socket.
var httpTransports = []struct {
	name  string
	serve func(t *testing.T, h *HTTPAuth) (addr string)
}{
	{"net", serveNetHTTP},
	{"fasthttp", serveFastHTTP},
}

// serveNetHTTP serves h on net/http as serve's listenHTTP does
// (--http-server net).
func serveNetHTTP(t *testing.T, h *HTTPAuth) string {
	t.Helper()
	lis := listenLoopback(t)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute,
		MaxHeaderBytes: 96 << 10, DisableGeneralOptionsHandler: true}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Close() })
	return lis.Addr().String()
}

// serveFastHTTP serves h on the server --http-server fasthttp runs.
func serveFastHTTP(t *testing.T, h *HTTPAuth) string {
	t.Helper()
	lis := listenLoopback(t)
	srv := NewFastHTTPServer(h, FastHTTPConfig{IdleTimeout: time.Minute, Log: zap.NewNop()})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return lis.Addr().String()
}

func listenLoopback(t *testing.T) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return lis
}

// rawRequest is a request as a proxy writes it: the request line as given
// (no client library would send "*" or "/a/../b" as they are), Host, then
// the headers in order, repeated ones included.
func rawRequest(method, target, host string, headers ...[2]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, target, host)
	for _, kv := range headers {
		fmt.Fprintf(&b, "%s: %s\r\n", kv[0], kv[1])
	}
	b.WriteString("\r\n")
	return b.String()
}

// roundTrip sends raw on a new connection to addr and reads the answer.
func roundTrip(t *testing.T, addr, raw string) (*http.Response, string) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read the answer: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the answer's body: %v", err)
	}
	return resp, string(body)
}
