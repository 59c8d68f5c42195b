package server

import (
	"context"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/internal/source"
)

// serveGRPC serves s as keygate does (its codec, Register) and returns a
// go-control-plane client.
func serveGRPC(t *testing.T, s *AuthServer, opts ...grpc.ServerOption) authv3.AuthorizationClient {
	t.Helper()
	return authv3.NewAuthorizationClient(serveGRPCConn(t, s, opts...))
}

// serveGRPCConn serves s as keygate does and returns a connection to it.
func serveGRPCConn(t *testing.T, s *AuthServer, opts ...grpc.ServerOption) *grpc.ClientConn {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	g := grpc.NewServer(append([]grpc.ServerOption{grpc.ForceServerCodecV2(Codec{})}, opts...)...)
	s.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient("passthrough:///keygate",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	if info := g.GetServiceInfo()[authv3.Authorization_ServiceDesc.ServiceName]; len(info.Methods) != 1 ||
		info.Methods[0].Name != "Check" || info.Metadata != authv3.Authorization_ServiceDesc.Metadata {
		t.Fatalf("the service is not registered as the generated code does: %+v", info)
	}
	return conn
}

func checkRequestOf(c answerCase) *authv3.CheckRequest {
	method := c.method
	if method == "" {
		method = "GET"
	}
	headers := map[string]string{}
	for k, v := range c.headers {
		headers[k] = v
	}
	if c.id != "" {
		headers["x-request-id"] = c.id
	}
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.9.8.7", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 4242}}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: method, Host: "api.example.com", Path: c.path, Headers: headers}},
	}}
	if c.endpoint != "" {
		req.Attributes.ContextExtensions = map[string]string{authz.ContextEndpointKey: c.endpoint}
	}
	return req
}

// TestGRPCCheck: a go-control-plane client of the registered service gets,
// for every kind of decision, the answer keygate built as messages, and the
// same answer Check gives in process; an interceptor is honored as in
// generated code.
func TestGRPCCheck(t *testing.T) {
	var intercepted int
	interceptor := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		if info.FullMethod != authv3.Authorization_Check_FullMethodName {
			t.Errorf("FullMethod %q", info.FullMethod)
		}
		if _, ok := req.(*checkView); !ok {
			t.Errorf("the interceptor sees a %T", req)
		}
		intercepted++
		return h(ctx, req)
	}
	for _, settings := range []string{"", "default: allow", "strip_credentials: false", "identity_header_prefix: x-id-"} {
		a := answerAuthorizer(t, settings)
		srv := NewAuthServer(a, NewDecisionLog(zap.NewNop(), LogAll), nil)
		plain, intercepting := serveGRPC(t, srv), serveGRPC(t, srv, grpc.UnaryInterceptor(interceptor))
		for _, c := range answerCases {
			if c.settings != settings {
				continue
			}
			req := checkRequestOf(c)
			inProcess, err := srv.Check(context.Background(), req)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			v := viewOf(req)
			d := a.Decide(&v.Request)
			want := referenceResponse(&d, &v.Request, authz.DecisionID(v.RequestID))
			for name, cli := range map[string]authv3.AuthorizationClient{"plain": plain, "intercepted": intercepting} {
				got, err := cli.Check(context.Background(), req)
				if err != nil {
					t.Fatalf("%s (%s): %v", c.name, name, err)
				}
				if c.id == "" || c.id == "has space" { // a fresh decision id each time
					for _, m := range []*authv3.CheckResponse{got, inProcess, want} {
						delete(m.DynamicMetadata.Fields, "decision_id")
						if dr := m.GetDeniedResponse(); dr != nil {
							dr.Body = ""
						}
					}
				}
				sortRemoved(got)
				if !proto.Equal(got, sortRemoved(want)) || !proto.Equal(got, sortRemoved(inProcess)) {
					t.Errorf("%s (%s):\n  wire %v\nwant %v\nin process %v", c.name, name, got, want, inProcess)
				}
			}
		}
	}
	if intercepted == 0 {
		t.Error("the interceptor was never called")
	}
}

// TestGRPCUnavailable: without a policy the answer is UNAVAILABLE, which
// failure_mode_allow decides on, and never a denial or an allow.
func TestGRPCUnavailable(t *testing.T) {
	c, _ := cache.New(8, time.Second)
	srv := NewAuthServer(authz.New(source.NewStore(), c), NewDecisionLog(zap.NewNop(), LogAll), nil)
	req := checkRequestOf(answerCases[0])
	_, err := serveGRPC(t, srv).Check(context.Background(), req)
	if status.Code(err) != codes.Unavailable {
		t.Errorf("over gRPC: %v, want UNAVAILABLE", err)
	}
	if _, err := srv.Check(context.Background(), req); status.Code(err) != codes.Unavailable {
		t.Errorf("in process: %v, want UNAVAILABLE", err)
	}
}

// TestGRPCDecisionLog: the wire path logs the decision id it answered with
// and the peer Envoy reported.
func TestGRPCDecisionLog(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	srv := NewAuthServer(answerAuthorizer(t, ""), NewDecisionLog(zap.New(core), LogDenied), nil)
	cli := serveGRPC(t, srv)
	ok, denied := checkRequestOf(answerCases[0]), checkRequestOf(answerCase{path: "/whoami", id: "deny-1"})
	for _, req := range []*authv3.CheckRequest{ok, denied} {
		if _, err := cli.Check(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	entries := logs.All()
	if len(entries) != 1 {
		t.Fatalf("%d log entries, want the denial only", len(entries))
	}
	f := entries[0].ContextMap()
	if f["decision_id"] != "deny-1" || f["source"] != "10.9.8.7" || f["transport"] != "grpc" || f["path"] != "/whoami" || f["result"] != "deny" {
		t.Errorf("logged %v", f)
	}
}

// TestGRPCNotUTF8Decided: header values, paths and bodies that are not
// UTF-8, which Envoy forwards, and requests that do not parse at all are
// decided over the wire, never answered with a gRPC error (which
// failure_mode_allow would let through), and every answer parses as a
// CheckResponse, as Envoy must parse it.
func TestGRPCNotUTF8Decided(t *testing.T) {
	srv := NewAuthServer(answerAuthorizer(t, ""), NewDecisionLog(zap.NewNop(), LogAll), nil)
	conn := serveGRPCConn(t, srv)
	const bad = "\xff\xfe\xc3"
	http := func(method, path string, headers map[string]string) []byte {
		return marshalLenient(withHTTP(&authv3.AttributeContext_HttpRequest{Method: method, Host: "api.example.com", Path: path, Body: bad, Headers: headers}))
	}
	for _, c := range []struct {
		name   string
		data   []byte
		code   codes.Code
		reason string
	}{
		{"key, and a header value not UTF-8", http("GET", "/whoami", map[string]string{"x-api-key": ansKey, "user-agent": bad}), codes.OK, "allowed"},
		{"key not UTF-8", http("GET", "/whoami", map[string]string{"x-api-key": bad}), codes.Unauthenticated, "unknown_credential"},
		{"org not UTF-8", http("GET", "/reports", map[string]string{"x-api-key": ansKey, "x-org-id": bad}), codes.PermissionDenied, "org_denied"},
		{"path not UTF-8 (on a shadow endpoint, which would allow)", http("GET", "/beta/"+bad, map[string]string{"x-api-key": ansKey}), codes.PermissionDenied, "bad_path"},
		{"header name not UTF-8", http("GET", "/whoami", map[string]string{"x-api-key": ansKey, "x-keygate-" + bad: "spoof"}), codes.PermissionDenied, "malformed_request"},
		{"raw header values", marshalLenient(withHTTP(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/whoami", HeaderMap: &corev3.HeaderMap{
			Headers: []*corev3.HeaderValue{{Key: "X-Api-Key", RawValue: []byte(ansKey)}, {Key: "user-agent", RawValue: []byte(bad)}}}})), codes.OK, "allowed"},
		{"truncated", http("GET", "/whoami", map[string]string{"x-api-key": ansKey})[:20], codes.PermissionDenied, "malformed_request"},
		{"not a protobuf", []byte{0xff, 0xff}, codes.PermissionDenied, "malformed_request"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out []byte
			err := conn.Invoke(context.Background(), authv3.Authorization_Check_FullMethodName, &c.data, &out, grpc.ForceCodecV2(envoytest.RawCodec{}))
			if err != nil {
				t.Fatalf("an RPC error: %v", err)
			}
			resp := new(authv3.CheckResponse)
			if err := proto.Unmarshal(out, resp); err != nil {
				t.Fatalf("the answer does not parse: %v", err)
			}
			if got := codes.Code(resp.GetStatus().GetCode()); got != c.code {
				t.Errorf("status %v, want %v", got, c.code)
			}
			if got := resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue(); got != c.reason {
				t.Errorf("reason %q, want %q", got, c.reason)
			}
			if c.code == codes.PermissionDenied && resp.GetDeniedResponse().GetStatus().GetCode() != 403 {
				t.Errorf("HTTP status %v, want 403", resp.GetDeniedResponse().GetStatus().GetCode())
			}
		})
	}
}
