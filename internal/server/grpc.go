// Package server adapts keygate's decisions to Envoy's ext_authz gRPC and
// HTTP protocols and serves health and admin endpoints.
package server

import (
	"context"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

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

// Check decides one request. Only OK, UNAUTHENTICATED and PERMISSION_DENIED
// answer a decision: with failure_mode_allow every other code lets the
// request through, so UNAVAILABLE is returned only while no policy is loaded.
func (s *AuthServer) Check(_ context.Context, req *authv3.CheckRequest) (*authv3.CheckResponse, error) {
	start := time.Now()
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	headers := h.GetHeaders()
	if len(headers) == 0 && h.GetHeaderMap() != nil {
		headers = headerMap(h.GetHeaderMap())
	}
	r := authz.Request{
		Method:   h.GetMethod(),
		Host:     h.GetHost(),
		Path:     h.GetPath(),
		Headers:  authz.MapHeaders(headers),
		Endpoint: attrs.GetContextExtensions()[authz.ContextEndpointKey],
	}
	d := s.authz.Decide(&r)
	if d.Result == authz.Unavailable {
		s.obs.ObserveDecision("grpc", &d, time.Since(start))
		s.logDecision(&d, &r, attrs, "", start)
		return nil, status.Error(codes.Unavailable, "keygate has no policy loaded yet")
	}
	// Every answer carries a decision id: in the body of a denial, in the
	// dynamic metadata of both, and in the decision log.
	id := authz.DecisionID(firstNonEmpty(headers["x-request-id"], h.GetId()))
	resp := checkResponse(&d, &r, id)
	s.obs.ObserveDecision("grpc", &d, time.Since(start))
	s.logDecision(&d, &r, attrs, id, start)
	return resp, nil
}

func (s *AuthServer) logDecision(d *authz.Decision, r *authz.Request, attrs *authv3.AttributeContext, id string, start time.Time) {
	if !s.log.wants(d) {
		return
	}
	src := ""
	if sa := attrs.GetSource().GetAddress().GetSocketAddress(); sa != nil {
		src = sa.GetAddress()
	}
	s.log.write(d, entry{transport: "grpc", id: id, method: r.Method, path: r.Path, source: src, start: start})
}

func checkResponse(d *authz.Decision, r *authz.Request, id string) *authv3.CheckResponse {
	if d.Result == authz.Allow {
		set := d.IdentityHeaders(make([]authz.Header, 0, 8))
		ok := &authv3.OkHttpResponse{
			Headers:         make([]*corev3.HeaderValueOption, len(set)),
			HeadersToRemove: d.HeadersToRemove(nil, r.Headers, set),
		}
		for i, kv := range set {
			ok.Headers[i] = headerOption(kv.Name, kv.Value)
		}
		return &authv3.CheckResponse{
			Status:          &rpcstatus.Status{Code: int32(codes.OK)},
			HttpResponse:    &authv3.CheckResponse_OkResponse{OkResponse: ok},
			DynamicMetadata: metadata(d, set, id),
		}
	}
	dh := DeniedHeaders(d)
	denied := &authv3.DeniedHttpResponse{
		Status:  &typev3.HttpStatus{Code: typev3.StatusCode(d.Status)},
		Headers: make([]*corev3.HeaderValueOption, len(dh)),
		Body:    d.Body(id),
	}
	for i, h := range dh {
		denied.Headers[i] = headerOption(h.Name, h.Value)
	}
	return &authv3.CheckResponse{
		Status:          &rpcstatus.Status{Code: int32(DeniedCode(d)), Message: d.Reason.String()},
		HttpResponse:    &authv3.CheckResponse_DeniedResponse{DeniedResponse: denied},
		DynamicMetadata: metadata(d, nil, id),
	}
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
	hs := []authz.Header{{Name: "content-type", Value: "application/json"}}
	if c := d.Challenge(); c != "" {
		hs = append(hs, authz.Header{Name: "www-authenticate", Value: c})
	}
	return hs
}

// headerOption sets a header, replacing any inbound value: a client's own
// x-keygate-user must never survive next to keygate's.
func headerOption(k, v string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{
		Header:       &corev3.HeaderValue{Key: k, Value: v},
		AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
	}
}

// metadata is the decision as Envoy dynamic metadata, keyed by the identity
// header names without their prefix (user, tenant, key-id, ...). Envoy puts it
// under the filter's namespace, for access logs and rate-limit descriptors:
// %DYNAMIC_METADATA(envoy.filters.http.ext_authz:user)%.
func metadata(d *authz.Decision, set []authz.Header, id string) *structpb.Struct {
	fields := make(map[string]*structpb.Value, len(set)+3)
	prefix := d.Snapshot.IdentityPrefix
	for _, kv := range set {
		fields[strings.TrimPrefix(kv.Name, prefix)] = structpb.NewStringValue(kv.Value)
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

// headerMap turns Envoy's raw header map (sent instead of headers when
// encode_raw_headers is on) into lower-case keys; repeated headers join
// with "," as Envoy does in the plain map.
func headerMap(hm *corev3.HeaderMap) map[string]string {
	out := make(map[string]string, len(hm.GetHeaders()))
	for _, hv := range hm.GetHeaders() {
		k := strings.ToLower(hv.GetKey())
		v := hv.GetValue()
		if raw := hv.GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		if prev, dup := out[k]; dup {
			v = prev + "," + v
		}
		out[k] = v
	}
	return out
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
