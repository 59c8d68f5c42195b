// Package envoytest holds what keygate's tests send as Envoy would: the
// realistic ext_authz CheckRequest that the decoder tests (internal/server)
// and the load benchmark (test/load) both send, so that the request the
// benchmark measures is the one the decoder is tested with, and RawCodec for
// requests that are already bytes. It is for tests and test programs only: keygate itself never
// imports it.
package envoytest

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// Path is the request target of CheckRequest.
const Path = "/orgs/acme-eu/sales/q1?x=1"

// CheckRequest is what Envoy sends for `GET /orgs/acme-eu/sales/q1?x=1` to
// api.example.com with key as a bearer token: eight headers, source and
// destination peers, Envoy's request id. Each call builds a fresh message.
func CheckRequest(key string) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      SocketPeer("10.12.7.31", 53124),
		Destination: SocketPeer("10.12.0.10", 8443),
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "15736402381946734582", Method: "GET", Host: "api.example.com", Path: Path,
			Scheme: "https", Protocol: "HTTP/2",
			Headers: map[string]string{
				":authority":    "api.example.com",
				":method":       "GET",
				":path":         Path,
				":scheme":       "https",
				"authorization": "Bearer " + key,
				"x-request-id":  "4f6c1d2e-8a7b-4c3d-9e0f-1a2b3c4d5e6f",
				"user-agent":    "acme-sales-sync/2.3.1 (linux; go1.26)",
				"accept":        "application/json",
			},
		}},
	}}
}

// SocketPeer is a peer at a TCP socket address, as Envoy describes the
// client (source) and itself (destination).
func SocketPeer(ip string, port uint32) *authv3.AttributeContext_Peer {
	return &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
		SocketAddress: &corev3.SocketAddress{Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}},
	}}}
}
