package server

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/source"
)

// The only credentials the fuzz policy knows.
var fuzzCreds = map[string]string{"kg-fuzz-key": "k1", "kg-fuzz-session": "s1"}

func fuzzServers(f *testing.F) (*AuthServer, *HTTPAuth) {
	doc := fmt.Sprintf(`version: 1
groups: [{name: g}]
tenants: [{id: t, orgs: [o1, o2]}]
endpoints:
  - {name: open, match: {path: "/open/**"}, anonymous: true}
  - {name: org, match: {path: "/o/{org}/**"}, groups: [g], org: {from: path, name: org}}
  - {name: both, match: {methods: [POST], path: "/both"}, require: [api_key, session]}
  - {name: hdr, match: {path: /h}, org: {from: header, name: x-org}}
api_keys:
  - {id: k1, hash: %q, tenant: t, org: o1, user: bot, groups: [g]}
sessions:
  - {id: s1, hash: %q, tenant: t, user: alice, groups: [g]}
`, policy.FormatDigest(apikey.Digest("kg-fuzz-key")), policy.FormatDigest(apikey.Digest("kg-fuzz-session")))
	snap, err := policy.Load([]policy.Input{{Name: "fuzz.yaml", Data: []byte(doc)}}, policy.Options{Generation: 1})
	if err != nil {
		f.Fatal(err)
	}
	st := source.NewStore()
	st.Publish(snap)
	c, _ := cache.New(64, time.Second)
	a := authz.New(st, c)
	dl := NewDecisionLog(zap.NewNop(), LogAll)
	return NewAuthServer(a, dl, nil), NewHTTPAuth(a, dl, "", OriginAuto, nil)
}

// verifiedIn reports whether the request carried the raw credential behind
// an identity keygate asserted.
func verifiedIn(headers map[string]string, id string) bool {
	for raw, cid := range fuzzCreds {
		if cid != id {
			continue
		}
		for _, v := range headers {
			if strings.Contains(v, raw) {
				return true
			}
		}
	}
	return false
}

// FuzzCheck sends arbitrary CheckRequests through the gRPC adapter, over the
// wire path (encoded as Envoy sends them, strings as they are, decoded by
// the codec) and in process, and the same requests through the HTTP
// adapter: none may panic, both gRPC answers are the one built as
// go-control-plane messages and parse as Envoy parses them, every answer
// uses only OK, UNAUTHENTICATED or PERMISSION_DENIED, an allowed request's
// asserted key and session were really presented, and no header is both
// set and removed.
func FuzzCheck(f *testing.F) {
	grpcSrv, httpSrv := fuzzServers(f)
	const bad = "\xff\xfe\xc3" // not UTF-8: Envoy forwards such bytes
	seeds := []struct{ method, host, path, h1, v1, h2, v2, ext, body string }{
		{"GET", "api", "/o/o1/x", "authorization", "Bearer kg-fuzz-key", "", "", "", ""},
		{"GET", "api", "/o/o2/x", "x-api-key", "kg-fuzz-key", "x-keygate-user", "admin", "", ""},
		{"POST", "api:80", "/both", "x-api-key", "kg-fuzz-key", "session", "kg-fuzz-session", "", "{}"},
		{"GET", "api", "/open/a?x=1", "session", "kg-fuzz-sessio", "", "", "", ""},
		{"GET", "", "/h", "x-api-key", "kg-fuzz-key", "x-org", "o1", "", ""},
		{"GET", "api", "/anything", "authorization", "Bearer kg-fuzz-key", "", "", "org", ""},
		{"", "", "", "", "", "", "", "", ""},
		{"GET", "a", "/o/%2e%2e/o1", "x-api-key", "kg_x_AAAA", "", "", "nope", ""},
		{"GET", "api", "/o/o1/x", "authorization", "Bearer kg-fuzz-key", "user-agent", bad, "", bad},
		{"GET", "api", "/o/o1/x", "x-api-key", bad, "session", "kg-fuzz-session", "", ""},
		{"GET", bad, "/open/" + bad, "x-keygate-" + bad, "v", "", "", "", ""},
		{bad, "api", "/o/o1/x", "x-api-key", "kg-fuzz-key", "x-org", bad, bad, ""},
		{"GET", "api", "/h", "x-api-key", "kg-fuzz-key", "x-org", "o1" + bad, "", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.host, s.path, s.h1, s.v1, s.h2, s.v2, s.ext, s.body)
	}
	f.Fuzz(func(t *testing.T, method, host, path, h1, v1, h2, v2, ext, body string) {
		headers := map[string]string{}
		for _, kv := range [][2]string{{h1, v1}, {h2, v2}} {
			if kv[0] != "" {
				headers[strings.ToLower(kv[0])] = kv[1]
			}
		}
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: method, Host: host, Path: path, Headers: headers, Body: body}},
			ContextExtensions: map[string]string{},
		}}
		if ext != "" {
			req.Attributes.ContextExtensions[authz.ContextEndpointKey] = ext
		}
		inProcess, err := grpcSrv.Check(context.Background(), req)
		if err != nil {
			t.Fatalf("Check returned an error with a policy loaded: %v", err)
		}
		var c checkCall
		if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(marshalLenient(req))}, &c.view); err != nil {
			t.Fatalf("the codec refused a request: %v", err)
		}
		answer, err := grpcSrv.wireCheck(&c)
		if err != nil {
			t.Fatalf("the wire path returned an error with a policy loaded: %v", err)
		}
		wire := new(authv3.CheckResponse)
		if err := proto.Unmarshal(*answer.(*wireAnswer).buf, wire); err != nil {
			t.Fatalf("the encoded answer does not parse: %v", err)
		}
		// Both answers are the one keygate built as messages.
		v := viewOf(req)
		d := grpcSrv.authz.Decide(&v.Request)
		for name, resp := range map[string]*authv3.CheckResponse{"in process": inProcess, "wire": wire} {
			id := resp.GetDynamicMetadata().GetFields()["decision_id"].GetStringValue() // fresh when Envoy's is unusable
			if want := referenceResponse(&d, &v.Request, id); !proto.Equal(sortRemoved(resp), sortRemoved(want)) {
				t.Fatalf("the %s answer differs from keygate's as messages:\n got %v\nwant %v", name, resp, want)
			}
		}
		resp := inProcess
		switch code := resp.GetStatus().GetCode(); code {
		case 0:
			ok := resp.GetOkResponse()
			set := map[string]string{}
			for _, h := range ok.GetHeaders() {
				set[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
			}
			for _, r := range ok.GetHeadersToRemove() {
				if _, both := set[r]; both {
					t.Fatalf("%s is both set and removed", r)
				}
			}
			if id := set["x-keygate-key-id"]; id != "" && !verifiedIn(headers, id) {
				t.Fatalf("allowed with key %s that was not presented: %v", id, headers)
			}
			if id := set["x-keygate-session-id"]; id != "" && !verifiedIn(headers, id) {
				t.Fatalf("allowed with session %s that was not presented: %v", id, headers)
			}
			if set["x-keygate-auth"] == "" {
				t.Fatalf("an allowed answer must say how the caller authenticated")
			}
		case 7, 16:
			if resp.GetDeniedResponse().GetBody() == "" {
				t.Fatalf("a denial without a body")
			}
		default:
			t.Fatalf("status code %d: with failure_mode_allow it would let the request through", code)
		}

		// The HTTP adapter must not panic on the same input either.
		hreq := httptest.NewRequest(http.MethodGet, "/", nil)
		hreq.Method, hreq.Host, hreq.RequestURI = method, host, path
		for k, v := range headers {
			hreq.Header[http.CanonicalHeaderKey(k)] = []string{v}
		}
		rec := httptest.NewRecorder()
		httpSrv.ServeHTTP(rec, hreq)
		if c := rec.Code; c != 200 && c != 401 && c != 403 {
			t.Fatalf("HTTP status %d", c)
		}
	})
}
