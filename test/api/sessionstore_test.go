package api

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/test/internal/harness"
)

// The server-side session suite: keygate processes share one real
// redis-server (--session-store). The API process makes opaque sessions in
// it; another replica, which never saw them made, decides them over gRPC;
// revocations reach it through Redis pub/sub. Every answer of the API is
// checked against the OpenAPI document, and Redis' whole keyspace is
// scanned for the tokens (never stored, only their digests).

// storePolicy is the sessions suite's policy plus an endpoint that takes
// API keys, to show they keep working when Redis does not.
var storePolicy = harness.PolicyTemplate("p", `# written by test/api (server-side sessions)
version: 1
groups: [{name: sales}, {name: support}, {name: sign-in}, {name: ops}]
tenants:
  - {id: acme, orgs: [acme-eu, acme-us]}
  - {id: globex, orgs: [globex-main]}
management:
  session_issuer_groups: [sign-in]
  assignable_groups: [sales, support]
  max_session_ttl: 12h
endpoints:
  - name: sales-read
    match: {methods: [GET], path: "/orgs/{org}/sales/**"}
    require: [session]
    groups: [sales]
    org: {from: path, name: org}
  - name: reports
    match: {methods: [GET], path: "/reports/**"}
    require: [api_key]
    groups: [sales]
api_keys:
  - {id: {{.SignIn.ID}}, hash: "{{h .SignIn.Raw}}", tenant: acme, user: login-service, groups: [sign-in]}
  - {id: {{.EUSignIn.ID}}, hash: "{{h .EUSignIn.Raw}}", tenant: acme, org: acme-eu, user: eu-login, groups: [sign-in]}
  - {id: {{.Plain.ID}}, hash: "{{h .Plain.Raw}}", tenant: acme, user: bot, groups: [sales]}
  - {id: {{.GlobexSignIn.ID}}, hash: "{{h .GlobexSignIn.Raw}}", tenant: globex, user: gx-login, groups: [sign-in]}
`)

func storeWorld(t *testing.T) (sessionWorld, string) {
	t.Helper()
	w := sessionWorld{
		SignIn:       newCred(t, "acme", "", "login-service", "sign-in"),
		EUSignIn:     newCred(t, "acme", "acme-eu", "eu-login", "sign-in"),
		Plain:        newCred(t, "acme", "", "bot", "sales"),
		GlobexSignIn: newCred(t, "globex", "", "gx-login", "sign-in"),
	}
	return w, harness.WritePolicy(t, "", storePolicy, w)
}

// replica runs keygate with the session store; api turns the management
// API on (the process that makes sessions).
func replica(t *testing.T, name, path string, r *harness.RedisServer, api bool, args ...string) *harness.Keygate {
	t.Helper()
	return harness.Serve(t, harness.Options{Name: name, API: api,
		Args: append([]string{"--policy", path, "--session-store", r.URL(), "--decision-log", "denied"}, args...)})
}

// newStoredSession makes a session through the API and registers its token.
func newStoredSession(t testing.TB, c *client, issuer cred, body map[string]any) (tok, id string) {
	t.Helper()
	a := c.do("POST", "/v1/sessions", bearer(issuer), body)
	if a.Status != 201 {
		t.Fatalf("POST /v1/sessions %v: %d %s", body, a.Status, a.Body)
	}
	m := a.json(t)
	tok, id = m["session"].(string), m["id"].(string)
	harness.RegisterSecret(tok, "server-side session "+id)
	return tok, id
}

// checkResponse is Check for GET /orgs/ORG/sales/q1 with a session, or for
// GET /reports/q1 with an API key when org is "".
func checkResponse(t testing.TB, c authv3.AuthorizationClient, org, session, key string) *authv3.CheckResponse {
	t.Helper()
	req := envoytest.CheckRequest(key)
	h := req.Attributes.Request.Http
	h.Path = "/reports/q1"
	if org != "" {
		h.Path = "/orgs/" + org + "/sales/q1"
	}
	h.Headers[":path"] = h.Path
	if key == "" {
		delete(h.Headers, "authorization")
	}
	if session != "" {
		h.Headers["session"] = session
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, req)
	if err != nil {
		t.Fatalf("Check: %v (a request that reaches ext_authz is always decided)", err)
	}
	return resp
}

// waitRefused polls Check with tok until it is refused 401 and returns how
// long that took; it fails past within.
func waitRefused(t testing.TB, c authv3.AuthorizationClient, org, tok string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		code, _ := sessionCheck(t, c, org, tok)
		if code == codes.Unauthenticated {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("a revoked session still answers %v after %v", code, within)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// redisKeyspace is every key in Redis with its value (strings, set
// members, hash fields), as one text, read with SCAN.
func redisKeyspace(t testing.TB, r *harness.RedisServer) (keys []string, all string) {
	t.Helper()
	rc := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rc.Close()
	ctx := context.Background()
	var b strings.Builder
	iter := rc.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		keys = append(keys, k)
		fmt.Fprintf(&b, "%s = ", k)
		switch typ := rc.Type(ctx, k).Val(); typ {
		case "string":
			b.WriteString(rc.Get(ctx, k).Val())
		case "set":
			b.WriteString(strings.Join(rc.SMembers(ctx, k).Val(), " "))
		case "hash":
			fmt.Fprint(&b, rc.HGetAll(ctx, k).Val())
		default:
			fmt.Fprintf(&b, "(%s)", typ)
		}
		b.WriteByte('\n')
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	sort.Strings(keys)
	return keys, b.String()
}

// assertNoTokens fails if Redis holds any token, or the secret part of one.
func assertNoTokens(t testing.TB, r *harness.RedisServer, toks []string) {
	t.Helper()
	keys, all := redisKeyspace(t, r)
	for _, tok := range toks {
		_, secret, _ := strings.Cut(tok[len(apikey.Prefix):], "_")
		if strings.Contains(all, tok) || strings.Contains(all, secret[:16]) {
			t.Errorf("Redis holds a session token (or its secret) among %d keys", len(keys))
		}
	}
}

// TestSessionStoreReplicas: a session made on the API process is decided
// on another replica that never saw it made; revoked on the first, the
// second refuses it within 1 s however warm its cache, measured.
func TestSessionStoreReplicas(t *testing.T) {
	rs := harness.Redis(t)
	w, path := storeWorld(t)
	a := replica(t, "keygate-a", path, rs, true)
	b := replica(t, "keygate-b", path, rs, false)
	c := newClient(t, a.APIAddr)
	ga, gb := dial(t, a.GRPCAddr), dial(t, b.GRPCAddr)

	tok, id := newStoredSession(t, c, w.SignIn, map[string]any{"user": "alice", "org": "acme-eu", "groups": []string{"sales"}, "ttl": "8h"})
	if gotID, ours, valid := apikey.Check(tok); !ours || !valid || gotID != id || strings.Contains(tok, ".") {
		t.Fatalf("the token is not an opaque kg_ token of id %s", id)
	}
	for name, g := range map[string]authv3.AuthorizationClient{"keygate-a": ga, "keygate-b": gb} {
		code, ident := sessionCheck(t, g, "acme-eu", tok)
		if code != codes.OK || ident["x-keygate-user"] != "alice" || ident["x-keygate-tenant"] != "acme" || ident["x-keygate-org"] != "acme-eu" ||
			ident["x-keygate-groups"] != "sales" || ident["x-keygate-session-id"] != id || ident["x-keygate-auth"] != "session" {
			t.Fatalf("%s: Check with the stored session: %v %v", name, code, ident)
		}
		if code, _ := sessionCheck(t, g, "acme-us", tok); code != codes.PermissionDenied {
			t.Errorf("%s: the session is acme-eu's; acme-us answered %v", name, code)
		}
	}

	// Listing: the caller's tenant, and its own organization when
	// organization-level.
	other, _ := newStoredSession(t, c, w.SignIn, map[string]any{"user": "alice", "org": "acme-us", "groups": []string{"support"}})
	_ = other
	for _, tc := range []struct {
		name   string
		auth   auth
		status int
		ids    int
	}{
		{"tenant-level issuer", bearer(w.SignIn), 200, 2},
		{"org-level issuer: its organization's only", bearer(w.EUSignIn), 200, 1},
		{"another tenant's issuer: its own alice, who has none", bearer(w.GlobexSignIn), 200, 0},
		{"not an issuer", bearer(w.Plain), 403, 0},
		{"no credential", nil, 401, 0},
		{"the session itself is no issuer", auth{"Session": tok}, 403, 0},
	} {
		t.Run("list/"+tc.name, func(t *testing.T) {
			l := c.do("GET", "/v1/users/alice/sessions", tc.auth, nil)
			if l.Status != tc.status {
				t.Fatalf("GET /v1/users/alice/sessions: %d %s, want %d", l.Status, l.Body, tc.status)
			}
			if tc.status == 200 {
				if n := len(l.json(t)["sessions"].([]any)); n != tc.ids {
					t.Errorf("%d sessions listed, want %d: %s", n, tc.ids, l.Body)
				}
			}
		})
	}
	l := c.do("GET", "/v1/users/alice/sessions", bearer(w.EUSignIn), nil).json(t)
	if s := l["sessions"].([]any)[0].(map[string]any); s["id"] != id || s["org"] != "acme-eu" || fmt.Sprint(s["groups"]) != "[sales]" || s["created_at"] == nil || s["expires_at"] == nil {
		t.Errorf("listed %v, want id %s, org acme-eu, groups [sales], created_at, expires_at", s, id)
	}
	if a := c.do("GET", "/v1/users/a,b/sessions", bearer(w.SignIn), nil); a.Status != 400 {
		t.Errorf("a user with a comma: %d %s", a.Status, a.Body)
	}

	// Revoking someone else's: another tenant's or another organization's
	// session is not found, and keeps working.
	for _, issuer := range []cred{w.GlobexSignIn} {
		if d := c.do("DELETE", "/v1/sessions/"+id, bearer(issuer), nil); d.Status != 404 {
			t.Errorf("revoke by %s: %d %s, want 404", issuer.User, d.Status, d.Body)
		}
	}
	usTok, usID := newStoredSession(t, c, w.SignIn, map[string]any{"user": "carol", "org": "acme-us", "groups": []string{"sales"}})
	if d := c.do("DELETE", "/v1/sessions/"+usID, bearer(w.EUSignIn), nil); d.Status != 404 {
		t.Errorf("an acme-eu issuer revoking an acme-us session: %d %s, want 404", d.Status, d.Body)
	}
	if code, _ := sessionCheck(t, gb, "acme-us", usTok); code != codes.OK {
		t.Errorf("a session another caller failed to revoke: %v", code)
	}
	if d := c.do("DELETE", "/v1/sessions/kg_nothere1", bearer(w.SignIn), nil); d.Status != 404 {
		t.Errorf("an unknown stored session: %d %s, want 404", d.Status, d.Body)
	}

	// Revocation across replicas, with B's cache warm: rounds of create,
	// use on B, revoke on A, and poll B until it refuses.
	const rounds = 20
	var lat []time.Duration
	for i := range rounds {
		tok, id := tok, id
		if i > 0 {
			tok, id = newStoredSession(t, c, w.EUSignIn, map[string]any{"user": fmt.Sprintf("user-%d", i), "groups": []string{"sales"}})
		}
		for range 5 {
			if code, _ := sessionCheck(t, gb, "acme-eu", tok); code != codes.OK {
				t.Fatalf("round %d: B refuses a live session: %v", i, code)
			}
		}
		d := c.do("DELETE", "/v1/sessions/"+id, bearer(w.EUSignIn), nil)
		if d.Status != 200 || d.json(t)["state"] != "revoked" || d.json(t)["id"] != id {
			t.Fatalf("DELETE /v1/sessions/%s: %d %s", id, d.Status, d.Body)
		}
		lat = append(lat, waitRefused(t, gb, "acme-eu", tok, time.Second))
		if code, _ := sessionCheck(t, ga, "acme-eu", tok); code != codes.Unauthenticated {
			t.Errorf("round %d: A answers %v for a session it revoked", i, code)
		}
	}
	slices.Sort(lat)
	recordFigure(t, fmt.Sprintf("server-side sessions, two processes sharing one redis-server: a revoked session refused on the other replica (warm cache) %v median, %v max over %d revocations, after DELETE /v1/sessions/{id} returned",
		lat[len(lat)/2].Round(10*time.Microsecond), lat[len(lat)-1].Round(10*time.Microsecond), rounds))
	if d := c.do("DELETE", "/v1/sessions/"+id, bearer(w.SignIn), nil); d.Status != 404 {
		t.Errorf("revoking a revoked stored session: %d %s, want 404", d.Status, d.Body)
	}

	// Audit lines name the session, never the token; metrics count.
	if _, ok := a.Out.Line(`"msg":"audit"`, `"action":"session.create"`, `"target":"`+id+`"`, `"result":"ok"`); !ok {
		t.Errorf("no audit line for the creation of %s", id)
	}
	if _, ok := a.Out.Line(`"msg":"audit"`, `"action":"session.revoke"`, `"target":"`+id+`"`, `"result":"ok"`); !ok {
		t.Errorf("no audit line for the revocation of %s", id)
	}
	if _, ok := a.Out.Line(`"msg":"audit"`, `"action":"session.revoke"`, `"target":"`+usID+`"`, `"result":"not_found"`); !ok {
		t.Errorf("no audit line for the refused revocation of %s", usID)
	}
	_, metrics := b.Admin("/metrics")
	for _, want := range []string{`keygate_session_store_up 1`, `keygate_session_store_subscribed 1`, `keygate_session_store_requests_total{op="lookup",result="ok"}`,
		`keygate_session_store_invalidations_total 20`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("B's /metrics has no %s", want)
		}
	}
	assertNoTokens(t, rs, []string{tok, usTok})
	for _, op := range []string{"createSession", "revokeSession", "listUserSessions"} {
		if !c.seen[op] {
			t.Errorf("no call answered %s", op)
		}
	}
}

// TestSignOutEverywhere: 100 sessions of one user over two organizations;
// an org-level issuer signs the user out of its organization, a
// tenant-level one out of the rest; every replica refuses all of them,
// another tenant's user of the same name keeps hers, and Redis keeps
// nothing of the user.
func TestSignOutEverywhere(t *testing.T) {
	rs := harness.Redis(t)
	w, path := storeWorld(t)
	a := replica(t, "keygate-a", path, rs, true)
	b := replica(t, "keygate-b", path, rs, false)
	c := newClient(t, a.APIAddr)
	gb := dial(t, b.GRPCAddr)

	type made struct{ tok, org string }
	var mu sync.Mutex
	var toks []made
	var wg sync.WaitGroup
	for worker := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := worker; i < 100; i += 4 {
				org := "acme-eu"
				if i%5 >= 3 {
					org = "acme-us" // 40 of 100
				}
				tok, _ := newStoredSession(t, c, w.SignIn, map[string]any{"user": "bob", "org": org, "groups": []string{"sales"}})
				mu.Lock()
				toks = append(toks, made{tok, org})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	gxTok, _ := newStoredSession(t, c, w.GlobexSignIn, map[string]any{"user": "bob", "org": "globex-main", "groups": []string{"sales"}})
	if n := len(c.do("GET", "/v1/users/bob/sessions", bearer(w.SignIn), nil).json(t)["sessions"].([]any)); n != 100 {
		t.Fatalf("%d sessions of bob listed, want 100", n)
	}
	for _, m := range toks[:10] {
		if code, _ := sessionCheck(t, gb, m.org, m.tok); code != codes.OK {
			t.Fatalf("B refuses a live session of bob: %v", code)
		}
	}

	eu := c.do("DELETE", "/v1/users/bob/sessions", bearer(w.EUSignIn), nil)
	if eu.Status != 200 || len(eu.json(t)["revoked"].([]any)) != 60 {
		t.Fatalf("acme-eu's issuer signs bob out: %d %s, want 60 revoked", eu.Status, eu.Body)
	}
	if n := len(c.do("GET", "/v1/users/bob/sessions", bearer(w.SignIn), nil).json(t)["sessions"].([]any)); n != 40 {
		t.Errorf("%d sessions left, want acme-us' 40", n)
	}
	start := time.Now()
	all := c.do("DELETE", "/v1/users/bob/sessions", bearer(w.SignIn), nil)
	if all.Status != 200 || len(all.json(t)["revoked"].([]any)) != 40 || all.json(t)["user"] != "bob" || all.json(t)["tenant"] != "acme" {
		t.Fatalf("the tenant's issuer signs bob out everywhere: %d %s, want 40 revoked", all.Status, all.Body)
	}
	if l := c.do("GET", "/v1/users/bob/sessions", bearer(w.SignIn), nil); l.Status != 200 || len(l.json(t)["sessions"].([]any)) != 0 {
		t.Errorf("after sign-out everywhere: %d %s, want no sessions", l.Status, l.Body)
	}
	var slowest time.Duration
	for _, m := range toks {
		slowest = max(slowest, waitRefused(t, gb, m.org, m.tok, time.Second))
	}
	t.Logf("100 sessions signed out; the last refused on the other replica %v after the call returned (%v checking them all)",
		slowest.Round(time.Microsecond), time.Since(start).Round(time.Millisecond))
	if code, _ := sessionCheck(t, gb, "globex-main", gxTok); code != codes.OK {
		t.Errorf("globex's bob was signed out too: %v", code)
	}
	if _, ok := a.Out.Line(`"msg":"audit"`, `"action":"session.revoke"`, `"target":"user:bob"`, `"result":"ok"`, `"actor_key_id":"`+w.SignIn.ID+`"`); !ok {
		t.Errorf("no audit line for signing bob out")
	}
	keys, _ := redisKeyspace(t, rs)
	if len(keys) != 3 || !slices.Contains(keys, "keygate:user-sessions:globex:bob") {
		t.Errorf("Redis keys after sign-out everywhere: %v; want only globex's bob's session, its id and index", keys)
	}
	var all100 []string
	for _, m := range toks {
		all100 = append(all100, m.tok)
	}
	assertNoTokens(t, rs, append(all100, gxTok))
	if !c.seen["signOutUser"] {
		t.Error("no call answered signOutUser")
	}
}

// TestSessionStoreOutage: Redis killed mid-run. A session only it can
// verify is denied 503 PERMISSION_DENIED (session_store_unavailable),
// never allowed and never another gRPC code; API keys and signed
// sessions keep working; /readyz?verbose and the metrics say what is
// wrong; with Redis back, everything recovers by itself.
func TestSessionStoreOutage(t *testing.T) {
	rs := harness.Redis(t)
	w, path := storeWorld(t)
	keyFile := filepath.Join(t.TempDir(), "session.key")
	if r := harness.Run(t, 30*time.Second, "sessions", "keygen", "--out", keyFile); r.Code != 0 {
		t.Fatalf("keygen: %s", r.Out)
	}
	a := replica(t, "keygate-a", path, rs, true)
	b := harness.Serve(t, harness.Options{Name: "keygate-b", HTTP: true, Args: []string{"--policy", path, "--session-store", rs.URL(),
		"--decision-log", "denied", "--session-verify-key", keyFile + ".pub"}})
	c := newClient(t, a.APIAddr)
	gb := dial(t, b.GRPCAddr)
	signed := issueSigned(t, keyFile, "--user", "sam", "--tenant", "acme", "--org", "acme-eu", "--groups", "sales")

	tok, _ := newStoredSession(t, c, w.SignIn, map[string]any{"user": "alice", "org": "acme-eu", "groups": []string{"sales"}})
	if code, _ := sessionCheck(t, gb, "acme-eu", tok); code != codes.OK {
		t.Fatalf("before the outage: %v", code)
	}

	rs.Kill()
	killed := time.Now()
	var resp *authv3.CheckResponse
	for {
		resp = checkResponse(t, gb, "acme-eu", tok, "")
		if codes.Code(resp.GetStatus().GetCode()) != codes.OK || time.Since(killed) > 5*time.Second {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("the warm stored session was denied %v after Redis was killed", time.Since(killed).Round(time.Millisecond))
	denied := resp.GetDeniedResponse()
	var body struct{ Error, Message, DecisionID string }
	_ = json.Unmarshal([]byte(denied.GetBody()), &body)
	if codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied || denied.GetStatus().GetCode() != 503 || body.Error != "unavailable" {
		t.Fatalf("with Redis down, the stored session: gRPC %v, HTTP %d, body %s; want PERMISSION_DENIED, 503, error unavailable",
			codes.Code(resp.GetStatus().GetCode()), denied.GetStatus().GetCode(), denied.GetBody())
	}
	for range 20 { // never allowed, never another code, however often asked
		if code := codes.Code(checkResponse(t, gb, "acme-eu", tok, "").GetStatus().GetCode()); code != codes.PermissionDenied {
			t.Fatalf("with Redis down the stored session answered %v", code)
		}
	}
	// The same over ext_authz HTTP: a 503 (Envoy's http_service denies
	// anything but 200).
	hreq, _ := http.NewRequest("GET", "http://"+b.HTTPAddr+"/orgs/acme-eu/sales/q1", nil)
	hreq.Header.Set("Session", tok)
	if hresp, err := http.DefaultClient.Do(hreq); err != nil {
		t.Errorf("ext_authz HTTP: %v", err)
	} else {
		hbody, _ := io.ReadAll(hresp.Body)
		hresp.Body.Close()
		if hresp.StatusCode != 503 || !strings.Contains(string(hbody), `"error":"unavailable"`) {
			t.Errorf("ext_authz HTTP with Redis down: %d %s, want 503 unavailable", hresp.StatusCode, hbody)
		}
	}
	if _, err := b.Out.WaitLine(5*time.Second, `"msg":"decision"`, `"reason":"session_store_unavailable"`); err != nil {
		t.Errorf("B's decision log: %v", err)
	}
	if code := codes.Code(checkResponse(t, gb, "", "", w.Plain.Raw).GetStatus().GetCode()); code != codes.OK {
		t.Errorf("an API key with Redis down: %v, want OK", code)
	}
	if code, ident := sessionCheck(t, gb, "acme-eu", signed); code != codes.OK || ident["x-keygate-user"] != "sam" {
		t.Errorf("a signed session with Redis down: %v %v, want OK as sam", code, ident)
	}
	code, verbose := b.Admin("/readyz?verbose")
	var ready struct {
		Ready      bool `json:"ready"`
		Components struct {
			SessionStore struct {
				Up         bool   `json:"up"`
				Subscribed bool   `json:"subscribed"`
				LastError  string `json:"last_error"`
			} `json:"session_store"`
		} `json:"components"`
	}
	_ = json.Unmarshal([]byte(verbose), &ready)
	if ss := ready.Components.SessionStore; code != 200 || !ready.Ready || ss.Up || ss.Subscribed || !strings.Contains(ss.LastError, rs.Addr) {
		t.Errorf("/readyz?verbose with Redis down: %d %s; want ready (keys still work), session_store down with its error", code, verbose)
	}
	if _, metrics := b.Admin("/metrics"); !strings.Contains(metrics, "keygate_session_store_up 0") ||
		!strings.Contains(metrics, `keygate_decisions_total{endpoint="sales-read",reason="session_store_unavailable",result="deny"}`) {
		t.Errorf("B's metrics do not show the outage")
	}
	if p := c.do("POST", "/v1/sessions", bearer(w.SignIn), map[string]any{"user": "dave"}); p.Status != 503 || p.json(t)["error"] != "unavailable" {
		t.Errorf("POST /v1/sessions with Redis down: %d %s, want 503 unavailable", p.Status, p.Body)
	}
	if l := c.do("GET", "/v1/users/alice/sessions", bearer(w.SignIn), nil); l.Status != 503 {
		t.Errorf("listing with Redis down: %d %s, want 503", l.Status, l.Body)
	}
	if l := c.do("GET", "/v1/users/alice/sessions", auth{"Session": tok}, nil); l.Status != 503 || l.json(t)["decision_id"] == nil {
		t.Errorf("a caller authenticated by a stored session with Redis down: %d %s, want the 503 denial", l.Status, l.Body)
	}

	rs.Restart() // empty: this Redis keeps nothing on disk
	back := time.Now()
	for {
		_, v := b.Admin("/readyz?verbose")
		_ = json.Unmarshal([]byte(v), &ready)
		if ss := ready.Components.SessionStore; ss.Up && ss.Subscribed {
			break
		}
		if time.Since(back) > 5*time.Second {
			t.Fatalf("B has not recovered 5 s after Redis came back: %s", v)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("B subscribed again %v after Redis came back", time.Since(back).Round(time.Millisecond))
	fresh, freshID := newStoredSession(t, c, w.SignIn, map[string]any{"user": "erin", "org": "acme-eu", "groups": []string{"sales"}})
	if code, ident := sessionCheck(t, gb, "acme-eu", fresh); code != codes.OK || ident["x-keygate-session-id"] != freshID {
		t.Errorf("a session made after recovery, on B: %v %v", code, ident)
	}
	if code, _ := sessionCheck(t, gb, "acme-eu", tok); code != codes.Unauthenticated {
		t.Errorf("a session the restarted (empty) Redis lost: %v, want UNAUTHENTICATED", code)
	}
	if _, ok := b.Out.Line(`"msg":"session store reachable again"`); !ok {
		t.Errorf("B did not log the recovery")
	}
	assertNoTokens(t, rs, []string{fresh})
}

// issueSigned mints a signed session with keygate sessions issue, outside
// harness.Run: its standard output is where the token is meant to appear.
func issueSigned(t *testing.T, keyFile string, args ...string) string {
	t.Helper()
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"sessions", "issue", "--signing-key", keyFile}, args...)...)
	out, err := cmd.Output()
	tok := strings.TrimSpace(string(out))
	if err != nil || strings.Count(tok, ".") != 2 {
		t.Fatalf("sessions issue: %v", err)
	}
	harness.RegisterSecret(tok, "signed session minted by keygate sessions issue")
	return tok
}
