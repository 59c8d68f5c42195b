package main

import (
	"context"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/server"
	"github.com/keygate/keygate/internal/source"
)

// allowAnswer is keygate's real answer to the load's request: the gRPC
// handler run in process on the generated policy.
func allowAnswer(tb testing.TB) *authv3.CheckResponse {
	tb.Helper()
	bp, err := generatePolicy(100)
	if err != nil {
		tb.Fatal(err)
	}
	data, _, err := bp.variants()
	if err != nil {
		tb.Fatal(err)
	}
	snap, err := policy.Load([]policy.Input{{Name: "policy.json", Data: data}}, policy.Options{Generation: 1})
	if err != nil {
		tb.Fatal(err)
	}
	st := source.NewStore()
	st.Publish(snap)
	c, err := cache.New(cache.DefaultSize, time.Minute)
	if err != nil {
		tb.Fatal(err)
	}
	srv := server.NewAuthServer(authz.New(st, c), server.NewDecisionLog(zap.NewNop(), server.LogDenied), nil)
	resp, err := srv.Check(context.Background(), checkRequest(bp.key))
	if err != nil {
		tb.Fatal(err)
	}
	if err := allowed(resp); err != nil {
		tb.Fatal(err)
	}
	return resp
}

// BenchmarkMarshalAnswer is the encoding of keygate's allow answer, which
// the floor's empty answer does not pay: as gRPC's default codec does it,
// and without the structpb dynamic metadata. With -tags vtprotobuf it adds
// go-control-plane's generated fast path (marshal_vtproto_test.go), one
// lever docs/performance.md names.
func BenchmarkMarshalAnswer(b *testing.B) {
	resp := allowAnswer(b)
	noMeta := proto.CloneOf(resp)
	noMeta.DynamicMetadata = nil
	for _, c := range []struct {
		name string
		msg  *authv3.CheckResponse
	}{{"proto", resp}, {"proto-no-metadata", noMeta}} {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := proto.Marshal(c.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	benchVTMarshal(b, resp)
}
