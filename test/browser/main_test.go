// Package browser tests the key-management page in a real browser: the
// keygate binary serves a policy file with the management API and the page
// (--api-addr), Debian's chromium runs headless, driven by chromedp over the
// DevTools protocol, and the test clicks and types as an organization admin
// would. The keys it makes on the page are then used, and seen refused,
// through keygate's real gRPC ext_authz port. After the suite every byte
// keygate printed is scanned for every secret the suite made (harness.Main).
//
// Without chromium the tests are skipped (they fail under CI=true, where
// hack/test-deps.sh installs it); KEYGATE_SKIP_BROWSER=1 always skips them.
// KEYGATE_UPDATE_SCREENSHOT=1 also writes docs/key-page.png.
package browser

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/accessibility"
	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/test/internal/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// ---------------------------------------------------------------------------
// The policy keygate serves.

// world is the test policy's credentials, with their raw values.
type world struct {
	Admin       cred // olivia, org admin of acme-eu: a session, as a person signed in
	TenantAdmin cred // tina, a tenant-level key admin of acme
	Member      cred // bob, a session of acme-eu who is no key admin
	Billing     cred // an active acme-eu key the operator made
	Importer    cred // an expired acme-eu key
	MaxKeys     int
}

type cred struct{ ID, Raw string }

func newCred(t testing.TB) cred {
	id, raw := harness.NewAPIKey(t)
	return cred{ID: id, Raw: raw}
}

func newWorld(t testing.TB, maxKeys int) *world {
	return &world{Admin: newCred(t), TenantAdmin: newCred(t), Member: newCred(t), Billing: newCred(t), Importer: newCred(t), MaxKeys: maxKeys}
}

var policyText = harness.PolicyTemplate("policy", `# written by test/browser
version: 1
settings:
  realm: api.example.com
  session_cookie: kg_session
  max_org_keys: {{.MaxKeys}}
groups: [{name: sales}, {name: org-admin}]
tenants:
  - {id: acme, orgs: [acme-eu, acme-us]}
management:
  key_admin_groups: [org-admin]
  assignable_groups: [sales]
endpoints:
  - name: sales-read
    match: {methods: [GET], path: "/orgs/{org}/sales/**"}
    require: [api_key]
    org: {from: path, name: org}
api_keys:
  - {id: {{.Billing.ID}}, name: Billing sync, hash: "{{h .Billing.Raw}}", tenant: acme, org: acme-eu, user: billing-bot, environment: production, created_at: 2026-01-12T09:30:00Z}
  - {id: {{.Importer.ID}}, name: Old importer, hash: "{{h .Importer.Raw}}", tenant: acme, org: acme-eu, user: importer, environment: production, created_at: 2025-05-01T08:00:00Z, expires_at: 2025-08-01T08:00:00Z}
sessions:
  - {id: {{.Admin.ID}}, hash: "{{h .Admin.Raw}}", tenant: acme, org: acme-eu, user: olivia, groups: [org-admin]}
  - {id: {{.TenantAdmin.ID}}, hash: "{{h .TenantAdmin.Raw}}", tenant: acme, user: tina, groups: [org-admin]}
  - {id: {{.Member.ID}}, hash: "{{h .Member.Raw}}", tenant: acme, org: acme-eu, user: bob, groups: [sales]}
`)

func writePolicy(t testing.TB, w *world) string {
	t.Helper()
	return harness.WritePolicy(t, "", policyText, w)
}

// ---------------------------------------------------------------------------
// Envoy's side: Check over a real gRPC connection.

type checker struct {
	t      testing.TB
	client authv3.AuthorizationClient
}

func newChecker(t testing.TB, addr string) *checker {
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &checker{t: t, client: authv3.NewAuthorizationClient(conn)}
}

// check sends Envoy's CheckRequest for GET /orgs/acme-eu/sales/q1 with key
// as a bearer token, and returns the gRPC code and the HTTP status a denial
// carries (0 when allowed).
func (c *checker) check(key string) (codes.Code, int) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.client.Check(ctx, envoytest.CheckRequest(key))
	if err != nil {
		c.t.Fatalf("Check: %v", err)
	}
	return codes.Code(resp.GetStatus().GetCode()), int(resp.GetDeniedResponse().GetStatus().GetCode())
}

// wait polls Check until it answers want, and returns how long that took
// from since.
func (c *checker) wait(key string, want codes.Code, since time.Time, within time.Duration) time.Duration {
	c.t.Helper()
	for {
		got, _ := c.check(key)
		if got == want {
			return time.Since(since)
		}
		if time.Since(since) > within {
			c.t.Fatalf("Check still answers %v after %v, want %v", got, within, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ---------------------------------------------------------------------------
// The browser.

// tab is a headless chromium tab on the key page.
type tab struct {
	t    testing.TB
	ctx  context.Context
	base string // http://127.0.0.1:PORT

	mu       sync.Mutex
	messages []chromedp.ConsoleMessage
}

// openTab starts chromium with its own profile and opens a tab. The browser
// is closed when the test ends; its output goes to the test log if the test
// failed.
func openTab(t *testing.T, base string) *tab {
	t.Helper()
	if os.Getenv("KEYGATE_SKIP_BROWSER") == "1" {
		t.Skip("KEYGATE_SKIP_BROWSER=1: not running chromium")
	}
	bin, err := harness.LookPath("chromium")
	if err != nil {
		harness.Missing(t, err.Error()+": `make test-deps` installs it (apt-get install chromium)")
	}
	var out lockedBuffer
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.NoSandbox, // chromium refuses to start as root with its sandbox
		chromedp.Headless,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("lang", "en-US"),
		chromedp.CombinedOutput(&out),
	)
	// Bounded, so that a hung browser fails the test instead of the run.
	root, cancelRoot := context.WithTimeout(context.Background(), 2*time.Minute)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(root, opts...)
	ctx, cancelTab := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc()
		cancelRoot()
		if t.Failed() {
			t.Logf("chromium output:\n%s", out.String())
		}
	})
	if err := chromedp.Do(ctx); err != nil { // starts the browser
		t.Fatalf("chromium did not start: %v\n%s", err, out.String())
	}
	tb := &tab{t: t, ctx: ctx, base: base}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			tb.mu.Lock()
			tb.messages = append(tb.messages, m)
			tb.mu.Unlock()
		}
	}()
	return tb
}

// do runs steps, each call within 10 s, and fails the test with what.
func (b *tab) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// run is do for an action with a value.
func run[T any](b *tab, what string, a chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// js evaluates a JavaScript expression in the page and decodes its value.
func js[T any](b *tab, expr string, opts ...chromedp.EvaluateOption) T {
	b.t.Helper()
	return run(b, "evaluate "+expr, chromedp.Evaluate[T](expr, opts...))
}

// waitJS waits up to 5 s for a JavaScript condition to hold.
func (b *tab) waitJS(what, cond string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[bool](cond, chromedp.WithPollingInterval(20*time.Millisecond), chromedp.WithPollingTimeout(5*time.Second))); err != nil {
		b.t.Fatalf("%s (waited for %s): %v", what, cond, err)
	}
}

// text is an element's text content, trimmed; "" when it is absent.
func (b *tab) text(css string) string {
	b.t.Helper()
	return js[string](b, `(document.querySelector(`+strconv.Quote(css)+`)?.textContent ?? '').trim()`)
}

// visible reports whether an element is rendered (not hidden by an
// ancestor, not display: none).
func (b *tab) visible(css string) bool {
	b.t.Helper()
	return js[bool](b, `(() => { const e = document.querySelector(`+strconv.Quote(css)+`); return !!e && e.checkVisibility(); })()`)
}

// focused is the id of the element that has the keyboard focus.
func (b *tab) focused() string {
	b.t.Helper()
	return js[string](b, `document.activeElement?.id || document.activeElement?.tagName || ''`)
}

// row is a key as the table shows it.
type row struct {
	Name, ID, Environment string
	Created, CreatedTitle string
	Expires, ExpiresTitle string
	State                 string
	RevokeLabel           string // the trash button's accessible label; "" without one
}

// row reads the table row of key id; nil when there is none.
func (b *tab) row(id string) *row {
	b.t.Helper()
	return js[*row](b, `(() => {
		const tr = document.querySelector('#key-rows tr[data-id=' + CSS.escape(`+strconv.Quote(id)+`) + ']');
		if (!tr) return null;
		const c = tr.cells, text = (i) => c[i].textContent.trim();
		const title = (i) => c[i].querySelector('time')?.title ?? '';
		return {Name: text(0), ID: text(1), Environment: text(2), Created: text(3), CreatedTitle: title(3),
			Expires: text(4), ExpiresTitle: title(4), State: text(5),
			RevokeLabel: c[6].querySelector('button')?.getAttribute('aria-label') ?? ''};
	})()`)
}

// unnamedControls lists the controls the browser's accessibility tree
// exposes without a name: a screen reader would announce them as just
// "button" or "edit text".
func (b *tab) unnamedControls() []string {
	b.t.Helper()
	tree := run(b, "read the accessibility tree", chromedp.Action[*accessibility.GetFullAXTreeResult](
		func(ctx context.Context, t *chromedp.Target) (*accessibility.GetFullAXTreeResult, error) {
			res, err := chromedp.Call(ctx, accessibility.GetFullAXTree, accessibility.GetFullAXTreeParams{})
			return &res, err
		}))
	var bad []string
	for _, n := range tree.Nodes {
		if n.Ignored || n.Role == nil {
			continue
		}
		role := strings.Trim(string(n.Role.Value), `"`)
		switch role {
		case "button", "textbox", "combobox", "link", "checkbox", "dialog", "table":
		default:
			continue
		}
		if n.Name == nil || strings.Trim(string(n.Name.Value), `" `) == "" {
			bad = append(bad, fmt.Sprintf("a %s (DOM node %d)", role, n.BackendDOMNodeID))
		}
	}
	return bad
}

// problems is what the page wrote to the console that a user would call a
// bug: an exception, a refusal by the Content-Security-Policy, an error the
// script logged. A failed request (a 401 before signing in) is the
// browser's report of an answer the page expects, and is not counted.
func (b *tab) problems() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for _, m := range b.messages {
		switch {
		case m.IsException(),
			m.Source == "security",
			m.Source == "javascript",
			m.Source == "" && (m.Type == chromedp.ConsoleError || m.Type == chromedp.ConsoleWarning),
			strings.Contains(m.Text, "Content Security Policy"):
			out = append(out, fmt.Sprintf("%s:%d %s", m.URL, m.Line+1, m))
		}
	}
	return out
}

// allowClipboard lets the page use the clipboard, as a user who accepts
// the browser's prompt would.
func (b *tab) allowClipboard() {
	b.t.Helper()
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		_, err := chromedp.CallBrowser(b.ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: name, AllowWithoutSanitization: true},
			Setting:    browser.PermissionSettingGranted,
			Origin:     b.base,
		})
		if err != nil {
			b.t.Fatalf("grant %s: %v", name, err)
		}
	}
}

// lockedBuffer collects chromium's output from its reader goroutine.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}
