//go:build vtprotobuf

package main

import (
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"
)

func benchVTMarshal(b *testing.B, resp *authv3.CheckResponse) {
	vt, err := resp.MarshalVTStrict()
	if err != nil {
		b.Fatal(err)
	}
	if !proto.Equal(resp, decode(b, vt)) {
		b.Fatal("MarshalVTStrict does not round-trip")
	}
	b.Run("vtproto", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := resp.MarshalVTStrict(); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func decode(b *testing.B, data []byte) *authv3.CheckResponse {
	var m authv3.CheckResponse
	if err := proto.Unmarshal(data, &m); err != nil {
		b.Fatal(err)
	}
	return &m
}
