package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
)

// hardeningAuthzEndpoints: a DELETE-only admin rule in front of an
// anonymous catch-all (method case), shadow endpoints with org rules and an
// endpoint without one (verified identity only).
const hardeningAuthzEndpoints = `endpoints:
  - name: items-admin
    match: {methods: [DELETE], path: "/items/**"}
    require: [api_key]
    groups: [admin]
  - name: items
    match: {path: "/items/**"}
    anonymous: true
  - name: shadow-orgs
    match: {path: "/sorgs/{org}/**"}
    require: [api_key]
    groups: [admin]
    org: {from: path, name: org}
    mode: shadow
  - name: reports
    match: {path: "/reports/**"}
    require: [api_key]
    org: {from: header, name: x-org-id}
  - name: docs
    match: {path: "/docs/**"}
    anonymous: true
  - name: whoami
    match: {path: /whoami}
`

// TestHardeningAuthz covers issue 10's items 3, 5 and 6 through both
// transports, with the shared checks of runAnswerCases (among them: the
// gRPC dynamic metadata carries the same identity as the headers).
func TestHardeningAuthz(t *testing.T) {
	t.Parallel()
	kTenant := newKey(t, "acme", "", "api-bot", "sales")
	kEU := newKey(t, "acme", "acme-eu", "eu-bot", "sales")
	kAdmin := newKey(t, "acme", "", "root-bot", "admin")
	sUS := newKey(t, "acme", "acme-us", "carol", "sales")
	p := startKeygate(t, newPolicyFile(t, renderPolicy(hardeningAuthzEndpoints, []cred{kTenant, kEU, kAdmin}, []cred{sUS})))
	invalid := `Bearer realm="` + testRealm + `", error="invalid_token"`

	cases := []answerCase{
		// Item 3: a method is matched whatever its case.
		{name: "DELETE meets the admin rule", method: "DELETE", path: "/items/x", headers: bearer(kTenant.Raw),
			status: 403, errorCode: "forbidden"},
		{name: "delete meets the admin rule too", method: "delete", path: "/items/x", headers: bearer(kTenant.Raw),
			status: 403, errorCode: "forbidden"},
		{name: "Delete meets the admin rule too", method: "Delete", path: "/items/x", headers: bearer(kTenant.Raw),
			status: 403, errorCode: "forbidden"},
		{name: "delete by an admin", method: "delete", path: "/items/x", headers: bearer(kAdmin.Raw), status: 200,
			identity: ident("root-bot", "acme", "", kAdmin.ID, "", "admin", "api_key", "items-admin"), remove: []string{"authorization"}},
		{name: "get is the catch-all's", method: "get", path: "/items/x", status: 200,
			identity: ident("", "", "", "", "", "", "anonymous", "items")},
		{name: "a method that is not a token", method: "DELETE /items/x HTTP/1.1\r\nX:", path: "/items/x", grpcOnly: true,
			status: 403, errorCode: "forbidden"},

		// Item 5: every form of a credential header is read or refused,
		// and stripped.
		{name: "bearer and TAB next to another key", path: "/whoami",
			headers: hdrs("authorization", "Bearer\t"+kEU.Raw, "x-api-key", kTenant.Raw),
			status:  401, challenge: invalid, errorCode: "unauthorized", sameBody: "invalid"},
		{name: "bearer and TAB alone", path: "/whoami", headers: hdrs("authorization", "Bearer\t"+kTenant.Raw), status: 200,
			identity: ident("api-bot", "acme", "", kTenant.ID, "", "sales", "api_key", "whoami"), remove: []string{"authorization"}},
		{name: "bearer without a token next to a valid key", path: "/whoami",
			headers: hdrs("authorization", "Bearer", "x-api-key", kTenant.Raw),
			status:  401, challenge: invalid, errorCode: "unauthorized", sameBody: "invalid"},
		{name: "bearer glued to the key", path: "/whoami", headers: hdrs("authorization", "Bearer"+kTenant.Raw),
			status: 401, challenge: invalid, errorCode: "unauthorized", sameBody: "invalid"},
		{name: "bearer colon", path: "/whoami", headers: hdrs("authorization", "bearer:"+kTenant.Raw),
			status: 401, challenge: invalid, errorCode: "unauthorized", sameBody: "invalid"},
		{name: "basic is the upstream's and passes", path: "/whoami",
			headers: hdrs("authorization", "Basic dXNlcjpwYXNz", "x-api-key", kTenant.Raw), status: 200,
			identity: ident("api-bot", "acme", "", kTenant.ID, "", "sales", "api_key", "whoami"), remove: []string{"x-api-key"}},
		{name: "anonymous endpoint strips a malformed bearer", path: "/docs/x",
			headers: hdrs("authorization", "Bearer"+kTenant.Raw), status: 200,
			identity: ident("", "", "", "", "", "", "anonymous", "docs"), remove: []string{"authorization"}},

		// Item 6: only verified values reach identity headers and metadata.
		{name: "shadow: an org key on another org names its own org", path: "/sorgs/acme-us/x",
			headers: bearer(kEU.Raw), status: 200,
			identity: ident("eu-bot", "acme", "acme-eu", kEU.ID, "", "sales", "api_key", "shadow-orgs"), remove: []string{"authorization"}},
		{name: "shadow: a tenant key on an unknown org names no org", path: "/sorgs/initech/x",
			headers: bearer(kAdmin.Raw), status: 200,
			identity: ident("root-bot", "acme", "", kAdmin.ID, "", "admin", "api_key", "shadow-orgs"), remove: []string{"authorization"}},
		{name: "org key and session of two orgs", path: "/whoami",
			headers: hdrs("authorization", "Bearer "+kEU.Raw, "session", sUS.Raw), status: 403, errorCode: "forbidden"},
		{name: "anonymous: org key and session of two orgs identify no one", path: "/docs/x",
			headers: hdrs("authorization", "Bearer "+kEU.Raw, "session", sUS.Raw), status: 200,
			identity: ident("", "", "", "", "", "", "anonymous", "docs"), remove: []string{"authorization", "session"}},
		{name: "tenant key and org-level session agree", path: "/whoami",
			headers: hdrs("authorization", "Bearer "+kTenant.Raw, "session", sUS.Raw), status: 200,
			identity: ident("carol", "acme", "acme-us", kTenant.ID, sUS.ID, "sales", "api_key+session", "whoami"),
			remove:   []string{"authorization", "session"}},
	}
	runAnswerCases(t, p, cases)

	t.Run("an empty method is refused", func(t *testing.T) {
		req := grpcRequest(answerCase{path: "/items/x", host: defaultHost})
		req.Attributes.Request.Http.Method = ""
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		resp, err := authv3.NewAuthorizationClient(p.grpcConn()).Check(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if c := codes.Code(resp.GetStatus().GetCode()); c != codes.PermissionDenied || resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
			t.Errorf("got %v %v, want PERMISSION_DENIED 403", c, resp.GetDeniedResponse().GetStatus())
		}
	})
}

// TestHardeningRepeatedHeaders: a header sent twice to the HTTP adapter is
// decided as Envoy's gRPC request carries it, joined with ",": two keys or
// two organizations are refused, never read as the first one.
func TestHardeningRepeatedHeaders(t *testing.T) {
	t.Parallel()
	kTenant := newKey(t, "acme", "", "api-bot", "sales")
	kEU := newKey(t, "acme", "acme-eu", "eu-bot", "sales")
	p := startKeygate(t, newPolicyFile(t, renderPolicy(hardeningAuthzEndpoints, []cred{kTenant, kEU}, nil)))
	cases := []struct {
		name    string
		path    string
		headers [][2]string
		status  int
	}{
		{"two different keys in x-api-key", "/whoami", [][2]string{{"x-api-key", kTenant.Raw}, {"x-api-key", kEU.Raw}}, 401},
		{"the same key twice in x-api-key", "/whoami", [][2]string{{"x-api-key", kTenant.Raw}, {"x-api-key", kTenant.Raw}}, 401},
		{"two bearer keys", "/whoami", [][2]string{{"authorization", "Bearer " + kTenant.Raw}, {"authorization", "Bearer " + kEU.Raw}}, 401},
		{"basic and bearer", "/whoami", [][2]string{{"authorization", "Basic dXNlcjpwYXNz"}, {"authorization", "Bearer " + kEU.Raw}}, 401},
		{"two different orgs", "/reports/q", [][2]string{{"x-api-key", kTenant.Raw}, {"x-org-id", "acme-eu"}, {"x-org-id", "acme-us"}}, 403},
		{"the same org twice", "/reports/q", [][2]string{{"x-api-key", kTenant.Raw}, {"x-org-id", "acme-eu"}, {"x-org-id", "acme-eu"}}, 403},
		{"one org", "/reports/q", [][2]string{{"x-api-key", kTenant.Raw}, {"x-org-id", "acme-eu"}}, 200},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, err := http.NewRequest("GET", "http://"+p.HTTPAddr+c.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			req.Host = defaultHost
			joined := map[string]string{}
			for _, kv := range c.headers {
				req.Header.Add(kv[0], kv[1])
				if prev, ok := joined[kv[0]]; ok {
					joined[kv[0]] = prev + "," + kv[1] // as Envoy joins them for gRPC
				} else {
					joined[kv[0]] = kv[1]
				}
			}
			resp, err := httpClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			g := grpcCheck(t, p, answerCase{method: "GET", host: defaultHost, path: c.path, headers: joined})
			if resp.StatusCode != c.status || g.status != c.status {
				t.Errorf("HTTP %d, gRPC %d, want %d on both", resp.StatusCode, g.status, c.status)
			}
		})
	}
}

// TestHardeningDecisionLogNamesTheDenied: the decision log line of a denial
// names the credentials that verified (key id, user, tenant, the key's own
// org), and none that did not.
func TestHardeningDecisionLogNamesTheDenied(t *testing.T) {
	t.Parallel()
	kEU := newKey(t, "acme", "acme-eu", "eu-bot", "sales")
	p := startKeygate(t, newPolicyFile(t, renderPolicy(hardeningAuthzEndpoints, []cred{kEU}, nil)))
	unknown := unlistedSecret(randomToken(t, "nokey"), "unlisted key")

	cases := []struct {
		name    string
		grpc    bool
		method  string
		path    string
		headers map[string]string
		status  int
		want    map[string]string
	}{
		{"group not allowed, HTTP", false, "DELETE", "/items/x", bearer(kEU.Raw), 403,
			map[string]string{"reason": "group_denied", "key_id": kEU.ID, "user": "eu-bot", "tenant": "acme", "org": "acme-eu"}},
		{"another org, gRPC", true, "GET", "/reports/q", hdrs("authorization", "Bearer "+kEU.Raw, "x-org-id", "acme-us"), 403,
			map[string]string{"reason": "org_denied", "key_id": kEU.ID, "user": "eu-bot", "tenant": "acme", "org": "acme-eu"}},
		{"unknown key, HTTP", false, "GET", "/whoami", hdrs("x-api-key", unknown), 401,
			map[string]string{"reason": "unknown_credential", "key_id": "", "user": "", "tenant": "", "org": ""}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := "e2e-denied-" + string(rune('a'+i))
			headers := map[string]string{"x-request-id": id}
			for k, v := range c.headers {
				headers[k] = v
			}
			status := 0
			if c.grpc {
				o := grpcCheck(t, p, answerCase{method: c.method, host: defaultHost, path: c.path, headers: headers})
				status = o.status
				for _, k := range []string{"user", "tenant", "org", "key-id", "session-id", "groups", "auth"} {
					if v, ok := o.metadata[k]; ok {
						t.Errorf("the denial's dynamic metadata names %s = %q: only an allowed answer identifies", k, v)
					}
				}
			} else {
				resp := p.httpCheck(t, c.method, defaultHost, c.path, headers)
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				status = resp.StatusCode
			}
			if status != c.status {
				t.Fatalf("status %d, want %d", status, c.status)
			}
			var line map[string]any
			if _, ok := poll(5*time.Second, func() bool {
				for _, l := range p.Out.Lines() {
					if !strings.Contains(l, `"decision_id":"`+id+`"`) {
						continue
					}
					line = nil
					return json.Unmarshal([]byte(l), &line) == nil && line["msg"] == "decision"
				}
				return false
			}); !ok {
				t.Fatalf("no decision log line for %s in:\n%s", id, p.Out.Tail(20))
			}
			for k, want := range c.want {
				if got, _ := line[k].(string); got != want {
					t.Errorf("decision log %s = %q, want %q (line %v)", k, got, want, line)
				}
			}
		})
	}
}
