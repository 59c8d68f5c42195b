package server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/internal/metrics"
	"github.com/keygate/keygate/internal/source"
)

// answerHeaders are the headers of an answer a proxy reads: all but those
// each server adds on its own (Date, Content-Length).
func answerHeaders(h http.Header) map[string]string {
	m := map[string]string{}
	for k, v := range h {
		if k != "Date" && k != "Content-Length" {
			m[k] = strings.Join(v, " | ")
		}
	}
	return m
}

// TestHTTPAnswers: each answer of the table in DESIGN.md "Answers", over
// each HTTP server, with exactly the headers and body a proxy reads, and
// the same answer from both.
func TestHTTPAnswers(t *testing.T) {
	const realm = `Bearer realm="keygate"`
	tests := []struct {
		name    string
		method  string
		target  string
		headers [][2]string
		status  int
		want    map[string]string // every header but Date and Content-Length
		body    string            // a denial's JSON error, or the whole body
	}{
		{"allowed: identity set, the credential and a forged identity header removed", "POST", "/private",
			[][2]string{{"Authorization", "Bearer " + testKey}, {"X-Keygate-Org", "forged"}, {"X-Request-Id", "rq-1"}}, 200,
			map[string]string{"X-Keygate-User": "bot", "X-Keygate-Tenant": "acme", "X-Keygate-Key-Id": "k1",
				"X-Keygate-Auth": "api_key", "X-Keygate-Endpoint": "private",
				"X-Envoy-Auth-Headers-To-Remove": "authorization,x-keygate-org"}, ""},
		{"allowed anonymously: a key there is ignored and stripped", "GET", "/public/a",
			[][2]string{{"X-Api-Key", "not-a-key"}}, 200,
			map[string]string{"X-Keygate-Auth": "anonymous", "X-Keygate-Endpoint": "public",
				"X-Envoy-Auth-Headers-To-Remove": "x-api-key"}, ""},
		{"no credential: 401 with the challenge", "POST", "/private",
			[][2]string{{"X-Request-Id", "rq-2"}}, 401,
			map[string]string{"Content-Type": "application/json", "Www-Authenticate": realm}, "unauthorized"},
		{"unknown key: 401 invalid_token", "POST", "/private",
			[][2]string{{"X-Api-Key", "unknown"}, {"X-Request-Id", "rq-3"}}, 401,
			map[string]string{"Content-Type": "application/json", "Www-Authenticate": realm + `, error="invalid_token"`}, "unauthorized"},
		{"the key sent twice reads as one value, joined, and fails", "POST", "/private",
			[][2]string{{"X-Api-Key", testKey}, {"x-api-key", testKey}, {"X-Request-Id", "rq-4"}}, 401,
			map[string]string{"Content-Type": "application/json", "Www-Authenticate": realm + `, error="invalid_token"`}, "unauthorized"},
		{"no endpoint: 403", "GET", "/private",
			[][2]string{{"X-Api-Key", testKey}, {"X-Request-Id", "rq-5"}}, 403,
			map[string]string{"Content-Type": "application/json"}, "forbidden"},
		{"a request the server cannot parse is decided: 403", "GET", "/private\x01",
			[][2]string{{"X-Api-Key", testKey}}, 403,
			map[string]string{"Content-Type": "application/json"}, "forbidden"},
	}
	got := map[string][]string{}
	for _, tr := range httpTransports {
		t.Run(tr.name, func(t *testing.T) {
			addr := tr.serve(t, testHTTPAuth(t, "", OriginEnvoy))
			for _, tt := range tests {
				resp, body := roundTrip(t, addr, rawRequest(tt.method, tt.target, "api.example.test", tt.headers...))
				if tt.target == "/private\x01" && tr.name == "net" {
					// net/http answers it itself, with 400: a denial too.
					if resp.StatusCode != http.StatusBadRequest {
						t.Errorf("%s: %d, want net/http's 400", tt.name, resp.StatusCode)
					}
					continue
				}
				h := answerHeaders(resp.Header)
				if resp.StatusCode != tt.status || fmt.Sprint(h) != fmt.Sprint(tt.want) {
					t.Errorf("%s:\n got %d %v\nwant %d %v", tt.name, resp.StatusCode, h, tt.status, tt.want)
				}
				if tt.status == 200 && body != "" {
					t.Errorf("%s: an allow with a body %q", tt.name, body)
				}
				if tt.status != 200 && !strings.Contains(body, fmt.Sprintf(`"error":%q`, tt.body)) {
					t.Errorf("%s: body %s, want error %q", tt.name, body, tt.body)
				}
				got[tt.name] = append(got[tt.name], fmt.Sprint(resp.StatusCode, h, body))
			}
		})
	}
	for name, answers := range got {
		if len(answers) == 2 && answers[0] != answers[1] {
			t.Errorf("%s: the servers answer differently:\n net      %s\n fasthttp %s", name, answers[0], answers[1])
		}
	}
}

// TestHTTPRateLimitedAndUnavailable: over its limit a key gets 429 with
// retry-after, ratelimit-policy and ratelimit; before the first policy
// every request gets 503. On each HTTP server.
func TestHTTPRateLimitedAndUnavailable(t *testing.T) {
	for _, tr := range httpTransports {
		t.Run(tr.name, func(t *testing.T) {
			addr := tr.serve(t, NewHTTPAuth(rlAuthorizer(t, nil, true), NewDecisionLog(zap.NewNop(), LogOff), "", OriginEnvoy, nil))
			req := rawRequest("GET", envoytest.Path, "api.example.test", [2]string{"Authorization", "Bearer " + rlKey})
			var statuses []int
			var resp *http.Response
			var body string
			for range 3 {
				resp, body = roundTrip(t, addr, req)
				statuses = append(statuses, resp.StatusCode)
			}
			want := map[string]string{"Content-Type": "application/json", "Retry-After": "30",
				"Ratelimit-Policy": `"standard";q=2;w=60`, "Ratelimit": `"standard";r=0;t=60`}
			if fmt.Sprint(statuses) != "[200 200 429]" || fmt.Sprint(answerHeaders(resp.Header)) != fmt.Sprint(want) {
				t.Errorf("statuses %v, last headers %v; want [200 200 429] and %v", statuses, answerHeaders(resp.Header), want)
			}
			if !strings.Contains(body, `"error":"rate_limited"`) {
				t.Errorf("429 body %s", body)
			}

			c, _ := cache.New(10, time.Second)
			empty := NewHTTPAuth(authz.New(source.NewStore(), c), NewDecisionLog(zap.NewNop(), LogOff), "", OriginEnvoy, nil)
			resp, body = roundTrip(t, tr.serve(t, empty), req)
			want = map[string]string{"Content-Type": "text/plain; charset=utf-8", "X-Content-Type-Options": "nosniff"}
			if resp.StatusCode != http.StatusServiceUnavailable || body != noPolicyBody || fmt.Sprint(answerHeaders(resp.Header)) != fmt.Sprint(want) {
				t.Errorf("no policy: %d %v %q, want 503 %v %q", resp.StatusCode, answerHeaders(resp.Header), body, want, noPolicyBody)
			}
		})
	}
}

// TestHTTPDecisionLogAndMetrics: each server's decisions reach the decision
// log (with the client's address, never the query) and keygate's real
// metrics under transport http, a request fasthttp cannot parse included.
func TestHTTPDecisionLogAndMetrics(t *testing.T) {
	for _, tr := range httpTransports {
		t.Run(tr.name, func(t *testing.T) {
			core, logs := observer.New(zapcore.InfoLevel)
			reg := prometheus.NewRegistry()
			st := source.NewStore()
			c, _ := cache.New(10, time.Second)
			m, err := metrics.New(reg, metrics.Config{Store: st, Cache: c, Source: "file"})
			if err != nil {
				t.Fatal(err)
			}
			base := testHTTPAuth(t, "", OriginEnvoy)
			h := NewHTTPAuth(base.authz, NewDecisionLog(zap.New(core), LogAll), "", OriginEnvoy, m)
			addr := tr.serve(t, h)
			roundTrip(t, addr, rawRequest("POST", "/private?token=secret", "api.example.test", [2]string{"X-Api-Key", testKey}, [2]string{"X-Request-Id", "rq-allow"}))
			roundTrip(t, addr, rawRequest("GET", "/nowhere", "api.example.test", [2]string{"X-Request-Id", "rq-deny"}))
			want := []string{"rq-allow POST /private allow 127.0.0.1", "rq-deny GET /nowhere deny 127.0.0.1"}
			if tr.name == "fasthttp" {
				roundTrip(t, addr, rawRequest("GET", "*", "api.example.test"))
				want = append(want, " malformed_request deny 127.0.0.1")
			}
			// A connection that ends halfway through its headers carries
			// no request to decide.
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprint(conn, "GET /private HTTP/1.1\r\nHost: api.example.test\r\nX-Api-Ke")
			_ = conn.(*net.TCPConn).CloseWrite()
			_, _ = io.Copy(io.Discard, conn) // until the server closes it
			conn.Close()
			var lines []string
			for _, e := range logs.All() {
				f := e.ContextMap()
				if f["transport"] != "http" {
					t.Errorf("transport %v", f["transport"])
				}
				line := fmt.Sprintf("%s %s %s %s %s", f["decision_id"], f["method"], f["path"], f["result"], f["source"])
				if f["reason"] == "malformed_request" {
					line = fmt.Sprintf(" %s %s %s", f["reason"], f["result"], f["source"])
				}
				lines = append(lines, line)
			}
			if fmt.Sprint(lines) != fmt.Sprint(want) {
				t.Errorf("decision log:\n got %q\nwant %q", lines, want)
			}
			if n := httpChecksObserved(t, reg); n != uint64(len(want)) {
				t.Errorf("keygate_check_duration_seconds{transport=http} counted %d, want %d", n, len(want))
			}
		})
	}
}

func httpChecksObserved(t *testing.T, reg *prometheus.Registry) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "keygate_check_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelIs(m, "transport", "http") {
				return m.GetHistogram().GetSampleCount()
			}
		}
	}
	return 0
}

func labelIs(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue() == value
		}
	}
	return false
}
