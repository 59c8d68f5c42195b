package proxy

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/keygate/keygate/test/internal/harness"
)

// TestProxiesRateLimit: a client over its rate limit gets keygate's 429
// through each proxy, with retry-after and the rate-limit headers, and a
// 503 from a rate-limit store that is down with --ratelimit-failure closed
// stays a 503. nginx's auth_request would make both a 500: the tested
// nginx.conf maps them back (docs/proxies.md); Caddy's forward_auth passes
// keygate's answer on as it is.
func TestProxiesRateLimit(t *testing.T) {
	f := newFixture(t)
	be := startBackend(t)
	type proxy struct {
		name   string
		origin string
		start  func(t *testing.T, keygateHTTP string) string // the proxy's address
	}
	var proxies []proxy
	if _, err := lookupProxy("nginx"); err != nil {
		harness.Missing(t, err.Error())
	} else {
		proxies = append(proxies, proxy{"nginx", "x-original", func(t *testing.T, kg string) string { return startNginx(t, kg, be.addr()) }})
	}
	if caddy, err := lookupProxy("caddy"); err != nil {
		harness.Missing(t, err.Error())
	} else {
		proxies = append(proxies, proxy{"caddy", "x-forwarded", func(t *testing.T, kg string) string {
			return startCaddy(t, "caddy-"+t.Name(), caddy, kg, be.addr(), nil)
		}})
	}
	for _, p := range proxies {
		t.Run(p.name, func(t *testing.T) {
			kg := startKeygate(t, f, "keygate-"+p.name, "--http-original-request", p.origin)
			send := httpTarget("http://" + p.start(t, kg.HTTPAddr))
			key := http.Header{"Authorization": {"Bearer " + f.orgKey.secret}}
			first, err := send(clientRequest{method: "GET", path: "/limited/a", header: key})
			if err != nil {
				t.Fatal(err)
			}
			if first.status != http.StatusOK {
				t.Fatalf("first request: %d %s, want 200", first.status, bytesTrim(first.body))
			}
			over, err := send(clientRequest{method: "GET", path: "/limited/b", header: key})
			if err != nil {
				t.Fatal(err)
			}
			checkProxied(t, over, http.StatusTooManyRequests, "rate_limited", map[string]string{
				"Retry-After": "3600", "Ratelimit-Policy": `"one-an-hour";q=1;w=3600`, "Ratelimit": `"one-an-hour";r=0;t=3600`,
			})
			// Another key has its own budget.
			other, err := send(clientRequest{method: "GET", path: "/limited/c", header: http.Header{"Authorization": {"Bearer " + f.tenantKey.secret}}})
			if err != nil {
				t.Fatal(err)
			}
			if other.status != http.StatusOK {
				t.Errorf("another key: %d %s, want 200", other.status, bytesTrim(other.body))
			}
		})
		t.Run(p.name+"/store_down_closed", func(t *testing.T) {
			// Nothing listens on port 1: the Redis store cannot answer.
			kg := startKeygate(t, f, "keygate-down-"+p.name, "--http-original-request", p.origin,
				"--ratelimit-store", "redis://127.0.0.1:1/0", "--ratelimit-failure", "closed")
			send := httpTarget("http://" + p.start(t, kg.HTTPAddr))
			out, err := send(clientRequest{method: "GET", path: "/limited/a", header: http.Header{"Authorization": {"Bearer " + f.orgKey.secret}}})
			if err != nil {
				t.Fatal(err)
			}
			checkProxied(t, out, http.StatusServiceUnavailable, "unavailable", map[string]string{"Retry-After": ""})
			// A request no limit applies to is not affected.
			ok, err := send(clientRequest{method: "GET", path: "/public/hello"})
			if err != nil {
				t.Fatal(err)
			}
			if ok.status != http.StatusOK {
				t.Errorf("anonymous endpoint with the store down: %d, want 200", ok.status)
			}
		})
	}
}

// checkProxied checks a denial as the proxy's client sees it: status, JSON
// body error, and headers ("" means absent).
func checkProxied(t *testing.T, out outcome, status int, errorCode string, headers map[string]string) {
	t.Helper()
	describe := fmt.Sprintf("got %d %v %s", out.status, out.header, bytesTrim(out.body))
	if out.status != status {
		t.Fatalf("want %d; %s", status, describe)
	}
	for name, want := range headers {
		if got := out.header.Values(name); want == "" && len(got) > 0 || want != "" && (len(got) != 1 || got[0] != want) {
			t.Errorf("%s: %q, want %q; %s", name, got, want, describe)
		}
	}
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(out.body, &body); err != nil || body.Error != errorCode {
		t.Errorf("want a JSON body with error %q (err %v); %s", errorCode, err, describe)
	}
}
