package server

import (
	"cmp"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/internal/authz"
)

// checkView is everything keygate reads from a CheckRequest. The gRPC
// handler decodes the wire bytes straight into it, so the rest of Envoy's
// request (addresses, TLS session, metadata, body) is never materialized.
type checkView struct {
	authz.Request
	RequestID string // attributes.request.http.id: Envoy's x-request-id
	Source    string // attributes.source.address.socket_address.address, for the decision log

	// Malformed says why the request could not be read; the view is then
	// malformedView's, which Decide denies.
	Malformed error
}

// malformedView is the view of a request that could not be read: it is
// decided (403 malformed_request), never answered with a gRPC error, which
// failure_mode_allow would let through.
func malformedView(err error) checkView {
	return checkView{Request: authz.Request{Malformed: true}, Malformed: err}
}

// viewOf reads the view from a decoded CheckRequest, as decodeCheckRequest
// reads it from the wire: the headers come from header_map when headers is
// empty, and a header name that is not UTF-8 makes the request malformed.
func viewOf(req *authv3.CheckRequest) checkView {
	attrs := req.GetAttributes()
	h := attrs.GetRequest().GetHttp()
	headers := h.GetHeaders()
	if len(headers) == 0 && h.GetHeaderMap() != nil {
		raw := make([]authz.Header, 0, len(h.GetHeaderMap().GetHeaders()))
		for _, hv := range h.GetHeaderMap().GetHeaders() {
			v := hv.GetValue()
			if len(hv.GetRawValue()) > 0 {
				v = string(hv.GetRawValue())
			}
			raw = append(raw, authz.Header{Name: hv.GetKey(), Value: v})
		}
		var err error
		if headers, err = rawHeaders(raw); err != nil {
			return malformedView(err)
		}
	}
	for name := range headers {
		if !utf8.ValidString(name) {
			return malformedView(errWireHeaderName)
		}
	}
	return checkView{
		Request: authz.Request{
			Method:   h.GetMethod(),
			Host:     h.GetHost(),
			Path:     h.GetPath(),
			Headers:  authz.MapHeaders(headers),
			Endpoint: attrs.GetContextExtensions()[authz.ContextEndpointKey],
		},
		RequestID: cmp.Or(headers["x-request-id"], h.GetId()),
		Source:    attrs.GetSource().GetAddress().GetSocketAddress().GetAddress(),
	}
}
