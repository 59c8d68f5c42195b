package server

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/source"
)

// referenceResponse is the answer as keygate built it with go-control-plane's
// message types before it encoded answers itself: what Envoy must keep
// receiving.
func referenceResponse(d *authz.Decision, r *authz.Request, id string) *authv3.CheckResponse {
	option := func(k, v string) *corev3.HeaderValueOption {
		return &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: v},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		}
	}
	metadata := func(set []authz.Header) *structpb.Struct {
		fields := map[string]*structpb.Value{}
		for _, kv := range set {
			fields[strings.TrimPrefix(kv.Name, d.Snapshot.IdentityPrefix)] = structpb.NewStringValue(kv.Value)
		}
		fields["reason"] = structpb.NewStringValue(d.Reason.String())
		if id != "" {
			fields["decision_id"] = structpb.NewStringValue(id)
		}
		if d.Shadowed {
			fields["shadow_denied"] = structpb.NewBoolValue(true)
		}
		return &structpb.Struct{Fields: fields}
	}
	if d.Result == authz.Allow {
		set := d.IdentityHeaders(nil)
		ok := &authv3.OkHttpResponse{HeadersToRemove: d.HeadersToRemove(nil, r.Headers, set)}
		for _, kv := range set {
			ok.Headers = append(ok.Headers, option(kv.Name, kv.Value))
		}
		return &authv3.CheckResponse{
			Status:          &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
			DynamicMetadata: metadata(set),
		}
	}
	denied := &authv3.DeniedHttpResponse{
		Status: &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
		Body:   d.Body(id),
	}
	for _, h := range DeniedHeaders(d) {
		denied.Headers = append(denied.Headers, option(h.Name, h.Value))
	}
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(DeniedCode(d)), Message: d.Reason.String()},
		HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied},
		DynamicMetadata: metadata(nil),
	}
}

// sortRemoved puts headers_to_remove in order: it lists inbound headers in
// the order of a map, which differs from one run to the next.
func sortRemoved(m *authv3.CheckResponse) *authv3.CheckResponse {
	slices.Sort(m.GetOkResponse().GetHeadersToRemove())
	return m
}

// Raw credentials of the answer policy.
const (
	ansKey      = "answer-key"
	ansOrgKey   = "answer-org-key"
	ansOtherKey = "answer-globex-key"
	ansExpired  = "answer-expired-key"
	ansDisabled = "answer-disabled-key"
	ansSession  = "answer-session"
	ansBadKG    = "kg_test0001_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAxxxxxx" // a keygate key with a wrong checksum
)

// ansUSSession is a session of org acme-us: with ansOrgKey, two organizations.
const ansUSSession = "answer-us-session"

func answerAuthorizer(t testing.TB, settings string) *authz.Authorizer {
	t.Helper()
	h := func(s string) string { return policy.FormatDigest(apikey.Digest(s)) }
	doc := fmt.Sprintf(`version: 1
settings: {realm: api.example.com, %s}
groups: [{name: sales}, {name: ops}]
tenants: [{id: acme, orgs: [acme-eu, acme-us]}, {id: globex, orgs: [globex-main]}]
endpoints:
  - {name: health, match: {path: /healthz}, anonymous: true}
  - {name: sales, match: {path: "/orgs/{org}/sales/**"}, groups: [sales], org: {from: path, name: org}}
  - {name: both, match: {methods: [POST], path: /both}, require: [api_key, session]}
  - {name: me, match: {path: /me}, require: [session]}
  - {name: by-header, match: {path: /reports}, org: {from: header, name: x-org-id}}
  - {name: beta, match: {path: "/beta/**"}, groups: [ops], mode: shadow}
  - {name: whoami, match: {path: /whoami}}
api_keys:
  - {id: k1, hash: %q, tenant: acme, user: bot, groups: [sales]}
  - {id: k-eu, hash: %q, tenant: acme, org: acme-eu, user: eu-bot, groups: [sales]}
  - {id: k-gx, hash: %q, tenant: globex, user: gx-bot}
  - {id: k-old, hash: %q, tenant: acme, user: old, expires_at: 2020-01-01T00:00:00Z}
  - {id: k-off, hash: %q, tenant: acme, user: off, disabled: true}
sessions:
  - {id: s1, hash: %q, tenant: acme, user: alice, groups: [ops, sales]}
  - {id: s-us, hash: %q, tenant: acme, org: acme-us, user: carol}
`, settings, h(ansKey), h(ansOrgKey), h(ansOtherKey), h(ansExpired), h(ansDisabled), h(ansSession), h(ansUSSession))
	snap, err := policy.Load([]policy.Input{{Name: "answers.yaml", Data: []byte(doc)}}, policy.Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	st := source.NewStore()
	st.Publish(snap)
	c, _ := cache.New(64, time.Minute)
	return authz.New(st, c)
}

type answerCase struct {
	name     string
	settings string // policy settings besides the realm
	method   string
	path     string
	endpoint string // context extension
	headers  map[string]string
	id       string // Envoy's request id
	reason   authz.Reason
	shadow   bool
	broken   bool // the request did not decode
}

var bearer = "Bearer " + ansKey

var answerCases = []answerCase{
	{name: "key", path: "/whoami", headers: map[string]string{"authorization": bearer}, id: "req-1", reason: authz.ReasonAllowed},
	{name: "key, org from path", path: "/orgs/acme-eu/sales/q1", headers: map[string]string{"x-api-key": ansOrgKey}, id: "r", reason: authz.ReasonAllowed},
	{name: "key, org from header", path: "/reports", headers: map[string]string{"x-api-key": ansKey, "x-org-id": "acme-us"}, reason: authz.ReasonAllowed},
	{name: "session", path: "/me", headers: map[string]string{"session": ansSession}, id: "s", reason: authz.ReasonAllowed},
	{name: "key and session", method: "POST", path: "/both", headers: map[string]string{"x-api-key": ansKey, "session": ansSession}, id: "b", reason: authz.ReasonAllowed},
	{name: "anonymous", path: "/healthz", id: "h", reason: authz.ReasonAnonymous},
	{name: "anonymous with a key", path: "/healthz", headers: map[string]string{"authorization": bearer}, reason: authz.ReasonAnonymous},
	{name: "spoofed identity headers", path: "/whoami", headers: map[string]string{
		"authorization": bearer, "x-keygate-user": "root", "x-keygate-session-id": "s-admin", "x-keygate-foo": "1", "x-keygate-": "",
	}, id: "sp", reason: authz.ReasonAllowed},
	{name: "spoofed, anonymous", path: "/healthz", headers: map[string]string{"x-keygate-user": "root", "x-keygate-auth": "api_key"}, reason: authz.ReasonAnonymous},
	{name: "shadow-denied", path: "/beta/x", headers: map[string]string{"authorization": bearer}, id: "sh", reason: authz.ReasonGroupDenied, shadow: true},
	{name: "shadow-denied, no credential", path: "/beta/x", id: "sh2", reason: authz.ReasonMissingCredential, shadow: true},
	{name: "default allow", settings: "default: allow", path: "/elsewhere", headers: map[string]string{"authorization": bearer}, id: "d", reason: authz.ReasonDefaultAllow},
	{name: "default allow, anonymous", settings: "default: allow", path: "/elsewhere", reason: authz.ReasonDefaultAllow},
	{name: "strip_credentials off", settings: "strip_credentials: false", path: "/whoami", headers: map[string]string{"authorization": bearer, "x-keygate-org": "x"}, id: "ns", reason: authz.ReasonAllowed},
	{name: "strip_credentials off, both", settings: "strip_credentials: false", method: "POST", path: "/both", headers: map[string]string{"x-api-key": ansKey, "session": ansSession}, reason: authz.ReasonAllowed},
	{name: "custom prefix", settings: "identity_header_prefix: x-id-", path: "/whoami", headers: map[string]string{"authorization": bearer, "x-id-user": "root"}, reason: authz.ReasonAllowed},
	{name: "named endpoint", path: "/anything", endpoint: "whoami", headers: map[string]string{"authorization": bearer}, reason: authz.ReasonAllowed},
	{name: "odd request id", path: "/whoami", headers: map[string]string{"authorization": bearer}, id: "has space", reason: authz.ReasonAllowed},
	{name: "long values", path: "/whoami", headers: map[string]string{"authorization": bearer, "x-keygate-" + strings.Repeat("a", 300): "v"}, id: strings.Repeat("i", 128), reason: authz.ReasonAllowed},

	{name: "missing credential: 401 with challenge", path: "/whoami", id: "m", reason: authz.ReasonMissingCredential},
	{name: "missing session", path: "/me", reason: authz.ReasonMissingCredential},
	{name: "missing key and session", method: "POST", path: "/both", reason: authz.ReasonMissingCredential},
	{name: "malformed credential", path: "/whoami", headers: map[string]string{"x-api-key": ansBadKG}, reason: authz.ReasonMalformedCredential},
	{name: "unknown credential", path: "/whoami", headers: map[string]string{"x-api-key": "nope"}, id: "u", reason: authz.ReasonUnknownCredential},
	{name: "expired credential", path: "/whoami", headers: map[string]string{"x-api-key": ansExpired}, reason: authz.ReasonExpiredCredential},
	{name: "disabled credential", path: "/whoami", headers: map[string]string{"x-api-key": ansDisabled}, reason: authz.ReasonDisabledCredential},
	{name: "conflicting credentials", path: "/whoami", headers: map[string]string{"x-api-key": ansKey, "authorization": "Bearer " + ansOrgKey}, reason: authz.ReasonConflictingCredentials},
	{name: "group denied: 403", path: "/orgs/globex-main/sales/x", headers: map[string]string{"x-api-key": ansOtherKey}, id: "g", reason: authz.ReasonGroupDenied},
	{name: "org missing", path: "/reports", headers: map[string]string{"x-api-key": ansKey}, reason: authz.ReasonOrgMissing},
	{name: "org denied", path: "/orgs/acme-us/sales/x", headers: map[string]string{"x-api-key": ansOrgKey}, reason: authz.ReasonOrgDenied},
	{name: "tenant mismatch", method: "POST", path: "/both", headers: map[string]string{"x-api-key": ansOtherKey, "session": ansSession}, reason: authz.ReasonTenantMismatch},
	{name: "no match", path: "/elsewhere", headers: map[string]string{"authorization": bearer}, id: "n", reason: authz.ReasonNoMatch},
	{name: "bad path", path: "relative", reason: authz.ReasonBadPath},
	{name: "bad method", method: "GE T", path: "/whoami", reason: authz.ReasonBadMethod},
	{name: "malformed request", broken: true, reason: authz.ReasonMalformedRequest},
	{name: "org mismatch: identity kept for the log, not answered", path: "/whoami", headers: map[string]string{"x-api-key": ansOrgKey, "session": ansUSSession}, reason: authz.ReasonOrgMismatch},
	{name: "unknown endpoint", path: "/whoami", endpoint: "nope", reason: authz.ReasonUnknownEndpoint},
	{name: "denied, spoofed headers", path: "/whoami", headers: map[string]string{"x-keygate-user": "root"}, reason: authz.ReasonMissingCredential},
}

// TestAppendCheckResponse is the differential test of the encoder: for
// every kind of decision, the bytes decode to exactly the message keygate
// built with go-control-plane's types.
func TestAppendCheckResponse(t *testing.T) {
	authorizers := map[string]*authz.Authorizer{}
	seen := map[authz.Reason]bool{}
	for _, c := range answerCases {
		t.Run(c.name, func(t *testing.T) {
			a := authorizers[c.settings]
			if a == nil {
				a = answerAuthorizer(t, c.settings)
				authorizers[c.settings] = a
			}
			r := authz.Request{Method: c.method, Host: "api.example.com", Path: c.path, Headers: authz.MapHeaders(c.headers), Endpoint: c.endpoint, Malformed: c.broken}
			if r.Method == "" {
				r.Method = "GET"
			}
			d := a.Decide(&r)
			if d.Reason != c.reason || d.Shadowed != c.shadow {
				t.Fatalf("decided %v (shadowed %v), the case is about %v (shadowed %v)", d.Reason, d.Shadowed, c.reason, c.shadow)
			}
			seen[d.Reason] = true
			id := authz.DecisionID(c.id)
			want := referenceResponse(&d, &r, id)

			prefix := []byte("prefix")
			b := appendCheckResponse(prefix, &d, r.Headers, id)
			if string(b[:len(prefix)]) != "prefix" {
				t.Fatal("dst was overwritten")
			}
			got := new(authv3.CheckResponse)
			if err := proto.Unmarshal(b[len(prefix):], got); err != nil {
				t.Fatalf("the answer does not decode: %v", err)
			}
			if !proto.Equal(sortRemoved(got), sortRemoved(want)) {
				t.Errorf("answers differ:\n got %v\nwant %v", got, want)
			}
			if n := len(appendCheckResponse(nil, &d, r.Headers, id)); n != proto.Size(want) {
				t.Errorf("%d bytes, proto.Size says %d", n, proto.Size(want))
			}
		})
	}
	for r := authz.ReasonAllowed; r <= authz.ReasonConflictingCredentials; r++ {
		if !seen[r] && r != authz.ReasonNoPolicy {
			t.Errorf("no case decides %v", r)
		}
	}
}

// TestAppendCheckResponseGrowsOnce: the size of the answer is computed
// before it is written, exactly, so dst grows at most once and a buffer of
// the answer's size is filled without growing.
func TestAppendCheckResponseGrowsOnce(t *testing.T) {
	a := answerAuthorizer(t, "")
	for _, r := range []authz.Request{
		{Method: "GET", Path: "/whoami", Headers: authz.MapHeaders{"authorization": bearer, "x-keygate-foo": "1"}},
		{Method: "GET", Path: "/whoami"},
	} {
		d := a.Decide(&r)
		n := len(appendCheckResponse(nil, &d, r.Headers, "req-1"))
		exact := make([]byte, 1, n+1)
		if b := appendCheckResponse(exact, &d, r.Headers, "req-1"); len(b) != n+1 || &b[0] != &exact[0] {
			t.Errorf("%s: a buffer with room for the answer was not used", d.Reason)
		}
		short := make([]byte, 1, n)
		if b := appendCheckResponse(short, &d, r.Headers, "req-1"); cap(b) < n+1 || &b[0] == &short[0] {
			t.Errorf("%s: a buffer one byte short was not grown to size", d.Reason)
		}
	}
}

// TestWireFieldNumbers checks the encoder's field numbers against the
// generated descriptors.
func TestWireFieldNumbers(t *testing.T) {
	for _, f := range []struct {
		msg   proto.Message
		field protoreflect.Name
		num   int
	}{
		{&authv3.CheckResponse{}, "status", respStatus},
		{&authv3.CheckResponse{}, "denied_response", respDenied},
		{&authv3.CheckResponse{}, "ok_response", respOK},
		{&authv3.CheckResponse{}, "dynamic_metadata", respMetadata},
		{&rpcstatus.Status{}, "code", statusCode},
		{&rpcstatus.Status{}, "message", statusMessage},
		{&authv3.OkHttpResponse{}, "headers", okHeaders},
		{&authv3.OkHttpResponse{}, "headers_to_remove", okHeadersToRemove},
		{&authv3.DeniedHttpResponse{}, "status", deniedStatus},
		{&authv3.DeniedHttpResponse{}, "headers", deniedHeaders},
		{&authv3.DeniedHttpResponse{}, "body", deniedBody},
		{&typev3.HttpStatus{}, "code", httpStatusCode},
		{&corev3.HeaderValueOption{}, "header", optionHeader},
		{&corev3.HeaderValueOption{}, "append_action", optionAppendAction},
		{&corev3.HeaderValue{}, "key", headerKey},
		{&corev3.HeaderValue{}, "value", headerValue},
		{&structpb.Struct{}, "fields", structFields},
		{&structpb.Value{}, "string_value", valueString},
		{&structpb.Value{}, "bool_value", valueBool},
	} {
		fd := f.msg.ProtoReflect().Descriptor().Fields().ByName(f.field)
		if fd == nil || int(fd.Number()) != f.num {
			t.Errorf("%s.%s: the encoder uses field %d, the descriptor says %v", f.msg.ProtoReflect().Descriptor().FullName(), f.field, f.num, fd)
		}
	}
	entry := (&structpb.Struct{}).ProtoReflect().Descriptor().Fields().ByName("fields").Message()
	if entry.Fields().ByName("key").Number() != entryKey || entry.Fields().ByName("value").Number() != entryValue {
		t.Error("Struct's map entry fields moved")
	}
	if corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD != overwriteIfExistsOrAdd {
		t.Error("OVERWRITE_IF_EXISTS_OR_ADD changed value")
	}
}

// BenchmarkAnswer is building and encoding an allow answer and a denial:
// as go-control-plane messages encoded by proto (what keygate did before),
// and appended to a buffer.
func BenchmarkAnswer(b *testing.B) {
	a := answerAuthorizer(b, "")
	for _, r := range []authz.Request{
		{Method: "GET", Path: "/orgs/acme-eu/sales/q1", Headers: authz.MapHeaders{"authorization": bearer, "x-keygate-user": "root", "accept": "*/*"}},
		{Method: "GET", Path: "/whoami"},
	} {
		d := a.Decide(&r)
		b.Run(d.Outcome()+"/messages", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				out, err := Codec{}.Marshal(referenceResponse(&d, &r, "8b1f9a0c"))
				if err != nil {
					b.Fatal(err)
				}
				out.Free()
			}
		})
		b.Run(d.Outcome()+"/append", func(b *testing.B) {
			buf := make([]byte, 0, answerSize)
			b.ReportAllocs()
			for b.Loop() {
				buf = appendCheckResponse(buf[:0], &d, r.Headers, "8b1f9a0c")
			}
		})
	}
}
