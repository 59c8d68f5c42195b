// Package e2e tests keygate end to end: the binary built from ./cmd/keygate
// runs as a real process, and the tests talk to its gRPC, HTTP and admin
// listeners over loopback sockets, as Envoy and Kubernetes would.
//
// test/internal/harness builds and runs keygate; after every test has run,
// it scans everything any keygate process printed for every raw API key and
// session token the suite made (harness.RegisterSecret): a raw credential
// must never appear in keygate's output. KEYGATE_TEST_RACE=1 builds keygate
// with the race detector.
package e2e

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/test/internal/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// ---------------------------------------------------------------------------
// Credentials and policies.

// cred is an API key or session as the policy lists it, with its raw value.
type cred struct {
	ID, Raw   string
	Tenant    string
	Org       string
	User      string
	Groups    []string
	ExpiresAt string
	Disabled  bool
}

// newKey makes a keygate-format key (kg_<id>_<secret><checksum>),
// registered as a secret.
func newKey(t testing.TB, tenant, org, user string, groups ...string) cred {
	t.Helper()
	id, raw := harness.NewAPIKey(t)
	return cred{ID: id, Raw: raw, Tenant: tenant, Org: org, User: user, Groups: groups}
}

// newForeignKey makes a credential that is not in keygate's format (a key
// made elsewhere and imported by digest), listed under id.
func newForeignKey(t testing.TB, id, tenant, org, user string, groups ...string) cred {
	t.Helper()
	raw := randomToken(t, "ext")
	harness.RegisterSecret(raw, "credential "+id)
	return cred{ID: id, Raw: raw, Tenant: tenant, Org: org, User: user, Groups: groups}
}

// randomToken returns a fresh random string that is not keygate's format.
func randomToken(t testing.TB, prefix string) string {
	t.Helper()
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return prefix + "-" + hex.EncodeToString(b[:])
}

// unlistedSecret registers and returns a raw value that no policy lists.
func unlistedSecret(raw, what string) string {
	harness.RegisterSecret(raw, what)
	return raw
}

func (c cred) digest() string { return policy.FormatDigest(apikey.Digest(c.Raw)) }

func (c cred) yaml(b *strings.Builder) {
	fmt.Fprintf(b, "  - id: %s\n", c.ID)
	fmt.Fprintf(b, "    hash: %q\n", c.digest())
	fmt.Fprintf(b, "    tenant: %s\n", c.Tenant)
	if c.Org != "" {
		fmt.Fprintf(b, "    org: %s\n", c.Org)
	}
	fmt.Fprintf(b, "    user: %s\n", c.User)
	if len(c.Groups) > 0 {
		fmt.Fprintf(b, "    groups: [%s]\n", strings.Join(c.Groups, ", "))
	}
	if c.ExpiresAt != "" {
		fmt.Fprintf(b, "    expires_at: %s\n", c.ExpiresAt)
	}
	if c.Disabled {
		b.WriteString("    disabled: true\n")
	}
}

const testRealm = "e2e.example.com"

// policyHeader is the settings, groups and tenants every test policy uses.
const policyHeader = `version: 1
settings:
  realm: ` + testRealm + `
  api_key_headers: [authorization, x-api-key]
  session_header: session
  identity_header_prefix: x-keygate-
  strip_credentials: true
  max_org_keys: 5
  default: deny
groups:
  - name: sales
  - name: support
  - name: admin
tenants:
  - id: acme
    orgs: [acme-eu, acme-us]
  - id: globex
    orgs: [globex-main]
`

// simpleEndpoints protect /whoami with an API key; /docs/** is anonymous.
const simpleEndpoints = `endpoints:
  - name: docs
    match: {methods: [GET], path: "/docs/**"}
    anonymous: true
  - name: whoami
    match: {path: /whoami}
    require: [api_key]
`

// renderPolicy is policyHeader, the endpoints section as given, then keys
// and sessions.
func renderPolicy(endpoints string, keys, sessions []cred) string {
	var b strings.Builder
	b.WriteString(policyHeader)
	b.WriteString(endpoints)
	if len(keys) > 0 {
		b.WriteString("api_keys:\n")
		for _, k := range keys {
			k.yaml(&b)
		}
	}
	if len(sessions) > 0 {
		b.WriteString("sessions:\n")
		for _, s := range sessions {
			s.yaml(&b)
		}
	}
	return b.String()
}

// writeFile writes data in place (truncate and write), as `cat >` or a
// simple editor does.
func writeFile(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeAtomic writes data to a temporary file next to path and renames it
// over path, as most editors and config tools do.
func writeAtomic(t testing.TB, path, data string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// lineOf returns the 1-based line of the first line of text containing sub.
func lineOf(t testing.TB, text, sub string) int {
	t.Helper()
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) {
			return i + 1
		}
	}
	t.Fatalf("%q not found in policy", sub)
	return 0
}

// ---------------------------------------------------------------------------
// keygate processes.

// proc is one running `keygate serve` (run by the harness: free loopback
// ports, readiness, output capture, the stop and its checks) and the
// suite's gRPC connection to it.
type proc struct {
	*harness.Keygate
	t testing.TB

	connOnce sync.Once
	conn     *grpc.ClientConn
}

// startKeygate runs `keygate serve` with the policy at policyPath, the HTTP
// adapter and every decision logged, and waits until /readyz answers 200.
// When the test ends keygate is stopped; it must still be running then,
// exit 0 on SIGTERM and print no panic or data race.
func startKeygate(t testing.TB, policyPath string, extraArgs ...string) *proc {
	t.Helper()
	p := &proc{t: t, Keygate: harness.Serve(t, harness.Options{
		HTTP:         true,
		ReadyTimeout: 10 * time.Second,
		Args:         append([]string{"--policy", policyPath, "--decision-log", "all"}, extraArgs...),
	})}
	// Registered after Serve's cleanup, so it runs first: the graceful stop
	// does not wait for the test's connection.
	t.Cleanup(func() {
		p.connOnce.Do(func() {}) // no connection from here on
		if p.conn != nil {
			_ = p.conn.Close()
		}
	})
	return p
}

// readyVerbose is /readyz?verbose; the test fails if it does not answer.
func (p *proc) readyVerbose(t testing.TB) (int, harness.ReadyStatus) {
	t.Helper()
	code, st, err := p.Status()
	if err != nil {
		t.Fatal(err)
	}
	return code, st
}

// grpcConn is a client connection to the process's gRPC listener.
func (p *proc) grpcConn() *grpc.ClientConn {
	p.connOnce.Do(func() {
		c, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			p.t.Fatalf("grpc.NewClient: %v", err)
		}
		p.conn = c
	})
	return p.conn
}

var httpClient = &http.Client{
	Timeout: 10 * time.Second,
	Transport: &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 16,
		DisableCompression:  true,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// httpCheck sends one request to the ext_authz HTTP listener, as Envoy's
// http_service would: the original method and raw path (sent byte for byte,
// never cleaned by the client), host and headers.
func (p *proc) httpCheck(t testing.TB, method, host, rawPath string, headers map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+p.HTTPAddr+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.URL.Opaque = rawPath // written as the request target verbatim
	if host != "" {
		req.Host = host
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("HTTP %s %s: %v", method, rawPath, err)
	}
	return resp
}

// bearer is an Authorization header value.
func bearer(key string) map[string]string {
	return map[string]string{"authorization": "Bearer " + key}
}

// httpStatus sends a check over HTTP and returns only the status code.
func (p *proc) httpStatus(t testing.TB, method, path string, headers map[string]string) int {
	t.Helper()
	resp := p.httpCheck(t, method, "", path, headers)
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode
}

// newPolicyFile writes policy text to policy.yaml in a fresh temporary
// directory and returns its path.
func newPolicyFile(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, text)
	return path
}

// poll calls fn every 20ms until it returns true or deadline passes; it
// returns how long that took and whether fn succeeded.
func poll(deadline time.Duration, fn func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if fn() {
			return time.Since(start), true
		}
		if time.Since(start) > deadline {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}
