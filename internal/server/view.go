package server

import (
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/internal/authz"
)

// checkView is everything keygate reads from a CheckRequest. The gRPC
// handler decodes the wire bytes straight into it, so the rest of Envoy's
// request (addresses, TLS session, metadata, body) is never materialized.
type checkView struct {
	authz.Request
	RequestID string // attributes.request.http.id: Envoy's x-request-id
	Source    string // attributes.source.address.socket_address.address, for the decision log
}

// viewOf reads the view from a decoded CheckRequest.
func viewOf(req *authv3.CheckRequest) checkView {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	headers := h.GetHeaders()
	if len(headers) == 0 && h.GetHeaderMap() != nil {
		headers = headerMap(h.GetHeaderMap())
	}
	return checkView{
		Request: authz.Request{
			Method:   h.GetMethod(),
			Host:     h.GetHost(),
			Path:     h.GetPath(),
			Headers:  authz.MapHeaders(headers),
			Endpoint: attrs.GetContextExtensions()[authz.ContextEndpointKey],
		},
		RequestID: firstNonEmpty(headers["x-request-id"], h.GetId()),
		Source:    attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
	}
}

// decodeCheckRequestSlow decodes through the generated message: the
// reference the fast decoder is tested against.
func decodeCheckRequestSlow(data []byte, v *checkView) error {
	var req authv3.CheckRequest
	if err := proto.Unmarshal(data, &req); err != nil {
		return err
	}
	*v = viewOf(&req)
	return nil
}
