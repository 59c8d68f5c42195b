// Package server adapts keygate's decisions to Envoy's ext_authz gRPC and
// HTTP protocols and serves health and admin endpoints.
package server

import (
	"context"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/internal/authz"
)

// AuthServer implements envoy.service.auth.v3.Authorization.
type AuthServer struct {
	authv3.UnimplementedAuthorizationServer
	authz *authz.Authorizer
	log   *DecisionLog
	obs   Observer
}

// NewAuthServer returns the gRPC ext_authz adapter; obs may be nil.
func NewAuthServer(a *authz.Authorizer, log *DecisionLog, obs Observer) *AuthServer {
	return &AuthServer{authz: a, log: log, obs: orNop(obs)}
}

// Register serves the Authorization service on r in place of the generated
// registration: the request is decoded straight into a checkView and the
// answer is encoded straight to bytes, so neither exists as a proto message.
// Only Codec reads and writes those, so the server must be built with
// grpc.ForceServerCodecV2(Codec{}).
func (s *AuthServer) Register(r grpc.ServiceRegistrar) {
	gen := &authv3.Authorization_ServiceDesc
	r.RegisterService(&grpc.ServiceDesc{
		ServiceName: gen.ServiceName,
		HandlerType: gen.HandlerType,
		Methods:     []grpc.MethodDesc{{MethodName: gen.Methods[0].MethodName, Handler: serveCheck}},
		Streams:     []grpc.StreamDesc{},
		Metadata:    gen.Metadata,
	}, s)
}

// checkCall is one Check on the wire: the view the codec decodes the
// request into, the decision and the answer the codec sends, in one
// allocation.
type checkCall struct {
	view     checkView
	decision authz.Decision
	answer   wireAnswer
}

// serveCheck is the method handler, shaped like the generated one; an
// interceptor sees the request as a *checkView.
func serveCheck(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	s := srv.(*AuthServer)
	c := new(checkCall)
	if err := dec(&c.view); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return s.wireCheck(c)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: authv3.Authorization_Check_FullMethodName}
	return interceptor(ctx, &c.view, info, func(_ context.Context, req any) (any, error) {
		v, ok := req.(*checkView)
		if !ok {
			return nil, status.Errorf(codes.Internal, "keygate: an interceptor passed a %T to Check", req)
		}
		call := c
		if v != &c.view {
			call = &checkCall{view: *v}
		}
		return s.wireCheck(call)
	})
}

// wireCheck answers c into a buffer the codec hands to gRPC.
func (s *AuthServer) wireCheck(c *checkCall) (any, error) {
	buf := answers.Get(0)
	b, err := s.check(&c.view, &c.decision, *buf)
	if err != nil {
		answers.Put(buf)
		return nil, err
	}
	*buf = b
	c.answer.buf = buf
	return &c.answer, nil
}

// Check decides one request given as a message, for tests and in-process
// callers: the answer is the one the wire path encodes, decoded.
func (s *AuthServer) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	v := viewOf(req)
	var d authz.Decision
	b, err := s.check(&v, &d, nil)
	if err != nil {
		return nil, err
	}
	resp := new(authv3.CheckResponse)
	if err := proto.Unmarshal(b, resp); err != nil {
		return nil, status.Errorf(codes.Internal, "keygate: decoding its own answer: %v", err)
	}
	return resp, nil
}

// check decides v into d and appends the encoded CheckResponse to dst.
// Only OK, UNAUTHENTICATED and PERMISSION_DENIED answer a decision: with
// failure_mode_allow every other code lets the request through, so
// UNAVAILABLE is returned only while no policy is loaded.
func (s *AuthServer) check(v *checkView, d *authz.Decision, dst []byte) ([]byte, error) {
	start := time.Now()
	*d = s.authz.Decide(&v.Request)
	if d.Result == authz.Unavailable {
		s.obs.ObserveDecision("grpc", d, time.Since(start))
		s.logDecision(d, v, "", start)
		return nil, status.Error(codes.Unavailable, "keygate has no policy loaded yet")
	}
	// Every answer carries a decision id: in the body of a denial, in the
	// dynamic metadata of both, and in the decision log.
	id := authz.DecisionID(v.RequestID)
	dst = appendCheckResponse(dst, d, v.Headers, id)
	s.obs.ObserveDecision("grpc", d, time.Since(start))
	s.logDecision(d, v, id, start)
	return dst, nil
}

func (s *AuthServer) logDecision(d *authz.Decision, v *checkView, id string, start time.Time) {
	if !s.log.wants(d) {
		return
	}
	s.log.write(d, entry{transport: "grpc", id: id, method: v.Method, path: v.Path, source: v.Source, start: start})
}

// DeniedCode is the gRPC status of a denial. Only UNAUTHENTICATED and
// PERMISSION_DENIED deny: with failure_mode_allow any other code would let
// the request through.
func DeniedCode(d *authz.Decision) codes.Code {
	if d.Status == 401 {
		return codes.Unauthenticated
	}
	return codes.PermissionDenied
}

// DeniedHeaders are the response headers of a denial.
func DeniedHeaders(d *authz.Decision) []authz.Header {
	return appendDeniedHeaders(nil, d)
}

func appendDeniedHeaders(dst []authz.Header, d *authz.Decision) []authz.Header {
	dst = append(dst, authz.Header{Name: "content-type", Value: "application/json"})
	if c := d.Challenge(); c != "" {
		dst = append(dst, authz.Header{Name: "www-authenticate", Value: c})
	}
	return d.RateLimitHeaders(dst) // a 429's retry-after, ratelimit-policy and ratelimit
}
