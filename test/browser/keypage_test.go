package browser

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/test/internal/harness"
)

// TestKeyPage is an organization admin's visit to the key page, start to
// end: sign in with a session token, see the organization's keys, add one,
// copy it from the one-time dialog and use it at once through keygate's
// gRPC port, revoke it through the confirmation dialog and see it refused,
// add keys with the keyboard alone up to the limit, where Add is disabled
// and says why; then sign out, and sign in as a member who is no key admin.
func TestKeyPage(t *testing.T) {
	w := newWorld(t, 3)
	kg := harness.Serve(t, harness.Options{API: true, Args: []string{"--policy", writePolicy(t, w)}})
	begun := time.Now() // the visit, without building and starting keygate
	defer func() { t.Logf("the visit took %v", time.Since(begun).Round(100*time.Millisecond)) }()
	envoy := newChecker(t, kg.GRPCAddr)
	base := "http://" + kg.APIAddr
	pageHeaders(t, base)

	b := openTab(t, base)
	b.allowClipboard()
	defer func() {
		if p := b.problems(); len(p) > 0 {
			t.Errorf("the page reported %d problem(s) in the console:\n%s", len(p), strings.Join(p, "\n"))
		}
	}()

	// Signed out: the sign-in box. A token that does not verify is refused
	// with the API's message, and the box is emptied.
	b.do("open the page", chromedp.Navigate(base+"/"), chromedp.WaitVisible(chromedp.ID("signin-token")))
	if bad := b.unnamedControls(); len(bad) > 0 {
		t.Errorf("sign-in box: controls without an accessible name: %v", bad)
	}
	_, wrong := harness.NewAPIKey(t) // well formed, listed nowhere
	b.do("sign in with a token keygate does not know",
		chromedp.SendKeys(chromedp.ID("signin-token"), wrong),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("signin-error")))
	if msg := b.text("#signin-error"); msg == "" || strings.Contains(msg, wrong) {
		t.Errorf("sign-in error %q: want the API's message, without the token", msg)
	}
	if v := run(b, "read the token box", chromedp.Value(chromedp.ID("signin-token"))); v != "" {
		t.Errorf("the token box still holds %d characters after a refused sign-in", len(v))
	}

	// Signed in: the organization, the caller, its keys and the count.
	b.do("sign in as the org admin",
		chromedp.SendKeys(chromedp.ID("signin-token"), w.Admin.Raw),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.CSS("#key-rows tr")))
	sessionCookie(t, b, true)
	if got := b.text("#org-name"); got != "acme-eu" {
		t.Errorf("organization shown %q, want acme-eu", got)
	}
	if got := b.text("#account-user"); !strings.Contains(got, "olivia") {
		t.Errorf("signed-in user shown %q, want olivia", got)
	}
	b.wantUsage(t, 1, 3)
	billing := b.row(w.Billing.ID)
	if billing == nil || billing.Name != "Billing sync" || billing.Environment != "production" || billing.State != "Active" ||
		billing.CreatedTitle != "2026-01-12T09:30:00Z" || billing.Created != "Jan 12, 2026" || billing.Expires != "Never" ||
		!strings.Contains(billing.RevokeLabel, w.Billing.ID) {
		t.Errorf("the operator's key shows as %+v", billing)
	}
	if imp := b.row(w.Importer.ID); imp == nil || imp.State != "Expired" || imp.ExpiresTitle != "2025-08-01T08:00:00Z" || imp.RevokeLabel != "" {
		t.Errorf("the expired key shows as %+v; want Expired, its expiry, no Revoke", imp)
	}
	if bad := b.unnamedControls(); len(bad) > 0 {
		t.Errorf("key list: controls without an accessible name: %v", bad)
	}

	// Add a key with the mouse: name, environment, expiry.
	b.do("open Add key", chromedp.Click(chromedp.ID("add-key")), chromedp.WaitVisible(chromedp.ID("add-name")))
	if f := b.focused(); f != "add-name" {
		t.Errorf("Add key dialog opened with the focus on %q, want the name", f)
	}
	if bad := b.unnamedControls(); len(bad) > 0 {
		t.Errorf("Add key dialog: controls without an accessible name: %v", bad)
	}
	b.do("submit without a name", chromedp.Click(chromedp.ID("add-submit")), chromedp.WaitVisible(chromedp.ID("add-error")))
	b.do("fill in and submit the new key",
		chromedp.SendKeys(chromedp.ID("add-name"), "CI deploys"),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('add-environment').select()`), // typing replaces "production"
		chromedp.SendKeys(chromedp.ID("add-environment"), "staging"),
		chromedp.SetValue(chromedp.ID("add-expiry"), "30d"),
		chromedp.Click(chromedp.ID("add-submit")),
		chromedp.WaitVisible(chromedp.ID("secret-value")))
	ci := b.readSecret(t, "CI deploys")
	if warning := b.text("#secret-warning"); !strings.Contains(warning, "will not be shown again") {
		t.Errorf("one-time dialog warns %q", warning)
	}
	b.do("copy the key", chromedp.Click(chromedp.ID("secret-copy")))
	b.waitJS("the page says it copied the key", `document.getElementById('secret-copied').textContent.includes('Copied')`)
	if clip := js[string](b, `navigator.clipboard.readText()`, chromedp.EvalAwaitPromise); clip != ci.raw {
		t.Errorf("the clipboard holds %d characters after Copy, not the key", len(clip))
	}
	b.do("close the one-time dialog", chromedp.Click(chromedp.CSS("#secret-dialog button[data-close]")),
		chromedp.WaitNotVisible(chromedp.ID("secret-dialog")))
	b.wantSecretGone(t, ci.raw)
	b.waitJS("the list shows the new key", `!!document.querySelector('#key-rows tr[data-id="`+ci.id+`"]')`)
	b.wantUsage(t, 2, 3)
	r := b.row(ci.id)
	if r == nil || r.Name != "CI deploys" || r.Environment != "staging" || r.State != "Active" {
		t.Fatalf("the new key shows as %+v", r)
	}
	created, err1 := time.Parse(time.RFC3339, r.CreatedTitle)
	expires, err2 := time.Parse(time.RFC3339, r.ExpiresTitle)
	if err1 != nil || err2 != nil || time.Since(created).Abs() > time.Minute || (expires.Sub(created)-30*24*time.Hour).Abs() > time.Minute {
		t.Errorf("the new key was created %q and expires %q; want now and 30 days later", r.CreatedTitle, r.ExpiresTitle)
	}

	// Use it at once, as Envoy would ask keygate.
	took := envoy.wait(ci.raw, codes.OK, ci.shown, 2*time.Second)
	t.Logf("key shown in the dialog -> first allowed Check: %v", took.Round(time.Millisecond))

	// Revoke: Cancel keeps the key; confirming disables it and the list says so.
	b.do("open Revoke and cancel",
		chromedp.Click(chromedp.CSS(`#key-rows tr[data-id="`+ci.id+`"] button.revoke`)),
		chromedp.WaitVisible(chromedp.ID("revoke-confirm")))
	if f := b.focused(); f == "revoke-confirm" {
		t.Error("the revoke dialog opened with the focus on the destructive button")
	}
	if got := b.text("#revoke-id"); got != ci.id {
		t.Errorf("the revoke dialog names %q, want %s", got, ci.id)
	}
	b.do("cancel", chromedp.Click(chromedp.CSS("#revoke-dialog button[data-close]")), chromedp.WaitNotVisible(chromedp.ID("revoke-dialog")))
	if code, _ := envoy.check(ci.raw); code != codes.OK {
		t.Fatalf("after Cancel the key is refused (%v)", code)
	}
	// Open, Cancel and open again in one task: the Cancel's close event is
	// dispatched after the dialog is open again and must not make it forget
	// the key (Chromium can handle a quick click before that event).
	answered := b.watchResponse("/keys/" + ci.id)
	b.do("revoke the key after Cancel and open again at once",
		chromedp.Evaluate[chromedp.Void](`{
			const revoke = document.querySelector('#key-rows tr[data-id="`+ci.id+`"] button.revoke');
			revoke.click();
			document.querySelector('#revoke-dialog button[data-close]').click();
			revoke.click();
		}`),
		chromedp.WaitVisible(chromedp.ID("revoke-confirm")),
		chromedp.Click(chromedp.ID("revoke-confirm")))
	revokedAt := answered()
	took = envoy.wait(ci.raw, codes.Unauthenticated, revokedAt, 2*time.Second)
	t.Logf("revoke answered to the page -> first refused Check: %v", took.Round(time.Millisecond))
	if _, status := envoy.check(ci.raw); status != http.StatusUnauthorized {
		t.Errorf("the revoked key is denied with HTTP %d, want 401", status)
	}
	b.waitJS("the list shows the key disabled", `document.querySelector('#key-rows tr[data-id="`+ci.id+`"]')?.cells[5].textContent.trim() === 'Disabled'`)
	if r := b.row(ci.id); r.RevokeLabel != "" {
		t.Error("a disabled key still has a Revoke button")
	}
	b.wantUsage(t, 1, 3)

	// Add with the keyboard alone: Enter on Add, type, Enter submits,
	// Escape closes the one-time dialog and the focus returns to Add.
	nightly := b.addWithKeyboard(t, "Nightly export")
	if f := b.focused(); f != "add-key" {
		t.Errorf("after the one-time dialog the focus is on %q, want Add key", f)
	}
	b.wantUsage(t, 2, 3)
	if code, _ := envoy.check(w.Billing.Raw); code != codes.OK {
		t.Errorf("the operator's key is refused (%v) after the page's changes", code)
	}
	b.screenshot(t)

	// Another admin takes the last slot while the dialog is open: the page
	// shows the API's refusal, and the count it now has behind the dialog.
	b.do("start adding a key", chromedp.Click(chromedp.ID("add-key")), chromedp.WaitVisible(chromedp.ID("add-name")),
		chromedp.SendKeys(chromedp.ID("add-name"), "Too late"))
	elsewhere := createByAPI(t, base, w.Admin.Raw, "Made elsewhere", http.StatusCreated)
	refusal := createByAPI(t, base, w.Admin.Raw, "Also too late", http.StatusConflict)
	b.do("submit", chromedp.Click(chromedp.ID("add-submit")), chromedp.WaitVisible(chromedp.ID("add-error")))
	if msg := b.text("#add-error"); msg != refusal.message {
		t.Errorf("at the limit the Add dialog says %q, want the API's message %q", msg, refusal.message)
	}
	b.wantUsage(t, 3, 3)
	b.do("cancel", chromedp.Click(chromedp.CSS("#add-dialog button[data-close]")), chromedp.WaitNotVisible(chromedp.ID("add-dialog")))
	b.do("revoke the other admin's key",
		chromedp.Click(chromedp.CSS(`#key-rows tr[data-id="`+elsewhere.id+`"] button.revoke`)),
		chromedp.WaitVisible(chromedp.ID("revoke-confirm")),
		chromedp.Click(chromedp.ID("revoke-confirm")))
	b.wantUsage(t, 2, 3)
	envoy.wait(elsewhere.raw, codes.Unauthenticated, time.Now(), 2*time.Second)

	// The last free slot; then Add is disabled and says why.
	b.do("add the last key", chromedp.Click(chromedp.ID("add-key")), chromedp.WaitVisible(chromedp.ID("add-name")),
		chromedp.SendKeys(chromedp.ID("add-name"), "Partner sandbox"),
		chromedp.SetValue(chromedp.ID("add-expiry"), ""),
		chromedp.Click(chromedp.ID("add-submit")),
		chromedp.WaitVisible(chromedp.ID("secret-value")))
	last := b.readSecret(t, "Partner sandbox")
	b.do("close the one-time dialog", chromedp.Click(chromedp.CSS("#secret-dialog button[data-close]")),
		chromedp.WaitNotVisible(chromedp.ID("secret-dialog")))
	b.waitJS("Add is disabled at the limit", `document.getElementById('add-key').disabled`)
	b.wantUsage(t, 3, 3)
	if msg := b.text("#limit-message"); msg != "This organization has 3 of 3 active keys. Revoke one to add another." || !b.visible("#limit-message") {
		t.Errorf("at the limit the page says %q (visible %v)", msg, b.visible("#limit-message"))
	}
	if r := b.row(last.id); r == nil || r.Expires != "Never" || r.Environment != "production" {
		t.Errorf("the key made with the default environment and expiry Never shows as %+v", r)
	}
	// Newest first. Keys made within one second (the resolution of
	// created_at) may come in either order.
	shown := js[[]struct{ ID, Created string }](b, `[...document.querySelectorAll('#key-rows tr')].map((tr) =>
		({ID: tr.dataset.id, Created: tr.cells[3].querySelector('time')?.dateTime ?? ''}))`)
	var ids []string
	for i, r := range shown {
		ids = append(ids, r.ID)
		if i > 0 && r.Created > shown[i-1].Created { // RFC 3339 in UTC compares as text
			t.Errorf("row %d (%s, created %s) is below an older key (created %s): want the newest first", i, r.ID, r.Created, shown[i-1].Created)
		}
	}
	slices.Sort(ids)
	if want := []string{w.Billing.ID, w.Importer.ID, ci.id, nightly.id, elsewhere.id, last.id}; !slices.Equal(ids, slices.Sorted(slices.Values(want))) {
		t.Errorf("the table lists %v, want %v", ids, want)
	}
	for _, k := range []secretKey{nightly, last} {
		envoy.wait(k.raw, codes.OK, time.Now(), 2*time.Second)
	}

	// Sign out: the cookie goes, and a reload shows the sign-in box.
	b.do("sign out", chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("signin-token")))
	sessionCookie(t, b, false)
	b.do("reload", chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("signin-token")))

	// A tenant-level admin names the organization, which the URL keeps.
	b.do("sign in as a tenant-level admin",
		chromedp.SendKeys(chromedp.ID("signin-token"), w.TenantAdmin.Raw),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("choose-org-name")),
		chromedp.SendKeys(chromedp.ID("choose-org-name"), "acme-eu"),
		chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.CSS("#key-rows tr")))
	b.wantUsage(t, 3, 3)
	if got := js[string](b, `location.hash`); got != "#org=acme-eu" {
		t.Errorf("the URL keeps %q, want #org=acme-eu", got)
	}
	b.do("reload and sign out", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("#key-rows tr")),
		chromedp.Click(chromedp.ID("signout")), chromedp.WaitVisible(chromedp.ID("signin-token")))

	// A member who is no key admin sees why, and no way to change keys.
	b.do("sign in as a member",
		chromedp.SendKeys(chromedp.ID("signin-token"), w.Member.Raw),
		chromedp.Click(chromedp.ID("signin-submit")),
		chromedp.WaitVisible(chromedp.ID("not-admin")))
	for _, sel := range []string{"#add-key", "#key-list", "button.revoke"} {
		if b.visible(sel) {
			t.Errorf("a member who is no key admin sees %s", sel)
		}
	}
	if msg := b.text("#not-admin"); !strings.Contains(msg, "not a key admin") {
		t.Errorf("a member sees %q", msg)
	}
}

// apiAnswer is a create answered by the API itself.
type apiAnswer struct {
	secretKey
	message string // of a refusal
}

// createByAPI makes an acme-eu key through the API as another tab or a
// script of the same admin would (the session in its header), and checks
// the status.
func createByAPI(t *testing.T, base, session, name string, want int) apiAnswer {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/orgs/acme-eu/keys", strings.NewReader(`{"name":`+strconv.Quote(name)+`}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Session", session)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ ID, Key, Message string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatalf("POST /v1/orgs/acme-eu/keys: %d, %v", resp.StatusCode, err)
	}
	harness.RegisterSecret(body.Key, "key "+name+" made through the API")
	if resp.StatusCode != want {
		t.Fatalf("POST /v1/orgs/acme-eu/keys %q: %d %s, want %d", name, resp.StatusCode, body.Message, want)
	}
	return apiAnswer{secretKey: secretKey{id: body.ID, raw: body.Key, shown: time.Now()}, message: body.Message}
}

// secretKey is a key read from the one-time dialog.
type secretKey struct {
	id, raw string
	shown   time.Time
}

// readSecret reads the key from the one-time dialog, registers it as a
// secret keygate must never print, and checks it is keygate's format and
// names the key it was made for.
func (b *tab) readSecret(t *testing.T, name string) secretKey {
	t.Helper()
	raw := run(b, "read the key from the one-time dialog", chromedp.Value(chromedp.ID("secret-value")))
	shown := time.Now()
	harness.RegisterSecret(raw, "key "+name+" made on the page")
	id, ours, valid := apikey.Check(raw)
	if !ours || !valid {
		t.Fatalf("the one-time dialog shows %d characters that are not a kg_ key", len(raw))
	}
	if got := b.text("#secret-name"); got != name+" ("+id+")" {
		t.Errorf("the one-time dialog names %q, want %q", got, name+" ("+id+")")
	}
	if !js[bool](b, `document.getElementById('secret-value').readOnly`) {
		t.Error("the key's input is not read-only")
	}
	return secretKey{id: id, raw: raw, shown: shown}
}

// wantSecretGone: once the one-time dialog is closed, the key is nowhere
// in the page: not in its markup, an input, the page's state or storage.
func (b *tab) wantSecretGone(t *testing.T, raw string) {
	t.Helper()
	where := js[[]string](b, `(() => {
		const s = `+strconv.Quote(raw)+`, found = [];
		if (document.documentElement.outerHTML.includes(s)) found.push('markup');
		for (const el of document.querySelectorAll('input, textarea')) if (el.value.includes(s)) found.push('#' + el.id);
		if (JSON.stringify(state).includes(s)) found.push('the script state');
		if (JSON.stringify({...localStorage}).includes(s) || JSON.stringify({...sessionStorage}).includes(s)) found.push('storage');
		if (location.href.includes(s)) found.push('the URL');
		return found;
	})()`)
	if len(where) > 0 {
		t.Errorf("after the one-time dialog closed the key is still in %v", where)
	}
}

// addWithKeyboard adds a key using only the keyboard, and reads it.
func (b *tab) addWithKeyboard(t *testing.T, name string) secretKey {
	t.Helper()
	b.do("press Enter on Add key", chromedp.Focus(chromedp.ID("add-key")), chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.ID("add-name")))
	if f := b.focused(); f != "add-name" {
		t.Fatalf("Enter on Add key left the focus on %q, want the name", f)
	}
	b.do("type a name and press Enter", chromedp.KeyEvent(name), chromedp.KeyEvent(kb.Enter),
		chromedp.WaitVisible(chromedp.ID("secret-value")))
	if f := b.focused(); f != "secret-copy" {
		t.Errorf("the one-time dialog opened with the focus on %q, want Copy", f)
	}
	k := b.readSecret(t, name)
	b.do("press Escape", chromedp.KeyEvent(kb.Escape), chromedp.WaitNotVisible(chromedp.ID("secret-dialog")))
	b.wantSecretGone(t, k.raw)
	return k
}

// wantUsage checks "N of M organization keys".
func (b *tab) wantUsage(t *testing.T, active, limit int) {
	t.Helper()
	want := strconv.Itoa(active) + " of " + strconv.Itoa(limit) + " organization keys"
	b.waitJS("usage reads "+want, `document.getElementById('usage').textContent.trim() === `+strconv.Quote(want))
}

// watchResponse starts watching for the answer to a request whose URL ends
// with suffix, and returns a func that waits for it and returns when its
// headers reached the browser.
func (b *tab) watchResponse(suffix string) func() time.Time {
	ctx, cancel := context.WithTimeout(b.ctx, 15*time.Second)
	responses := chromedp.Events(ctx, network.ResponseReceived)
	return func() time.Time {
		b.t.Helper()
		defer cancel()
		for ev, err := range responses {
			if err != nil {
				b.t.Fatalf("waiting for the answer to %s: %v", suffix, err)
			}
			if strings.HasSuffix(ev.Response.URL, suffix) {
				at := time.Now()
				if ev.Response.Status != http.StatusOK {
					b.t.Fatalf("%s answered %d, want 200", ev.Response.URL, ev.Response.Status)
				}
				return at
			}
		}
		b.t.Fatalf("no answer to %s", suffix)
		return time.Time{}
	}
}

// sessionCookie checks the session cookie the API set at sign-in: HttpOnly
// (no script reads it), SameSite=Strict (no other site sends it); or that
// sign-out removed it.
func sessionCookie(t *testing.T, b *tab, want bool) {
	t.Helper()
	res := run(b, "read the cookies", chromedp.Action[network.GetCookiesResult](
		func(ctx context.Context, _ *chromedp.Target) (network.GetCookiesResult, error) {
			return chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{b.base + "/"}})
		}))
	var found *network.Cookie
	for _, c := range res.Cookies {
		if c.Name == "kg_session" {
			found = c
		}
	}
	switch {
	case want && found == nil:
		t.Errorf("signed in, but there is no kg_session cookie (cookies: %d)", len(res.Cookies))
	case want && (!found.HTTPOnly || found.SameSite != network.CookieSameSiteStrict):
		t.Errorf("kg_session cookie: HttpOnly %v, SameSite %q; want HttpOnly, Strict", found.HTTPOnly, found.SameSite)
	case !want && found != nil:
		t.Error("signed out, but the kg_session cookie is still set")
	}
	if got := js[string](b, `document.cookie`); strings.Contains(got, "kg_session") {
		t.Error("the page's script can read the session cookie")
	}
}

// pageHeaders checks what keygate's API port answers for the page itself,
// before a browser renders it.
func pageHeaders(t *testing.T, base string) {
	t.Helper()
	resp, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "script-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("GET /: Content-Security-Policy %q lacks %s", csp, want)
		}
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("GET /: no X-Content-Type-Options: nosniff")
	}
	if !strings.Contains(string(body), `src="/ui/app.js"`) {
		t.Errorf("GET /: not the key page: %.200s", body)
	}
}

// screenshot writes docs/key-page.png when KEYGATE_UPDATE_SCREENSHOT=1, so
// that a normal run leaves the tree as it was.
func (b *tab) screenshot(t *testing.T) {
	t.Helper()
	if os.Getenv("KEYGATE_UPDATE_SCREENSHOT") != "1" {
		return
	}
	js[bool](b, `(document.activeElement?.blur(), true)`) // no focus ring in the picture
	png := run(b, "take a screenshot", chromedp.FullScreenshot(100))
	path := filepath.Join("..", "..", "docs", "key-page.png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s (%d bytes)", path, len(png))
}
