package proxy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/test/internal/harness"
)

// realm is the policy's WWW-Authenticate realm.
const realm = "keygate-proxy-test"

// credential is one API key or session token of the test policy.
type credential struct {
	id, secret string
}

// fixture holds the credentials the policy lists.
type fixture struct {
	orgKey     credential // acme-eu only, group sales, user eu-bot
	tenantKey  credential // every org of acme, group sales, user acme-bot
	session    credential // user alice, group sales
	unknownKey credential // well-formed, not in the policy
}

// newCredential makes a key in keygate's format, registered as a secret
// keygate must never print.
func newCredential(t *testing.T) credential {
	t.Helper()
	id, secret := harness.NewAPIKey(t)
	return credential{id: id, secret: secret}
}

func newFixture(t *testing.T) *fixture {
	return &fixture{
		orgKey:     newCredential(t),
		tenantKey:  newCredential(t),
		session:    newCredential(t),
		unknownKey: newCredential(t),
	}
}

func digest(c credential) string { return policy.FormatDigest(apikey.Digest(c.secret)) }

// policyYAML is the policy every target is checked against.
func (f *fixture) policyYAML() string {
	return fmt.Sprintf(`version: 1
settings:
  realm: %s
  api_key_headers: [authorization, x-api-key]
  session_header: session
  identity_header_prefix: x-keygate-
  strip_credentials: true
  default: deny
groups:
  - name: sales
tenants:
  - id: acme
    orgs: [acme-eu, acme-us]
endpoints:
  # Anonymous for one host only: a client must not reach it by sending
  # X-Forwarded-Host.
  - name: open-host
    match: {host: open.example.test, path: "/orgs/**"}
    anonymous: true
  - name: public
    match: {path: "/public/**"}
    anonymous: true
  - name: org-items
    match: {path: "/orgs/{org}/items/**"}
    require: [api_key]
    groups: [sales]
    org: {from: path, name: org}
  # One request an hour per key (ratelimit_test.go).
  - name: limited
    match: {path: "/limited/**"}
    require: [api_key]
    rate_limit: {name: one-an-hour, by: key}
rate_limits:
  - {name: one-an-hour, requests: 1, per: 1h}
api_keys:
  - id: %s
    name: acme-eu sales integration
    hash: "%s"
    tenant: acme
    org: acme-eu
    user: eu-bot
    groups: [sales]
  - id: %s
    name: acme tenant-wide integration
    hash: "%s"
    tenant: acme
    user: acme-bot
    groups: [sales]
sessions:
  - id: %s
    hash: "%s"
    user: alice
    tenant: acme
    groups: [sales]
`, realm, f.orgKey.id, digest(f.orgKey), f.tenantKey.id, digest(f.tenantKey), f.session.id, digest(f.session))
}

// startKeygate writes the policy to a temp dir and serves it on free loopback
// ports, logging every decision (the log goes to the test log on failure).
// extra are further serve flags. When the test ends keygate is stopped and
// must exit 0.
func startKeygate(t *testing.T, f *fixture, name string, extra ...string) *harness.Keygate {
	t.Helper()
	pol := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(pol, []byte(f.policyYAML()), 0o600); err != nil {
		t.Fatal(err)
	}
	return harness.Serve(t, harness.Options{
		Name:        name,
		HTTP:        true,
		StopTimeout: 5 * time.Second,
		Args: append([]string{"--policy", pol, "--log-format", "console",
			"--decision-log", "all", "--drain-timeout", "1s"}, extra...),
	})
}

// echo is what the backend saw of one request.
type echo struct {
	Method  string              `json:"method"`
	URI     string              `json:"uri"`
	Host    string              `json:"host"`
	Headers map[string][]string `json:"headers"` // lower-case names
	Body    string              `json:"body"`
}

// value is the header's value at the backend, and whether it arrived at all.
func (e *echo) value(name string) (string, bool) {
	v, ok := e.Headers[strings.ToLower(name)]
	return strings.Join(v, ","), ok
}

// backend answers 200 with a JSON echo of the request and remembers every
// request by its X-Test-Id, so a test can tell whether a request got through.
type backend struct {
	srv  *httptest.Server
	mu   sync.Mutex
	seen map[string]*echo
}

// testIDHeader tags each scenario's request, end to end.
const testIDHeader = "X-Test-Id"

func startBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{seen: map[string]*echo{}}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		e := &echo{Method: r.Method, URI: r.RequestURI, Host: r.Host, Headers: map[string][]string{}, Body: string(body)}
		for k, v := range r.Header {
			e.Headers[strings.ToLower(k)] = v
		}
		b.mu.Lock()
		if id := r.Header.Get(testIDHeader); id != "" {
			b.seen[id] = e
		}
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(e)
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// addr is host:port of the backend.
func (b *backend) addr() string { return strings.TrimPrefix(b.srv.URL, "http://") }

// got returns what the backend saw of the request tagged id, or nil.
func (b *backend) got(id string) *echo {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[id]
}
