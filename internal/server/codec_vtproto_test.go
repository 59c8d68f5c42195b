//go:build vtprotobuf

package server

import authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

// With the build tag the Makefile sets, answers take the generated fast path.
var _ vtMarshaler = (*authv3.CheckResponse)(nil)
