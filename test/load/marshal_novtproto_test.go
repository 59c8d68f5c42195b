//go:build !vtprotobuf

package main

import (
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
)

// benchVTMarshal needs go-control-plane's vtproto code, built only with
// -tags vtprotobuf.
func benchVTMarshal(*testing.B, *authv3.CheckResponse) {}
