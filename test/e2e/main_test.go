// Package e2e tests keygate end to end: the binary built from ./cmd/keygate
// runs as a real process, and the tests talk to its gRPC, HTTP and admin
// listeners over loopback sockets, as Envoy and Kubernetes would.
//
// After every test has run, TestMain scans everything any keygate process
// printed for every raw API key and session token the suite made (see
// registerSecret): a raw credential must never appear in keygate's output.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
)

// keygateBin is the binary under test, built once by TestMain.
var keygateBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "keygate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if err := buildKeygate(tmp); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: build keygate:", err)
		return 1
	}
	code := m.Run()
	if leaks := scanForSecrets(); len(leaks) > 0 {
		fmt.Fprintln(os.Stderr, "--- FAIL: TestNoSecretsInOutput (run by TestMain after every test)")
		fmt.Fprintf(os.Stderr, "    keygate printed %d raw credential(s); keys and tokens must never be logged:\n", len(leaks))
		for _, l := range leaks {
			fmt.Fprintln(os.Stderr, "    "+l)
		}
		fmt.Fprintln(os.Stderr, "FAIL")
		return 1
	}
	if code == 0 && testingVerbose() {
		fmt.Printf("--- PASS: TestNoSecretsInOutput (%d secrets, %d process outputs scanned)\n", secretCount(), outputCount())
	}
	return code
}

func testingVerbose() bool {
	for _, a := range os.Args {
		if a == "-test.v=true" || a == "-test.v" {
			return true
		}
	}
	return false
}

// buildKeygate builds ./cmd/keygate from the module root (two levels above
// this package) into dir. KEYGATE_E2E_RACE=1 builds it with -race.
func buildKeygate(dir string) error {
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	root, err := filepath.Abs(filepath.Join(wd, "..", ".."))
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return fmt.Errorf("module root not found from %s: %w", wd, err)
	}
	keygateBin = filepath.Join(dir, "keygate")
	args := []string{"build", "-o", keygateBin}
	if os.Getenv("KEYGATE_E2E_RACE") == "1" {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/keygate")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// ---------------------------------------------------------------------------
// Secrets registry and output capture, for the final scan.

var (
	secretsMu sync.Mutex
	secrets   = map[string]string{} // raw value -> what it is (id, purpose)

	outputsMu sync.Mutex
	outputs   []*capture
)

// registerSecret records a raw credential the suite made; keygate must never
// print it.
func registerSecret(raw, what string) {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	secrets[raw] = what
}

func secretCount() int {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	return len(secrets)
}

func outputCount() int {
	outputsMu.Lock()
	defer outputsMu.Unlock()
	return len(outputs)
}

// capture is a thread-safe buffer holding one process's output.
type capture struct {
	name string
	mu   sync.Mutex
	buf  bytes.Buffer
}

// newCapture makes a buffer and records it for the final secret scan.
func newCapture(name string) *capture {
	c := &capture{name: name}
	outputsMu.Lock()
	outputs = append(outputs, c)
	outputsMu.Unlock()
	return c
}

func (c *capture) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

func (c *capture) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String()
}

// lines returns the complete lines captured so far.
func (c *capture) lines() []string {
	s := c.String()
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	} else {
		return nil
	}
	return strings.Split(s, "\n")
}

// scanForSecrets looks for every registered raw credential in every byte
// any keygate process printed.
func scanForSecrets() []string {
	secretsMu.Lock()
	raws := make([]string, 0, len(secrets))
	for raw := range secrets {
		raws = append(raws, raw)
	}
	secretsMu.Unlock()
	sort.Strings(raws)
	outputsMu.Lock()
	outs := append([]*capture(nil), outputs...)
	outputsMu.Unlock()
	var leaks []string
	for _, c := range outs {
		text := c.String()
		for _, raw := range raws {
			if !strings.Contains(text, raw) {
				continue
			}
			for n, line := range strings.Split(text, "\n") {
				if strings.Contains(line, raw) {
					leaks = append(leaks, fmt.Sprintf("%s leaked in output of %s, line %d: %s",
						secrets[raw], c.name, n+1, strings.ReplaceAll(line, raw, "<"+secrets[raw]+">")))
				}
			}
		}
	}
	return leaks
}

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

// newKey makes a keygate-format key (kg_<id>_<secret><checksum>) and
// registers it as a secret.
func newKey(t testing.TB, tenant, org, user string, groups ...string) cred {
	t.Helper()
	id, err := apikey.NewID()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := apikey.New(id)
	if err != nil {
		t.Fatal(err)
	}
	registerSecret(raw, "credential "+id)
	return cred{ID: id, Raw: raw, Tenant: tenant, Org: org, User: user, Groups: groups}
}

// newForeignKey makes a credential that is not in keygate's format (a key
// made elsewhere and imported by digest), listed under id.
func newForeignKey(t testing.TB, id, tenant, org, user string, groups ...string) cred {
	t.Helper()
	raw := randomToken(t, "ext")
	registerSecret(raw, "credential "+id)
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
	registerSecret(raw, what)
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

// proc is one running `keygate serve`.
type proc struct {
	t         testing.TB
	cmd       *exec.Cmd
	out       *capture
	policy    string
	grpcAddr  string
	httpAddr  string
	adminAddr string

	done    chan struct{} // closed when the process has exited
	waitErr error         // valid after done

	stopOnce sync.Once
	signaled atomic.Bool

	connOnce sync.Once
	conn     *grpc.ClientConn
}

// freePorts reserves n distinct loopback ports: it listens on 127.0.0.1:0 n
// times, then closes the listeners so keygate can bind the ports.
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	var ls []net.Listener
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		addrs[i] = l.Addr().String()
	}
	for _, l := range ls {
		_ = l.Close()
	}
	return addrs
}

// startKeygate runs `keygate serve` on free loopback ports with the policy
// at policyPath, waits until /readyz answers 200 and stops it (SIGTERM, then
// wait) when the test ends. The process must still be running then and must
// exit 0.
func startKeygate(t testing.TB, policyPath string, extraArgs ...string) *proc {
	t.Helper()
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		p, err := tryStart(t, policyPath, extraArgs)
		if err == nil {
			return p
		}
		lastErr = err
		if !strings.Contains(p.out.String(), "address already in use") {
			break // not a port race: no point retrying
		}
	}
	t.Fatalf("keygate did not become ready: %v", lastErr)
	return nil
}

func tryStart(t testing.TB, policyPath string, extraArgs []string) (*proc, error) {
	addrs := freePorts(t, 3)
	p := &proc{
		t: t, policy: policyPath,
		grpcAddr: addrs[0], httpAddr: addrs[1], adminAddr: addrs[2],
		out:  newCapture(t.Name()),
		done: make(chan struct{}),
	}
	args := append([]string{"serve",
		"--policy", policyPath,
		"--grpc-addr", p.grpcAddr,
		"--http-addr", p.httpAddr,
		"--admin-addr", p.adminAddr,
		"--decision-log", "all",
	}, extraArgs...)
	p.cmd = exec.Command(keygateBin, args...)
	p.cmd.Env = cleanEnv()
	p.cmd.Stdout = p.out
	p.cmd.Stderr = p.out
	if err := p.cmd.Start(); err != nil {
		return p, err
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	if err := p.waitReady(10 * time.Second); err != nil {
		_ = p.cmd.Process.Kill()
		<-p.done
		return p, fmt.Errorf("%w\noutput:\n%s", err, p.out.String())
	}
	t.Cleanup(func() { p.stopAndCheck() })
	return p, nil
}

// cleanEnv is the test's environment without KEYGATE_* variables, so that
// only the flags the test passes configure keygate.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYGATE_") {
			env = append(env, kv)
		}
	}
	return env
}

func (p *proc) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("keygate exited before it was ready: %v", p.waitErr)
		default:
		}
		if code, _ := p.admin("/readyz"); code == http.StatusOK {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("/readyz not 200 within %v", timeout)
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// sigterm sends SIGTERM now, leaving the test's connections open.
func (p *proc) sigterm() {
	if !p.signaled.Swap(true) {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
}

// terminate closes the test's gRPC connection and sends SIGTERM unless the
// process was already signaled or has exited.
func (p *proc) terminate() {
	p.stopOnce.Do(func() {
		if p.conn != nil {
			_ = p.conn.Close()
		}
		if !p.exited() {
			p.sigterm()
		}
	})
}

// wait waits up to timeout for the process to exit and returns its exit
// code (-1 if it had to be killed).
func (p *proc) wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
	case <-time.After(timeout):
		_ = p.cmd.Process.Kill()
		<-p.done
		return -1, fmt.Errorf("keygate did not exit within %v of SIGTERM", timeout)
	}
	var ee *exec.ExitError
	if errors.As(p.waitErr, &ee) {
		return ee.ExitCode(), nil
	}
	if p.waitErr != nil {
		return -1, p.waitErr
	}
	return 0, nil
}

// stopAndCheck is the cleanup: the process must not have died on its own,
// must exit 0 on SIGTERM, and must not have panicked or raced.
func (p *proc) stopAndCheck() {
	t := p.t
	diedEarly := p.exited() && !p.signaled.Load()
	p.terminate()
	code, err := p.wait(20 * time.Second)
	out := p.out.String()
	switch {
	case diedEarly:
		t.Errorf("keygate exited before the test stopped it (%v); output:\n%s", p.waitErr, tail(out, 40))
	case err != nil:
		t.Errorf("stopping keygate: %v; output:\n%s", err, tail(out, 40))
	case code != 0:
		t.Errorf("keygate exited %d after SIGTERM, want 0; output:\n%s", code, tail(out, 40))
	}
	for _, bad := range []string{"panic:", "WARNING: DATA RACE", "fatal error:"} {
		if strings.Contains(out, bad) {
			t.Errorf("keygate output contains %q:\n%s", bad, tail(out, 80))
		}
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// grpcConn is a client connection to the process's gRPC listener.
func (p *proc) grpcConn() *grpc.ClientConn {
	p.connOnce.Do(func() {
		c, err := grpc.NewClient(p.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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

// admin GETs path on the admin listener and returns status and body.
func (p *proc) admin(path string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.adminAddr+path, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// readyStatus is /readyz?verbose.
type readyStatus struct {
	Ready         bool   `json:"ready"`
	Reason        string `json:"reason"`
	Generation    uint64 `json:"generation"`
	LastReloadOK  bool   `json:"last_reload_ok"`
	LastError     string `json:"last_error"`
	ReloadsOK     uint64 `json:"reloads_ok"`
	ReloadsFailed uint64 `json:"reloads_failed"`
	Source        string `json:"source"`
}

func (p *proc) readyVerbose(t testing.TB) (int, readyStatus) {
	t.Helper()
	code, body := p.admin("/readyz?verbose")
	var st readyStatus
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("/readyz?verbose: status %d, body %q: %v", code, body, err)
	}
	return code, st
}

// httpCheck sends one request to the ext_authz HTTP listener, as Envoy's
// http_service would: the original method and raw path (sent byte for byte,
// never cleaned by the client), host and headers.
func (p *proc) httpCheck(t testing.TB, method, host, rawPath string, headers map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+p.httpAddr+"/", nil)
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
