// Package api tests the management API end to end: the keygate binary runs
// as a real process serving a policy file with --api-addr, and the tests
// call /v1 over HTTP as an app or an organization admin would, then use the
// keys they made through the real gRPC ext_authz port. Every answer is
// checked against the OpenAPI document keygate serves (kin-openapi), and
// after the suite every byte keygate printed is scanned for every secret the
// suite made (harness.Main).
package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/test/internal/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// cred is a credential of the test policy with its raw value.
type cred struct {
	ID, Raw, Tenant, Org, User string
	Groups                     []string
}

func newCred(t testing.TB, tenant, org, user string, groups ...string) cred {
	t.Helper()
	id, raw := harness.NewAPIKey(t)
	return cred{ID: id, Raw: raw, Tenant: tenant, Org: org, User: user, Groups: groups}
}

// world is the test policy's people: an org admin of acme-eu (a session,
// as a person signed in), a tenant-level admin of acme (an API key), a
// plain key of acme-eu, an org admin of globex.
type world struct {
	EUAdmin, TenantAdmin, EUPlain, GlobexAdmin cred
	Existing                                   []cred // acme-eu keys the operator made
	MaxOrgKeys                                 int
}

func newWorld(t testing.TB, maxOrgKeys, existing int) *world {
	w := &world{
		EUAdmin:     newCred(t, "acme", "acme-eu", "olivia", "org-admin"),
		TenantAdmin: newCred(t, "acme", "", "tina", "org-admin"),
		EUPlain:     newCred(t, "acme", "acme-eu", "bot", "sales"),
		GlobexAdmin: newCred(t, "globex", "globex-main", "gary", "org-admin"),
		MaxOrgKeys:  maxOrgKeys,
	}
	for i := 0; i < existing; i++ {
		w.Existing = append(w.Existing, newCred(t, "acme", "acme-eu", fmt.Sprintf("svc-%d", i), "sales"))
	}
	return w
}

var policyText = harness.PolicyTemplate("p", `# written by test/api
version: 1
settings:
  session_cookie: kg_session
  max_org_keys: {{.MaxOrgKeys}}
groups: [{name: sales}, {name: support}, {name: org-admin}, {name: ops}]
tenants:
  - {id: acme, orgs: [acme-eu, acme-us]}
  - {id: globex, orgs: [globex-main]}
management:
  key_admin_groups: [org-admin]
  assignable_groups: [sales, support]
endpoints:
  - name: sales-read
    match: {methods: [GET], path: "/orgs/{org}/sales/**"}
    require: [api_key]
    groups: [sales, support]
    org: {from: path, name: org}
api_keys:
  - {id: {{.TenantAdmin.ID}}, hash: "{{h .TenantAdmin.Raw}}", tenant: acme, user: tina, groups: [org-admin]}
  - {id: {{.EUPlain.ID}}, hash: "{{h .EUPlain.Raw}}", tenant: acme, user: bot, groups: [sales]}
  - {id: {{.GlobexAdmin.ID}}, hash: "{{h .GlobexAdmin.Raw}}", tenant: globex, org: globex-main, user: gary, groups: [org-admin]}
{{- range .Existing}}
  - {id: {{.ID}}, name: "Existing {{.User}}", hash: "{{h .Raw}}", tenant: acme, org: acme-eu, user: {{.User}}, groups: [sales]}
{{- end}}
sessions:
  - {id: {{.EUAdmin.ID}}, hash: "{{h .EUAdmin.Raw}}", tenant: acme, org: acme-eu, user: olivia, groups: [org-admin]}
`)

// writePolicy writes the world's policy to a fresh file.
func writePolicy(t testing.TB, w *world) string {
	t.Helper()
	return harness.WritePolicy(t, "", policyText, w)
}

// ---------------------------------------------------------------------------
// Calling the API, every answer checked against keygate's OpenAPI document.

type client struct {
	t      testing.TB
	base   string
	router routers.Router
	http   *http.Client

	mu   sync.Mutex
	seen map[string]bool // operationIds answered
}

// newClient fetches and validates the OpenAPI document keygate serves and
// returns a client that checks every answer against it.
func newClient(t testing.TB, addr string) *client {
	t.Helper()
	base := "http://" + addr
	resp, err := http.Get(base + "/v1/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET /v1/openapi.json: %d %s", resp.StatusCode, body)
	}
	doc, err := openapi3.NewLoader().LoadFromData(body)
	if err != nil {
		t.Fatalf("the OpenAPI document does not load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the OpenAPI document is not valid: %v", err)
	}
	doc.Servers = openapi3.Servers{{URL: base}}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	return &client{t: t, base: base, router: router, http: &http.Client{Timeout: 10 * time.Second}, seen: map[string]bool{}}
}

// answer is one API answer.
type answer struct {
	Status int
	Header http.Header
	Body   []byte
}

func (a answer) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(a.Body, &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %v: %s", a.Status, err, a.Body)
	}
	return m
}

// auth says how a call authenticates: header name -> value.
type auth map[string]string

func bearer(c cred) auth  { return auth{"Authorization": "Bearer " + c.Raw} }
func session(c cred) auth { return auth{"Session": c.Raw} }

// do makes a call and checks the answer against the OpenAPI document (and
// the request too, when the call is meant to be valid).
func (c *client) do(method, path string, a auth, body any) answer {
	c.t.Helper()
	var rd io.Reader
	var raw []byte
	if body != nil {
		if s, ok := body.(string); ok {
			raw = []byte(s)
		} else {
			var err error
			if raw, err = json.Marshal(body); err != nil {
				c.t.Fatal(err)
			}
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range a {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	ans := answer{Status: resp.StatusCode, Header: resp.Header, Body: out}
	c.validate(req, raw, ans)
	return ans
}

// validate checks an answer against the document: the route exists, the
// status is documented for it and the body has the documented shape.
func (c *client) validate(req *http.Request, body []byte, ans answer) {
	c.t.Helper()
	vreq := req.Clone(context.Background())
	vreq.Body = io.NopCloser(bytes.NewReader(body))
	route, params, err := c.router.FindRoute(vreq)
	if err != nil {
		if ans.Status == 404 || ans.Status == 405 {
			return // a path or method the API does not have
		}
		c.t.Errorf("%s %s: not in the OpenAPI document: %v", req.Method, req.URL.Path, err)
		return
	}
	c.mu.Lock()
	c.seen[route.Operation.OperationID] = true
	c.mu.Unlock()
	in := &openapi3filter.RequestValidationInput{Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}}
	if ans.Status < 300 {
		if err := openapi3filter.ValidateRequest(context.Background(), in); err != nil {
			c.t.Errorf("%s %s: the request does not match the OpenAPI document: %v", req.Method, req.URL.Path, err)
		}
	}
	rin := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: ans.Status, Header: ans.Header,
		Body: io.NopCloser(bytes.NewReader(ans.Body)), Options: in.Options}
	if err := openapi3filter.ValidateResponse(context.Background(), rin); err != nil {
		c.t.Errorf("%s %s answered %d, which the OpenAPI document does not describe: %v\n%s", req.Method, req.URL.Path, ans.Status, err, ans.Body)
	}
}

// ---------------------------------------------------------------------------
// Using keys through the real ext_authz gRPC port.

func dial(t testing.TB, addr string) authv3.AuthorizationClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return authv3.NewAuthorizationClient(conn)
}

// check sends Envoy's CheckRequest for GET /orgs/acme-eu/sales/q1 with key
// and returns the gRPC status code of the answer.
func check(t testing.TB, c authv3.AuthorizationClient, key string) codes.Code {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Check(ctx, envoytest.CheckRequest(key))
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	return codes.Code(resp.GetStatus().GetCode())
}

// waitCheck polls until Check answers want, and returns how long that took.
func waitCheck(t testing.TB, c authv3.AuthorizationClient, key string, want codes.Code, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := check(t, c, key)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("Check answered %v for %s, want %v", got, within, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
