package api

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/test/internal/harness"
)

// serveAPI runs keygate on the world's policy with the management API on.
func serveAPI(t *testing.T, w *world) (*harness.Keygate, string) {
	t.Helper()
	path := writePolicy(t, w)
	k := harness.Serve(t, harness.Options{Args: []string{"--policy", path}, API: true})
	return k, path
}

// created registers a key the API made as a secret for the log scan, and
// returns its id and secret.
func created(t *testing.T, a answer) (id, secret string) {
	t.Helper()
	m := a.json(t)
	id, _ = m["id"].(string)
	secret, _ = m["key"].(string)
	if id == "" || secret == "" {
		t.Fatalf("201 without id and key: %s", a.Body)
	}
	harness.RegisterSecret(secret, "API key "+id+" made through the management API")
	return id, secret
}

// TestKeysAPI walks DESIGN.md's table for API keys as an org admin, a
// tenant admin and outsiders would, and every error it names.
func TestKeysAPI(t *testing.T) {
	w := newWorld(t, 3, 1)
	k, path := serveAPI(t, w)
	c := newClient(t, k.APIAddr)
	authz := dial(t, k.GRPCAddr)
	eu := session(w.EUAdmin)

	// Who may list.
	for _, tc := range []struct {
		name   string
		auth   auth
		path   string
		status int
		err    string
	}{
		{"no credential", nil, "/v1/orgs/acme-eu/keys", 401, "unauthorized"},
		{"unknown key", auth{"X-Api-Key": "not-a-key"}, "/v1/orgs/acme-eu/keys", 401, "unauthorized"},
		{"not a key admin", bearer(w.EUPlain), "/v1/orgs/acme-eu/keys", 403, "forbidden"},
		{"another organization", eu, "/v1/orgs/acme-us/keys", 403, "forbidden"},
		{"another tenant", bearer(w.GlobexAdmin), "/v1/orgs/acme-eu/keys", 403, "forbidden"},
		{"unknown organization", eu, "/v1/orgs/nowhere/keys", 404, "not_found"},
		{"org admin, tenant-level keys", eu, "/v1/tenants/acme/keys", 403, "forbidden"},
		{"org admin", eu, "/v1/orgs/acme-eu/keys", 200, ""},
		{"tenant admin, an org of its tenant", bearer(w.TenantAdmin), "/v1/orgs/acme-us/keys", 200, ""},
		{"tenant admin, tenant-level keys", bearer(w.TenantAdmin), "/v1/tenants/acme/keys", 200, ""},
	} {
		t.Run("list/"+tc.name, func(t *testing.T) {
			a := c.do("GET", tc.path, tc.auth, nil)
			if a.Status != tc.status {
				t.Fatalf("GET %s = %d, want %d: %s", tc.path, a.Status, tc.status, a.Body)
			}
			if tc.err != "" && a.json(t)["error"] != tc.err {
				t.Errorf("error = %v, want %s", a.json(t)["error"], tc.err)
			}
			if tc.status == 401 && !strings.HasPrefix(a.Header.Get("WWW-Authenticate"), "Bearer realm=") {
				t.Errorf("401 without a Bearer challenge: %q", a.Header.Get("WWW-Authenticate"))
			}
		})
	}
	list := c.do("GET", "/v1/orgs/acme-eu/keys", eu, nil).json(t)
	if list["limit"] != 3.0 || list["active"] != 1.0 || list["org"] != "acme-eu" {
		t.Errorf("list = %v, want limit 3, active 1 (the operator's key), org acme-eu", list)
	}
	for _, key := range list["keys"].([]any) {
		if s := fmt.Sprint(key); strings.Contains(s, "sha256") || strings.Contains(s, w.Existing[0].Raw) {
			t.Errorf("a listed key shows its digest or secret: %s", s)
		}
	}

	// Refused creates never reach the policy.
	before, _ := os.ReadFile(path)
	for _, tc := range []struct {
		name   string
		auth   auth
		path   string
		body   any
		status int
		err    string
	}{
		{"no name", eu, "/v1/orgs/acme-eu/keys", map[string]any{"environment": "production"}, 400, "invalid_request"},
		{"unknown field", eu, "/v1/orgs/acme-eu/keys", map[string]any{"name": "x", "scopes": []string{"all"}}, 400, "invalid_request"},
		{"bad duration", eu, "/v1/orgs/acme-eu/keys", map[string]any{"name": "x", "expires_in": "soon"}, 400, "invalid_request"},
		{"both expiries", eu, "/v1/orgs/acme-eu/keys", map[string]any{"name": "x", "expires_in": "1d", "expires_at": "2030-01-01T00:00:00Z"}, 400, "invalid_request"},
		{"not JSON", eu, "/v1/orgs/acme-eu/keys", `{"name": `, 400, "invalid_request"},
		{"name of two lines", eu, "/v1/orgs/acme-eu/keys", map[string]any{"name": "a\nb"}, 400, "invalid_request"},
		{"group not assignable", eu, "/v1/orgs/acme-eu/keys", map[string]any{"name": "x", "groups": []string{"org-admin"}}, 403, "forbidden"},
		{"another organization", eu, "/v1/orgs/acme-us/keys", map[string]any{"name": "x"}, 403, "forbidden"},
		{"tenant-level by an org admin", eu, "/v1/tenants/acme/keys", map[string]any{"name": "x"}, 403, "forbidden"},
		{"not a key admin", bearer(w.EUPlain), "/v1/orgs/acme-eu/keys", map[string]any{"name": "x"}, 403, "forbidden"},
		{"unknown organization", eu, "/v1/orgs/nowhere/keys", map[string]any{"name": "x"}, 404, "not_found"},
		{"body too large", eu, "/v1/orgs/acme-eu/keys", map[string]any{"name": strings.Repeat("x", 70<<10)}, 413, "invalid_request"},
	} {
		t.Run("create refused/"+tc.name, func(t *testing.T) {
			a := c.do("POST", tc.path, tc.auth, tc.body)
			if a.Status != tc.status {
				t.Fatalf("POST %s = %d, want %d: %s", tc.path, a.Status, tc.status, a.Body)
			}
			if got := a.json(t)["error"]; got != tc.err {
				t.Errorf("error = %v, want %s", got, tc.err)
			}
		})
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatalf("a refused call changed the policy file")
	}

	// Create: the secret once, usable at once through ext_authz.
	a := c.do("POST", "/v1/orgs/acme-eu/keys", eu, map[string]any{"name": "Reporting", "environment": "production", "expires_in": "90d", "groups": []string{"sales"}})
	if a.Status != 201 {
		t.Fatalf("create = %d: %s", a.Status, a.Body)
	}
	id, secret := created(t, a)
	key := a.json(t)
	if key["org"] != "acme-eu" || key["tenant"] != "acme" || key["state"] != "active" || key["user"] != "olivia" || key["created_by"] != "olivia" {
		t.Errorf("created key = %v, want org acme-eu, tenant acme, state active, user and created_by olivia", key)
	}
	if exp, _ := time.Parse(time.RFC3339, fmt.Sprint(key["expires_at"])); exp.Sub(time.Now()) < 89*24*time.Hour {
		t.Errorf("expires_at = %v, want about 90 days from now", key["expires_at"])
	}
	if data, _ := os.ReadFile(path); strings.Contains(string(data), secret) || !strings.Contains(string(data), id) || !strings.Contains(string(data), "# written by test/api") {
		t.Errorf("the policy file must list %s by digest, keep its comments, and never hold the secret", id)
	}
	waitCheck(t, authz, secret, codes.OK, 3*time.Second)
	for _, k := range c.do("GET", "/v1/orgs/acme-eu/keys", eu, nil).json(t)["keys"].([]any) {
		if strings.Contains(fmt.Sprint(k), secret) {
			t.Errorf("the list shows the secret after creation")
		}
	}

	// Revoke: refused everywhere within the file reload budget.
	a = c.do("DELETE", "/v1/orgs/acme-eu/keys/"+id, eu, nil)
	if a.Status != 200 || a.json(t)["state"] != "disabled" {
		t.Fatalf("revoke = %d %s, want 200 with state disabled", a.Status, a.Body)
	}
	took := waitCheck(t, authz, secret, codes.Unauthenticated, 2*time.Second)
	t.Logf("file store: revoke answered to first refused Check: %v", took)
	recordFigure(t, fmt.Sprintf("file store: revoke answered -> first refused Check: %v", took.Round(time.Millisecond)))
	if a := c.do("DELETE", "/v1/orgs/acme-eu/keys/kg_nosuchkey", eu, nil); a.Status != 404 {
		t.Errorf("revoke unknown = %d, want 404: %s", a.Status, a.Body)
	}
	if a := c.do("DELETE", "/v1/orgs/acme-us/keys/"+id, bearer(w.TenantAdmin), nil); a.Status != 404 {
		t.Errorf("revoke through another organization's path = %d, want 404: %s", a.Status, a.Body)
	}

	// Rotate: a successor with the same scope; the old key keeps working
	// for the overlap.
	a = c.do("POST", "/v1/orgs/acme-eu/keys", eu, map[string]any{"name": "Rolling", "groups": []string{"sales"}})
	oldID, oldSecret := created(t, a)
	a = c.do("POST", "/v1/orgs/acme-eu/keys/"+oldID+"/rotate", eu, map[string]any{"overlap": "1h"})
	if a.Status != 201 {
		t.Fatalf("rotate = %d: %s", a.Status, a.Body)
	}
	newID, newSecret := created(t, a)
	if newID == oldID || a.json(t)["name"] != "Rolling" {
		t.Errorf("rotate made %v, want a new id with the old key's name", a.json(t))
	}
	waitCheck(t, authz, newSecret, codes.OK, 3*time.Second)
	if got := check(t, authz, oldSecret); got != codes.OK {
		t.Errorf("the rotated key is refused (%v) during its overlap", got)
	}

	// The limit: 3 active org keys (the operator's, Rolling and its
	// successor); the next create is 409 and says why.
	a = c.do("POST", "/v1/orgs/acme-eu/keys", eu, map[string]any{"name": "One too many"})
	if a.Status != 409 || a.json(t)["error"] != "limit_reached" || !strings.Contains(fmt.Sprint(a.json(t)["message"]), "3") {
		t.Errorf("create at the limit = %d %s, want 409 limit_reached naming the limit", a.Status, a.Body)
	}

	// Tenant-level keys, by the tenant admin.
	a = c.do("POST", "/v1/tenants/acme/keys", bearer(w.TenantAdmin), map[string]any{"name": "Tenant sync", "groups": []string{"support"}})
	if a.Status != 201 {
		t.Fatalf("tenant-level create = %d: %s", a.Status, a.Body)
	}
	tid, tsecret := created(t, a)
	if org, ok := a.json(t)["org"]; ok && org != "" {
		t.Errorf("a tenant-level key has org %v", org)
	}
	waitCheck(t, authz, tsecret, codes.OK, 3*time.Second) // a tenant-level key reaches acme-eu
	if a := c.do("DELETE", "/v1/tenants/acme/keys/"+tid, bearer(w.TenantAdmin), nil); a.Status != 200 {
		t.Errorf("tenant-level revoke = %d: %s", a.Status, a.Body)
	}
	if a := c.do("DELETE", "/v1/tenants/acme/keys/"+newID, bearer(w.TenantAdmin), nil); a.Status != 404 {
		t.Errorf("revoking an org key as a tenant-level key = %d, want 404: %s", a.Status, a.Body)
	}

	// The policy the API wrote compiles, and holds what it answered.
	snap, err := policy.Load([]policy.Input{{Name: path, Data: must(os.ReadFile(path))}}, policy.Options{})
	if err != nil {
		t.Fatalf("the policy the API wrote does not load: %v", err)
	}
	ids := []string{}
	for _, p := range snap.APIKeys() {
		ids = append(ids, p.ID)
	}
	for _, want := range []string{id, oldID, newID, tid} {
		if !slices.Contains(ids, want) {
			t.Errorf("key %s is not in the policy file", want)
		}
	}

	// One audit line per change, naming ids, never a secret.
	out := k.Out.String()
	for _, want := range []string{`"action":"key.create"`, `"action":"key.revoke"`, `"action":"key.rotate"`, `"result":"limit_reached"`, `"actor_user":"olivia"`, `"target":"` + id + `"`} {
		if !strings.Contains(out, want) {
			t.Errorf("the audit log has no %s", want)
		}
	}
	_, metrics := k.Admin("/metrics")
	for _, want := range []string{`keygate_management_requests_total{action="key.create",result="ok"}`, `keygate_management_requests_total{action="key.create",result="limit_reached"} 1`, `keygate_management_requests_total{action="key.list",result="unauthenticated"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics has no %s", want)
		}
	}
	for _, op := range []string{"listOrgKeys", "createOrgKey", "revokeOrgKey", "rotateOrgKey", "listTenantKeys", "createTenantKey", "revokeTenantKey"} {
		if !c.seen[op] {
			t.Errorf("no call answered %s: the suite must cover every key operation", op)
		}
	}
}

// TestCookieCallers: the page's callers sign in with a session token, which
// becomes an HttpOnly cookie; a change authenticated by that cookie alone
// must carry X-Requested-With: keygate.
func TestCookieCallers(t *testing.T) {
	w := newWorld(t, 5, 0)
	k, _ := serveAPI(t, w)
	c := newClient(t, k.APIAddr)

	if a := c.do("POST", "/v1/signin", auth{"X-Requested-With": "keygate"}, map[string]string{"session": "kg_nope_x"}); a.Status != 401 {
		t.Errorf("sign-in with a bad token = %d, want 401: %s", a.Status, a.Body)
	}
	if a := c.do("POST", "/v1/signin", nil, map[string]string{"session": w.EUAdmin.Raw}); a.Status != 403 {
		t.Errorf("sign-in without X-Requested-With = %d, want 403: %s", a.Status, a.Body)
	}
	a := c.do("POST", "/v1/signin", auth{"X-Requested-With": "keygate"}, map[string]string{"session": w.EUAdmin.Raw})
	if a.Status != 204 {
		t.Fatalf("sign-in = %d: %s", a.Status, a.Body)
	}
	setCookie := a.Header.Get("Set-Cookie")
	for _, want := range []string{"kg_session=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(setCookie, want) {
			t.Errorf("Set-Cookie %q lacks %s", setCookie, want)
		}
	}
	cookie := auth{"Cookie": "kg_session=" + w.EUAdmin.Raw}

	me := c.do("GET", "/v1/me", cookie, nil)
	if me.Status != 200 {
		t.Fatalf("GET /v1/me = %d: %s", me.Status, me.Body)
	}
	if m := me.json(t); m["user"] != "olivia" || m["org"] != "acme-eu" || m["key_admin"] != true || m["limit"] != 5.0 {
		t.Errorf("/v1/me = %v", m)
	}
	if m := c.do("GET", "/v1/me", bearer(w.EUPlain), nil).json(t); m["key_admin"] != false {
		t.Errorf("/v1/me for a plain key = %v, want key_admin false", m)
	}

	body := map[string]any{"name": "From the page"}
	if a := c.do("POST", "/v1/orgs/acme-eu/keys", cookie, body); a.Status != 403 || !strings.Contains(string(a.Body), "X-Requested-With") {
		t.Errorf("a cookie-only create without X-Requested-With = %d %s, want 403 naming the header", a.Status, a.Body)
	}
	withCSRF := auth{"Cookie": cookie["Cookie"], "X-Requested-With": "keygate"}
	a = c.do("POST", "/v1/orgs/acme-eu/keys", withCSRF, body)
	if a.Status != 201 {
		t.Fatalf("a cookie create with X-Requested-With = %d: %s", a.Status, a.Body)
	}
	id, _ := created(t, a)
	if a := c.do("DELETE", "/v1/orgs/acme-eu/keys/"+id, cookie, nil); a.Status != 403 {
		t.Errorf("a cookie-only revoke without X-Requested-With = %d, want 403", a.Status)
	}
	if a := c.do("GET", "/v1/orgs/acme-eu/keys", cookie, nil); a.Status != 200 {
		t.Errorf("a cookie-only read = %d, want 200 (reads need no CSRF header)", a.Status)
	}
	if a := c.do("POST", "/v1/signout", nil, nil); a.Status != 204 || !strings.Contains(a.Header.Get("Set-Cookie"), "Max-Age=0") {
		t.Errorf("sign-out = %d, Set-Cookie %q; want 204 clearing the cookie", a.Status, a.Header.Get("Set-Cookie"))
	}
	if a := c.do("GET", "/v1/nothing", nil, nil); a.Status != 404 {
		t.Errorf("GET /v1/nothing = %d, want 404", a.Status)
	}
}

// TestConcurrentCreatesTwoProcesses: 20 creates at once for one
// organization, split over two keygate processes serving one policy file.
// Exactly the free slots succeed, the rest get 409, and the file compiles
// with every key the API answered 201 for.
func TestConcurrentCreatesTwoProcesses(t *testing.T) {
	const maxKeys, existing, creates = 5, 1, 20
	w := newWorld(t, maxKeys, existing)
	path := writePolicy(t, w)
	var clients []*client
	for i := 0; i < 2; i++ {
		k := harness.Serve(t, harness.Options{Args: []string{"--policy", path}, API: true, Name: fmt.Sprintf("keygate-%d", i)})
		clients = append(clients, newClient(t, k.APIAddr))
	}
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[int]int{}
		made   []string
	)
	start := make(chan struct{})
	for i := 0; i < creates; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			a := clients[i%2].do("POST", "/v1/orgs/acme-eu/keys", bearer(w.TenantAdmin), map[string]any{"name": fmt.Sprintf("parallel %d", i)})
			mu.Lock()
			defer mu.Unlock()
			counts[a.Status]++
			if a.Status == 201 {
				id, _ := created(t, a)
				made = append(made, id)
			} else if a.Status != 409 || !strings.Contains(string(a.Body), "limit_reached") {
				t.Errorf("create = %d %s, want 201 or 409 limit_reached", a.Status, a.Body)
			}
		}()
	}
	close(start)
	wg.Wait()
	if counts[201] != maxKeys-existing || counts[409] != creates-(maxKeys-existing) {
		t.Fatalf("answers %v, want %d created and %d limit_reached", counts, maxKeys-existing, creates-(maxKeys-existing))
	}
	data := must(os.ReadFile(path))
	snap, err := policy.Load([]policy.Input{{Name: path, Data: data}}, policy.Options{})
	if err != nil {
		t.Fatalf("the policy after concurrent creates does not load: %v", err)
	}
	active := 0
	for _, p := range snap.APIKeys() {
		if p.Org == "acme-eu" && !p.Disabled {
			active++
		}
	}
	if active != maxKeys {
		t.Errorf("%d active acme-eu keys in the file, want %d", active, maxKeys)
	}
	for _, id := range made {
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(id) + `\b`).Match(data) {
			t.Errorf("key %s was answered 201 but is not in the file (a lost update)", id)
		}
	}
	recordFigure(t, fmt.Sprintf("file store, two processes: %d parallel creates with %d free slots: %d created, %d limit_reached", creates, maxKeys-existing, counts[201], counts[409]))
}

// recordFigure keeps a measured figure for the closing note and CI's log.
func recordFigure(t *testing.T, line string) {
	t.Helper()
	t.Log(line)
	if err := os.MkdirAll("../.cache", 0o755); err != nil {
		return
	}
	f, err := os.OpenFile("../.cache/api-results.txt", os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s\n", time.Now().UTC().Format(time.RFC3339), line)
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
