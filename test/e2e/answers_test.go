package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/test/internal/harness"
)

// answersEndpoints are the endpoints of TestAnswersGRPCAndHTTP's policy.
const answersEndpoints = `endpoints:
  - name: health
    match: {path: /healthz}
    anonymous: true
  - name: docs
    match: {methods: [GET, HEAD], path: "/docs/**"}
    anonymous: true
  - name: sales-write
    match: {methods: [POST, PUT, PATCH, DELETE], path: "/orgs/{org}/sales/**"}
    require: [api_key, session]
    groups: [sales]
    org: {from: path, name: org}
  - name: sales-read
    match: {methods: [GET], path: "/orgs/{org}/sales/**"}
    require: [api_key]
    groups: [sales, support]
    org: {from: path, name: org}
  - name: admin
    match: {path: "/admin/**"}
    require: [api_key]
    groups: [admin]
  - name: partner
    match: {path: /partner, host: api.example.com}
    require: [api_key]
  - name: reports
    match: {path: "/reports/**"}
    require: [api_key]
    org: {from: header, name: x-org-id}
  - name: profile
    match: {path: /profile}
    require: [session]
  - name: shadow
    match: {path: "/shadow/**"}
    require: [api_key]
    groups: [admin]
    mode: shadow
  - name: whoami
    match: {path: /whoami}
    require: [api_key]
`

const defaultHost = "app.e2e.test"

// outcome is one answer, in terms both transports share.
type outcome struct {
	status      int               // 200, 401 or 403
	grpcCode    codes.Code        // gRPC only
	identity    map[string]string // identity headers set on an allowed request
	set         []string          // every header set on an allowed request
	remove      []string          // headers to remove, sorted
	challenge   string            // WWW-Authenticate of a denial
	contentType string            // of a denial
	body        string            // of a denial
	metadata    map[string]string // gRPC dynamic metadata
}

type answerCase struct {
	name     string
	method   string
	host     string
	path     string
	headers  map[string]string
	ext      map[string]string // context extensions; gRPC only
	grpcOnly bool
	bug      string // a known product bug: the case is skipped with this text

	prefix     string // identity header prefix; default x-keygate-
	httpPrefix string // prepended to path on the HTTP transport (--http-path-prefix)

	status     int
	identity   map[string]string
	remove     []string
	challenge  string // exact WWW-Authenticate; "" means none
	errorCode  string // body "error" of a denial
	decisionID string // exact decision_id wanted, if set
	sameBody   string // denials in the same class have bodies equal apart from decision_id
}

// ident builds the identity headers wanted; empty values are not set.
func ident(user, tenant, org, keyID, sessionID, groups, auth, endpoint string) map[string]string {
	m := map[string]string{}
	for k, v := range map[string]string{
		"x-keygate-user": user, "x-keygate-tenant": tenant, "x-keygate-org": org,
		"x-keygate-key-id": keyID, "x-keygate-session-id": sessionID,
		"x-keygate-groups": groups, "x-keygate-auth": auth, "x-keygate-endpoint": endpoint,
	} {
		if v != "" {
			m[k] = v
		}
	}
	return m
}

func hdrs(kv ...string) map[string]string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func TestAnswersGRPCAndHTTP(t *testing.T) {
	t.Parallel()
	kTenant := newKey(t, "acme", "", "api-bot", "sales")
	kEU := newKey(t, "acme", "acme-eu", "support-bot", "support")
	kGlobex := newKey(t, "globex", "", "globex-bot", "sales")
	kAdmin := newKey(t, "acme", "", "root-bot", "support", "admin", "sales")
	kExpired := newKey(t, "acme", "", "old-bot", "sales")
	kExpired.ExpiresAt = "2020-01-01T00:00:00Z"
	kDisabled := newKey(t, "acme", "", "gone-bot", "sales")
	kDisabled.Disabled = true
	kForeign := newForeignKey(t, "ext-partner", "acme", "acme-us", "partner-bot", "sales")
	sAlice := newKey(t, "acme", "", "alice", "sales")
	sBob := newKey(t, "globex", "", "bob", "sales")
	sUS := newKey(t, "acme", "acme-us", "carol", "support")
	sExpired := newKey(t, "acme", "", "dave", "sales")
	sExpired.ExpiresAt = "2021-06-30T12:00:00Z"

	unknownID, err := apikey.NewID()
	if err != nil {
		t.Fatal(err)
	}
	unknownKG, err := apikey.New(unknownID)
	if err != nil {
		t.Fatal(err)
	}
	harness.RegisterSecret(unknownKG, "unlisted key "+unknownID)
	unknownForeign := unlistedSecret(randomToken(t, "nokey"), "unlisted foreign key")
	last := kTenant.Raw[len(kTenant.Raw)-1]
	badChecksum := kTenant.Raw[:len(kTenant.Raw)-1] + map[bool]string{true: "A", false: "B"}[last != 'A']
	harness.RegisterSecret(badChecksum, "key with bad checksum")

	text := renderPolicy(answersEndpoints,
		[]cred{kTenant, kEU, kGlobex, kAdmin, kExpired, kDisabled, kForeign},
		[]cred{sAlice, sBob, sUS, sExpired})
	p := startKeygate(t, newPolicyFile(t, text))

	challengeMissing := `Bearer realm="` + testRealm + `"`
	challengeInvalid := `Bearer realm="` + testRealm + `", error="invalid_token"`

	cases := []answerCase{
		{
			name: "tenant key on org of its tenant", method: "GET", path: "/orgs/acme-eu/sales/report",
			headers: bearer(kTenant.Raw), status: 200,
			identity: ident("api-bot", "acme", "acme-eu", kTenant.ID, "", "sales", "api_key", "sales-read"),
			remove:   []string{"authorization"},
		},
		{
			name: "tenant key on another org of its tenant", method: "GET", path: "/orgs/acme-us/sales/report?year=2025",
			headers: bearer(kTenant.Raw), status: 200,
			identity: ident("api-bot", "acme", "acme-us", kTenant.ID, "", "sales", "api_key", "sales-read"),
			remove:   []string{"authorization"},
		},
		{
			name: "org key on its own org", method: "GET", path: "/orgs/acme-eu/sales/report",
			headers: bearer(kEU.Raw), status: 200,
			identity: ident("support-bot", "acme", "acme-eu", kEU.ID, "", "support", "api_key", "sales-read"),
			remove:   []string{"authorization"},
		},
		{
			name: "groups sorted and comma-joined", method: "GET", path: "/admin/users",
			headers: bearer(kAdmin.Raw), status: 200,
			identity: ident("root-bot", "acme", "", kAdmin.ID, "", "admin,sales,support", "api_key", "admin"),
			remove:   []string{"authorization"},
		},
		{
			name: "spoofed identity headers", method: "GET", path: "/whoami",
			headers: hdrs("authorization", "Bearer "+kTenant.Raw,
				"x-keygate-user", "root", "x-keygate-session-id", "s_forged", "x-keygate-groups", "admin"),
			status:   200,
			identity: ident("api-bot", "acme", "", kTenant.ID, "", "sales", "api_key", "whoami"),
			remove:   []string{"authorization", "x-keygate-session-id"},
		},
		{
			name: "missing credential", method: "GET", path: "/whoami",
			status: 401, challenge: challengeMissing, errorCode: "unauthorized",
		},
		{
			name: "other authorization scheme is no credential", method: "GET", path: "/whoami",
			headers: hdrs("authorization", "Basic dXNlcjpwYXNz"),
			status:  401, challenge: challengeMissing, errorCode: "unauthorized",
		},
		{
			name: "x-request-id is the decision id", method: "GET", path: "/whoami",
			headers: hdrs("x-request-id", "e2e-req-0042"),
			status:  401, challenge: challengeMissing, errorCode: "unauthorized", decisionID: "e2e-req-0042",
		},
		{
			name: "unknown key", method: "GET", path: "/whoami", headers: bearer(unknownKG),
			status: 401, challenge: challengeInvalid, errorCode: "unauthorized", sameBody: "invalid",
		},
		{
			name: "unknown foreign key", method: "GET", path: "/whoami", headers: hdrs("x-api-key", unknownForeign),
			status: 401, challenge: challengeInvalid, errorCode: "unauthorized", sameBody: "invalid",
		},
		{
			name: "key with bad checksum", method: "GET", path: "/whoami", headers: bearer(badChecksum),
			status: 401, challenge: challengeInvalid, errorCode: "unauthorized", sameBody: "invalid",
		},
		{
			name: "expired key", method: "GET", path: "/whoami", headers: bearer(kExpired.Raw),
			status: 401, challenge: challengeInvalid, errorCode: "unauthorized", sameBody: "invalid",
		},
		{
			name: "disabled key", method: "GET", path: "/whoami", headers: bearer(kDisabled.Raw),
			status: 401, challenge: challengeInvalid, errorCode: "unauthorized", sameBody: "invalid",
		},
		{
			name: "unknown session next to a valid key", method: "GET", path: "/whoami",
			headers: hdrs("authorization", "Bearer "+kTenant.Raw, "session", unknownForeign),
			status:  401, challenge: challengeInvalid, errorCode: "unauthorized", sameBody: "invalid",
		},
		{
			name: "group not allowed", method: "GET", path: "/admin/users", headers: bearer(kEU.Raw),
			status: 403, errorCode: "forbidden",
		},
		{
			name: "org key on another org", method: "GET", path: "/orgs/acme-us/sales/report", headers: bearer(kEU.Raw),
			status: 403, errorCode: "forbidden",
		},
		{
			name: "tenant key on org of another tenant", method: "GET", path: "/orgs/acme-eu/sales/report", headers: bearer(kGlobex.Raw),
			status: 403, errorCode: "forbidden",
		},
		{
			name: "tenant key on unknown org", method: "GET", path: "/orgs/initech/sales/report", headers: bearer(kTenant.Raw),
			status: 403, errorCode: "forbidden",
		},
		{
			name: "no endpoint matches, default deny", method: "GET", path: "/nowhere", headers: bearer(kTenant.Raw),
			status: 403, errorCode: "forbidden",
		},
		{
			name: "method not matched", method: "POST", path: "/docs/intro",
			status: 403, errorCode: "forbidden",
		},
		{
			name: "anonymous endpoint without credentials", method: "GET", path: "/docs/intro",
			status: 200, identity: ident("", "", "", "", "", "", "anonymous", "docs"),
		},
		{
			name: "anonymous endpoint with a valid key identifies", method: "GET", path: "/docs/intro",
			headers: bearer(kEU.Raw), status: 200,
			identity: ident("support-bot", "acme", "acme-eu", kEU.ID, "", "support", "api_key", "docs"),
			remove:   []string{"authorization"},
		},
		{
			name: "anonymous endpoint ignores an invalid key", method: "GET", path: "/docs/intro",
			headers: hdrs("authorization", "Bearer "+unknownKG, "x-keygate-user", "mallory"), status: 200,
			identity: ident("", "", "", "", "", "", "anonymous", "docs"),
			remove:   []string{"authorization", "x-keygate-user"},
		},
		{
			name: "anonymous endpoint ignores a disabled key", method: "GET", path: "/healthz",
			headers: bearer(kDisabled.Raw), status: 200,
			identity: ident("", "", "", "", "", "", "anonymous", "health"),
			remove:   []string{"authorization"},
		},
		{
			name: "key and session", method: "POST", path: "/orgs/acme-eu/sales/orders",
			headers: hdrs("authorization", "Bearer "+kEU.Raw, "session", sAlice.Raw), status: 200,
			identity: ident("alice", "acme", "acme-eu", kEU.ID, sAlice.ID, "sales,support", "api_key+session", "sales-write"),
			remove:   []string{"authorization", "session"},
		},
		{
			name: "session required but missing", method: "POST", path: "/orgs/acme-eu/sales/orders",
			headers: bearer(kTenant.Raw),
			status:  401, challenge: challengeMissing, errorCode: "unauthorized",
		},
		{
			name: "key and session of different tenants", method: "POST", path: "/orgs/acme-eu/sales/orders",
			headers: hdrs("authorization", "Bearer "+kTenant.Raw, "session", sBob.Raw),
			status:  403, errorCode: "forbidden",
		},
		{
			name: "expired session next to a valid key", method: "POST", path: "/orgs/acme-eu/sales/orders",
			headers: hdrs("authorization", "Bearer "+kEU.Raw, "session", sExpired.Raw),
			status:  401, challenge: challengeInvalid, errorCode: "unauthorized", sameBody: "invalid",
		},
		{
			name: "org-level session on its org", method: "POST", path: "/orgs/acme-us/sales/orders",
			headers: hdrs("authorization", "Bearer "+kTenant.Raw, "session", sUS.Raw), status: 200,
			identity: ident("carol", "acme", "acme-us", kTenant.ID, sUS.ID, "sales,support", "api_key+session", "sales-write"),
			remove:   []string{"authorization", "session"},
		},
		{
			name: "org-level session on another org", method: "POST", path: "/orgs/acme-eu/sales/orders",
			headers: hdrs("authorization", "Bearer "+kTenant.Raw, "session", sUS.Raw),
			status:  403, errorCode: "forbidden",
		},
		{
			name: "session alone", method: "GET", path: "/profile",
			headers: hdrs("session", sAlice.Raw, "x-keygate-key-id", "kg_forged"), status: 200,
			identity: ident("alice", "acme", "", "", sAlice.ID, "sales", "session", "profile"),
			remove:   []string{"session", "x-keygate-key-id"},
		},
		{
			name: "session missing", method: "GET", path: "/profile", headers: bearer(kTenant.Raw),
			status: 401, challenge: challengeMissing, errorCode: "unauthorized",
		},
		{
			name: "org from header", method: "GET", path: "/reports/q3",
			headers: hdrs("authorization", "Bearer "+kEU.Raw, "x-org-id", "acme-eu"), status: 200,
			identity: ident("support-bot", "acme", "acme-eu", kEU.ID, "", "support", "api_key", "reports"),
			remove:   []string{"authorization"},
		},
		{
			name: "org from header, another org", method: "GET", path: "/reports/q3",
			headers: hdrs("authorization", "Bearer "+kEU.Raw, "x-org-id", "acme-us"),
			status:  403, errorCode: "forbidden",
		},
		{
			name: "org from header, header missing", method: "GET", path: "/reports/q3",
			headers: bearer(kEU.Raw), status: 403, errorCode: "forbidden",
		},
		{
			name: "shadow mode allows what it would deny", method: "GET", path: "/shadow/x",
			headers: bearer(kTenant.Raw), status: 200,
			identity: ident("api-bot", "acme", "", kTenant.ID, "", "sales", "api_key", "shadow"),
			remove:   []string{"authorization"},
		},
		{
			name: "shadow mode never identifies with an invalid key", method: "GET", path: "/shadow/x",
			headers: hdrs("authorization", "Bearer "+unknownKG, "x-keygate-user", "mallory"), status: 200,
			identity: ident("", "", "", "", "", "", "anonymous", "shadow"),
			remove:   []string{"authorization", "x-keygate-user"},
		},
		{
			name: "the same key in two headers: every credential header is stripped", method: "GET", path: "/whoami",
			headers: hdrs("authorization", "Bearer "+kTenant.Raw, "x-api-key", kTenant.Raw), status: 200,
			identity: ident("api-bot", "acme", "", kTenant.ID, "", "sales", "api_key", "whoami"),
			remove:   []string{"authorization", "x-api-key"},
		},
		{
			name: "two different valid keys are refused, not one picked", method: "GET", path: "/whoami",
			headers: hdrs("authorization", "Bearer "+kTenant.Raw, "x-api-key", kForeign.Raw),
			status:  401, challenge: challengeInvalid, errorCode: "unauthorized", sameBody: "invalid",
		},
		{
			name: "every presented key must verify", method: "GET", path: "/whoami",
			headers: hdrs("authorization", "Bearer "+kTenant.Raw, "x-api-key", unknownForeign),
			status:  401, challenge: challengeInvalid, errorCode: "unauthorized", sameBody: "invalid",
		},
		{
			name: "context extension selects the endpoint", method: "GET", path: "/routed/by/envoy",
			headers: bearer(kTenant.Raw), ext: hdrs("keygate_endpoint", "whoami"), grpcOnly: true,
			status:   200,
			identity: ident("api-bot", "acme", "", kTenant.ID, "", "sales", "api_key", "whoami"),
			remove:   []string{"authorization"},
		},
		{
			name: "context extension endpoint rules apply", method: "GET", path: "/routed/by/envoy",
			headers: bearer(kTenant.Raw), ext: hdrs("keygate_endpoint", "admin"), grpcOnly: true,
			status: 403, errorCode: "forbidden",
		},
		{
			name: "context extension names an unknown endpoint", method: "GET", path: "/docs/intro",
			ext: hdrs("keygate_endpoint", "no-such-endpoint"), grpcOnly: true,
			status: 403, errorCode: "forbidden",
		},
		{
			name: "host with port matches", method: "GET", host: "api.example.com:8443", path: "/partner",
			headers: bearer(kTenant.Raw), status: 200,
			identity: ident("api-bot", "acme", "", kTenant.ID, "", "sales", "api_key", "partner"),
			remove:   []string{"authorization"},
		},
		{
			name: "other host does not match", method: "GET", host: "evil.example.com", path: "/partner",
			headers: bearer(kTenant.Raw), status: 403, errorCode: "forbidden",
		},
		{
			name: "dot-dot inside root is normalized", method: "GET", path: "/admin/../docs/./intro",
			status: 200, identity: ident("", "", "", "", "", "", "anonymous", "docs"),
		},
		{
			name: "dot-dot escaping root", method: "GET", path: "/docs/../../etc/passwd",
			status: 403, errorCode: "forbidden",
		},
		{
			name: "encoded dot-dot escaping root", method: "GET", path: "/docs/%2e%2e/%2E%2E/whoami",
			headers: bearer(kTenant.Raw), status: 403, errorCode: "forbidden",
		},
		{
			name: "encoded slash", method: "GET", path: "/orgs/acme-eu%2Fsales/report",
			headers: bearer(kTenant.Raw), status: 403, errorCode: "forbidden",
		},
		{
			name: "encoded slash on anonymous prefix", method: "GET", path: "/docs%2F..%2Fwhoami",
			status: 403, errorCode: "forbidden",
		},
		{
			name: "encoded backslash", method: "GET", path: "/docs/a%5C..%5Cb",
			status: 403, errorCode: "forbidden",
		},
		{
			name: "lower-case bearer scheme", method: "GET", path: "/whoami",
			headers: hdrs("authorization", "bearer "+kTenant.Raw), status: 200,
			identity: ident("api-bot", "acme", "", kTenant.ID, "", "sales", "api_key", "whoami"),
			remove:   []string{"authorization"},
		},
		{
			name: "x-api-key with a foreign key", method: "GET", path: "/orgs/acme-us/sales/report",
			headers: hdrs("x-api-key", kForeign.Raw), status: 200,
			identity: ident("partner-bot", "acme", "acme-us", "ext-partner", "", "sales", "api_key", "sales-read"),
			remove:   []string{"x-api-key"},
		},
	}

	runAnswerCases(t, p, cases)
}

// runAnswerCases runs every case through both transports (gRPC only where
// the case says so), checks each answer and that both transports answer
// alike, and that denials of the same class have the same body.
func runAnswerCases(t *testing.T, p *proc, cases []answerCase) {
	t.Helper()
	secretsInCase := func(c answerCase) []string {
		var out []string
		for _, h := range []string{"authorization", "x-api-key", "session", "x-token", "x-session"} {
			if f := strings.Fields(c.headers[h]); len(f) > 0 {
				out = append(out, f[len(f)-1])
			}
		}
		return out
	}

	// Denial bodies per class and transport, to compare at the end.
	type classBody struct{ caseName, body string }
	classes := map[string][]classBody{}

	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.bug != "" {
				t.Skip("BUG: " + c.bug)
			}
			if c.method == "" {
				c.method = "GET"
			}
			if c.host == "" {
				c.host = defaultHost
			}
			results := map[string]outcome{"grpc": grpcCheck(t, p, c)}
			if !c.grpcOnly {
				results["http"] = httpOutcome(t, p, c)
			}
			for _, transport := range []string{"grpc", "http"} {
				o, ok := results[transport]
				if !ok {
					continue
				}
				checkOutcome(t, transport, c, o, secretsInCase(c))
				if c.sameBody != "" {
					classes[c.sameBody] = append(classes[c.sameBody], classBody{transport + " " + c.name, normalizeBody(o.body)})
				}
			}
			// Both transports answer alike.
			if h, ok := results["http"]; ok {
				g := results["grpc"]
				if g.status != h.status || g.challenge != h.challenge ||
					normalizeBody(g.body) != normalizeBody(h.body) ||
					fmt.Sprint(g.identity) != fmt.Sprint(h.identity) || fmt.Sprint(g.remove) != fmt.Sprint(h.remove) {
					t.Errorf("gRPC and HTTP answers differ:\n grpc: %+v\n http: %+v", g, h)
				}
			}
		})
	}

	// Unknown, expired, disabled (and malformed) credentials are one answer:
	// nothing tells whether the key exists.
	for class, bodies := range classes {
		for _, b := range bodies[1:] {
			if b.body != bodies[0].body {
				t.Errorf("class %q: body of %q differs from %q:\n %s\n %s", class, b.caseName, bodies[0].caseName, b.body, bodies[0].body)
			}
		}
	}
}

func (c answerCase) identityPrefix() string {
	if c.prefix == "" {
		return "x-keygate-"
	}
	return c.prefix
}

var decisionIDRe = regexp.MustCompile(`"decision_id":"[^"]*"`)

// normalizeBody blanks the decision id of a denial body.
func normalizeBody(b string) string {
	return decisionIDRe.ReplaceAllString(b, `"decision_id":"-"`)
}

func grpcRequest(c answerCase) *authv3.CheckRequest {
	headers := map[string]string{
		":method": c.method, ":path": c.path, ":authority": c.host,
		"user-agent": "e2e-test/1.0",
	}
	for k, v := range c.headers {
		headers[k] = v
	}
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id:       "envoy-internal-id",
			Method:   c.method,
			Host:     c.host,
			Path:     c.path,
			Scheme:   "https",
			Protocol: "HTTP/1.1",
			Headers:  headers,
		}},
		ContextExtensions: c.ext,
	}}
}

func grpcCheck(t *testing.T, p *proc, c answerCase) outcome {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := authv3.NewAuthorizationClient(p.grpcConn()).Check(ctx, grpcRequest(c))
	if err != nil {
		t.Fatalf("gRPC Check: %v", err)
	}
	o := outcome{grpcCode: codes.Code(resp.GetStatus().GetCode()), metadata: map[string]string{}}
	for k, v := range resp.GetDynamicMetadata().GetFields() {
		o.metadata[k] = fmt.Sprint(v.AsInterface())
	}
	switch r := resp.GetHttpResponse().(type) {
	case *authv3.CheckResponse_OkResponse:
		o.status = 200
		o.identity = map[string]string{}
		for _, h := range r.OkResponse.GetHeaders() {
			k, v := h.GetHeader().GetKey(), h.GetHeader().GetValue()
			if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || h.GetAppend().GetValue() {
				t.Errorf("gRPC: header %s set with append_action %v (append %v), want OVERWRITE_IF_EXISTS_OR_ADD",
					k, h.GetAppendAction(), h.GetAppend())
			}
			o.set = append(o.set, k)
			if strings.HasPrefix(k, c.identityPrefix()) {
				o.identity[k] = v
			}
		}
		o.remove = sorted(r.OkResponse.GetHeadersToRemove())
	case *authv3.CheckResponse_DeniedResponse:
		d := r.DeniedResponse
		o.status = int(d.GetStatus().GetCode())
		o.body = d.GetBody()
		for _, h := range d.GetHeaders() {
			switch strings.ToLower(h.GetHeader().GetKey()) {
			case "www-authenticate":
				o.challenge = h.GetHeader().GetValue()
			case "content-type":
				o.contentType = h.GetHeader().GetValue()
			}
		}
	default:
		t.Fatalf("gRPC: answer with status %v has no http_response", resp.GetStatus())
	}
	return o
}

func httpOutcome(t *testing.T, p *proc, c answerCase) outcome {
	t.Helper()
	resp := p.httpCheck(t, c.method, c.host, c.httpPrefix+c.path, c.headers)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	o := outcome{status: resp.StatusCode}
	if resp.StatusCode == http.StatusOK {
		o.identity = map[string]string{}
		for k := range resp.Header {
			lk := strings.ToLower(k)
			if strings.HasPrefix(lk, c.identityPrefix()) {
				if len(resp.Header[k]) != 1 {
					t.Errorf("HTTP: %s set %d times: %q", lk, len(resp.Header[k]), resp.Header[k])
				}
				o.identity[lk] = resp.Header.Get(k)
				o.set = append(o.set, lk)
			}
		}
		if rm := resp.Header.Get("x-envoy-auth-headers-to-remove"); rm != "" {
			for _, h := range strings.Split(rm, ",") {
				o.remove = append(o.remove, strings.TrimSpace(h))
			}
		}
		o.remove = sorted(o.remove)
		if len(body) != 0 {
			t.Errorf("HTTP: allowed answer has a body: %q", body)
		}
		return o
	}
	o.body = string(body)
	o.challenge = resp.Header.Get("WWW-Authenticate")
	o.contentType = resp.Header.Get("Content-Type")
	return o
}

func sorted(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	if len(out) == 0 {
		return nil
	}
	return out
}

func checkOutcome(t *testing.T, transport string, c answerCase, o outcome, presented []string) {
	t.Helper()
	if o.status != c.status {
		t.Errorf("%s: status %d, want %d (answer %+v)", transport, o.status, c.status, o)
		return
	}
	if transport == "grpc" {
		want := map[int]codes.Code{200: codes.OK, 401: codes.Unauthenticated, 403: codes.PermissionDenied}[c.status]
		if o.grpcCode != want {
			t.Errorf("grpc: status code %v, want %v", o.grpcCode, want)
		}
	}
	if c.status == 200 {
		if fmt.Sprint(o.identity) != fmt.Sprint(c.identity) {
			t.Errorf("%s: identity headers\n got  %v\n want %v", transport, o.identity, c.identity)
		}
		if fmt.Sprint(o.remove) != fmt.Sprint(sorted(c.remove)) {
			t.Errorf("%s: headers to remove %v, want %v", transport, o.remove, sorted(c.remove))
		}
		for _, s := range o.set {
			for _, r := range o.remove {
				if strings.EqualFold(s, r) {
					t.Errorf("%s: header %s is both set and removed (Envoy removes after setting: it would vanish)", transport, s)
				}
			}
		}
		if transport == "grpc" {
			for k, v := range o.identity {
				name := strings.TrimPrefix(k, c.identityPrefix())
				if mv := o.metadata[name]; mv != v {
					t.Errorf("grpc: dynamic metadata %s = %q, header says %q", name, mv, v)
				}
			}
		}
		return
	}
	if o.challenge != c.challenge {
		t.Errorf("%s: WWW-Authenticate %q, want %q", transport, o.challenge, c.challenge)
	}
	if !strings.HasPrefix(o.contentType, "application/json") {
		t.Errorf("%s: denial content-type %q, want application/json", transport, o.contentType)
	}
	var body map[string]any
	if err := json.Unmarshal([]byte(o.body), &body); err != nil {
		t.Errorf("%s: denial body is not JSON: %q: %v", transport, o.body, err)
		return
	}
	for _, f := range []string{"error", "message", "decision_id"} {
		if s, _ := body[f].(string); s == "" {
			t.Errorf("%s: denial body lacks %q: %s", transport, f, o.body)
		}
	}
	if body["error"] != c.errorCode {
		t.Errorf("%s: body error %v, want %q: %s", transport, body["error"], c.errorCode, o.body)
	}
	if c.decisionID != "" && body["decision_id"] != c.decisionID {
		t.Errorf("%s: decision_id %v, want %q (the x-request-id)", transport, body["decision_id"], c.decisionID)
	}
	for _, s := range presented {
		if len(s) >= 8 && strings.Contains(o.body, s) {
			t.Errorf("%s: denial body contains the presented credential: %s", transport, o.body)
		}
	}
	for _, m := range []string{"exist", "expired", "disabled", "revoked"} {
		if c.sameBody != "" && strings.Contains(strings.ToLower(o.body), m) {
			t.Errorf("%s: denial body says %q: it must not tell why a credential failed: %s", transport, m, o.body)
		}
	}
}

func TestMalformedRequestsDenied(t *testing.T) {
	t.Parallel()
	k := newKey(t, "acme", "", "api-bot", "sales")
	p := startKeygate(t, newPolicyFile(t, renderPolicy(simpleEndpoints, []cred{k}, nil)))
	client := authv3.NewAuthorizationClient(p.grpcConn())

	httpReq := func(h *authv3.AttributeContext_HttpRequest) *authv3.CheckRequest {
		return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: h}}}
	}
	junk := string([]byte{0x00, 0x01, 0x1b, '[', '2', 'J', 0x7f})
	cases := []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{"empty request", &authv3.CheckRequest{}},
		{"nil attributes request", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}}},
		{"nil http", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{}}}},
		{"empty http", httpReq(&authv3.AttributeContext_HttpRequest{})},
		{"relative path", httpReq(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "whoami"})},
		{"huge path", httpReq(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/x/" + strings.Repeat("a/", 512<<10)})},
		{"huge path with key", httpReq(&authv3.AttributeContext_HttpRequest{Method: "GET",
			Path:    "/whoami/" + strings.Repeat("%2e%2e/", 100<<10),
			Headers: map[string]string{"authorization": "Bearer " + k.Raw}})},
		{"NUL in path", httpReq(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/who\x00ami"})},
		{"bad escape in path", httpReq(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/whoami%zz"})},
		{"junk headers", httpReq(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/whoami",
			Headers: map[string]string{junk: junk, "authorization": "Bearer " + junk, "session": junk, "x-api-key": junk}})},
		{"binary raw header values", httpReq(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/whoami",
			HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
				{Key: "authorization", RawValue: []byte("Bearer \xff\xfe\x00\x80junk")},
				{Key: "x-api-key", RawValue: []byte{0xc3, 0x28, 0x00, 0xff}},
				{Key: "x-junk", RawValue: []byte{0xff, 0x00, 0x0d, 0x0a, 0xfe}},
			}}})},
		{"huge header", httpReq(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/whoami",
			Headers: map[string]string{"authorization": "Bearer " + strings.Repeat("k", 1<<20)}})},
		{"junk method", httpReq(&authv3.AttributeContext_HttpRequest{Method: junk, Path: "/whoami", Host: junk})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			resp, err := client.Check(ctx, c.req)
			if err != nil {
				t.Fatalf("Check: %v (a malformed request must get a deny answer, not an RPC error)", err)
			}
			code := codes.Code(resp.GetStatus().GetCode())
			if code != codes.PermissionDenied && code != codes.Unauthenticated {
				t.Errorf("status %v, want PERMISSION_DENIED or UNAUTHENTICATED", code)
			}
			if resp.GetDeniedResponse() == nil {
				t.Errorf("no denied_response: %v", resp)
			}
		})
	}

	// Still alive and still deciding.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hr, err := healthpb.NewHealthClient(p.grpcConn()).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health after malformed requests: %v, %v", hr, err)
	}
	if got := p.httpStatus(t, "GET", "/whoami", bearer(k.Raw)); got != 200 {
		t.Errorf("valid check after malformed requests: %d, want 200", got)
	}
}

func TestHealth(t *testing.T) {
	t.Parallel()
	p := startKeygate(t, newPolicyFile(t, renderPolicy(simpleEndpoints, nil, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	hc := healthpb.NewHealthClient(p.grpcConn())
	for _, svc := range []string{"", "envoy.service.auth.v3.Authorization"} {
		r, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil {
			t.Errorf("health Check(%q): %v", svc, err)
		} else if r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health Check(%q) = %v, want SERVING", svc, r.GetStatus())
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, body := p.Admin(path); code != 200 {
			t.Errorf("%s: %d %q, want 200", path, code, body)
		}
	}
	code, st := p.readyVerbose(t)
	if code != 200 || !st.Ready || st.Generation == 0 || !st.LastReloadOK {
		t.Errorf("/readyz?verbose: %d %+v", code, st)
	}

	stream, err := reflectionpb.NewServerReflectionClient(p.grpcConn()).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatalf("reflection: %v", err)
	}
	if err := stream.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: ""}}); err != nil {
		t.Fatalf("reflection send: %v", err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatalf("reflection recv: %v", err)
	}
	_ = stream.CloseSend()
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"envoy.service.auth.v3.Authorization", "grpc.health.v1.Health"} {
		found := false
		for _, n := range names {
			found = found || n == want
		}
		if !found {
			t.Errorf("reflection lists %v; %s missing", names, want)
		}
	}
}
