package proxy

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/test/internal/harness"
)

// envoyStatusOnError is what Envoy answers when the Check fails (keygate
// unreachable, timing out, or not OK/UNAUTHENTICATED/PERMISSION_DENIED),
// as envoy/envoy-grpc.yaml configures it: failure_mode_allow false,
// status_on_error 503.
const envoyStatusOnError = http.StatusServiceUnavailable

// grpcTarget plays Envoy in front of keygate's gRPC adapter: each scenario
// becomes a CheckRequest sent by a real go-control-plane client over a
// socket; an OK answer's headers are applied to the request as Envoy does
// (set first, then headers_to_remove) and the request goes to the backend; a
// denial is returned to the client as Envoy would.
func grpcTarget(t *testing.T, kg *harness.Keygate, be *backend) *target {
	t.Helper()
	conn, err := grpc.NewClient(kg.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("grpc client: %v", err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	client := authv3.NewAuthorizationClient(conn)
	httpClient := &http.Client{Timeout: 10 * time.Second}
	authority := "api.example.test:8443" // the host the client called, as Envoy's :authority

	do := func(r clientRequest) (outcome, error) {
		headers := map[string]string{
			":authority": authority, ":method": r.method, ":path": r.path, ":scheme": "https",
			"x-request-id": r.id,
		}
		for k, v := range r.header {
			headers[strings.ToLower(k)] = strings.Join(v, ",")
		}
		req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Id: r.id, Method: r.method, Host: authority, Path: r.path,
				Scheme: "https", Protocol: "HTTP/1.1", Headers: headers,
			}},
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := client.Check(ctx, req)
		if err != nil {
			// Envoy's ext_authz with failure_mode_allow: false.
			return outcome{status: envoyStatusOnError, header: http.Header{}}, nil
		}
		var problems []string
		code := codes.Code(resp.GetStatus().GetCode())
		if code == codes.OK {
			return forward(httpClient, be, authority, r, resp.GetOkResponse())
		}
		denied := resp.GetDeniedResponse()
		status := int(denied.GetStatus().GetCode())
		if status == 0 {
			status = http.StatusForbidden // Envoy's default for a denial without a status
		}
		switch {
		case code != codes.Unauthenticated && code != codes.PermissionDenied:
			problems = append(problems, fmt.Sprintf("denial with gRPC code %v: with failure_mode_allow Envoy would let it through", code))
		case code == codes.Unauthenticated && status != http.StatusUnauthorized,
			code == codes.PermissionDenied && status != http.StatusForbidden:
			problems = append(problems, fmt.Sprintf("gRPC code %v with HTTP status %d", code, status))
		}
		hdr := http.Header{}
		for _, o := range denied.GetHeaders() {
			applyHeaderOption(hdr, o)
		}
		return outcome{status: status, header: hdr, body: []byte(denied.GetBody()), problems: problems}, nil
	}
	return &target{name: "grpc", do: do}
}

// forward sends an allowed request to the backend the way Envoy would after
// an OK Check: the client's headers, then the answer's headers set, then its
// headers_to_remove removed.
func forward(c *http.Client, be *backend, authority string, r clientRequest, ok *authv3.OkHttpResponse) (outcome, error) {
	var problems []string
	hdr := r.header.Clone()
	set := map[string]bool{}
	for _, o := range ok.GetHeaders() {
		applyHeaderOption(hdr, o)
		set[strings.ToLower(o.GetHeader().GetKey())] = true
	}
	for _, name := range ok.GetHeadersToRemove() {
		lname := strings.ToLower(name)
		switch {
		case set[lname]:
			problems = append(problems, fmt.Sprintf("%s is both set and in headers_to_remove: Envoy removes after it sets, so it would vanish", name))
		case strings.HasPrefix(lname, ":") || lname == "host":
			problems = append(problems, fmt.Sprintf("headers_to_remove names %s, which Envoy refuses to remove", name))
		}
		hdr.Del(name)
	}
	req, err := http.NewRequest(r.method, be.srv.URL+r.path, bodyReader(r.body))
	if err != nil {
		return outcome{}, err
	}
	req.Header = hdr
	req.Host = authority
	out, err := send(c, req)
	out.problems = problems
	return out, err
}

// applyHeaderOption applies one HeaderValueOption as Envoy does: the
// deprecated append flag when present, else append_action.
func applyHeaderOption(h http.Header, o *corev3.HeaderValueOption) {
	k, v := o.GetHeader().GetKey(), o.GetHeader().GetValue()
	if o.GetAppend() != nil {
		if o.GetAppend().GetValue() {
			h.Add(k, v)
		} else {
			h.Set(k, v)
		}
		return
	}
	_, present := h[http.CanonicalHeaderKey(k)]
	switch o.GetAppendAction() {
	case corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD:
		h.Add(k, v)
	case corev3.HeaderValueOption_ADD_IF_ABSENT:
		if !present {
			h.Set(k, v)
		}
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD:
		h.Set(k, v)
	case corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
		if present {
			h.Set(k, v)
		}
	}
}
