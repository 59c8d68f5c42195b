package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/metrics"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/server"
	"github.com/keygate/keygate/internal/source"
)

// BenchmarkCheck is the gRPC Check handler as the server runs it, without
// the network: the request's bytes decoded by the codec, the decision, the
// answer encoded to bytes by the codec, with metrics off and on, to show
// what recording them costs.
func BenchmarkCheck(b *testing.B) {
	snap := benchSnapshot(b)
	req := benchCheckRequest(b, "key-4242")
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("metrics=%v", on), func(b *testing.B) {
			a, obs := benchAuthorizer(b, snap, on)
			var reg registrar
			server.NewAuthServer(a, server.NewDecisionLog(zap.NewNop(), server.LogDenied), obs).Register(&reg)
			check := reg.desc.Methods[0].Handler
			codec := server.Codec{}
			in := mem.BufferSlice{mem.SliceBuffer(req)}
			dec := func(v any) error { return codec.Unmarshal(in, v) }
			ctx := context.Background()
			answer := func() mem.BufferSlice {
				resp, err := check(reg.impl, ctx, dec, nil)
				if err != nil {
					b.Fatal(err)
				}
				out, err := codec.Marshal(resp)
				if err != nil {
					b.Fatal(err)
				}
				return out
			}
			out := answer()
			var resp authv3.CheckResponse
			if err := proto.Unmarshal(out.Materialize(), &resp); err != nil || resp.GetOkResponse() == nil {
				b.Fatal("not allowed")
			}
			out.Free()
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				answer().Free() // as gRPC does once it has written the answer
			}
		})
	}
}

// registrar keeps the service a Register call describes.
type registrar struct {
	desc *grpc.ServiceDesc
	impl any
}

func (r *registrar) RegisterService(desc *grpc.ServiceDesc, impl any) { r.desc, r.impl = desc, impl }

// benchSnapshot is the benchmarks' policy: 10,000 keys key-0 ... key-9999
// (user u<i>, group sales, tenant acme) and ten endpoints, the last of them
// /orgs/{org}/sales/** for group sales with the org from the path.
func benchSnapshot(b *testing.B) *policy.Snapshot {
	b.Helper()
	var doc strings.Builder
	doc.WriteString("version: 1\ngroups: [{name: sales}]\ntenants: [{id: acme, orgs: [acme-eu]}]\nendpoints:\n")
	for i := 0; i < 9; i++ {
		fmt.Fprintf(&doc, "  - {name: e%d, match: {path: \"/svc%d/**\"}}\n", i, i)
	}
	doc.WriteString("  - {name: sales, match: {path: \"/orgs/{org}/sales/**\"}, groups: [sales], org: {from: path, name: org}}\napi_keys:\n")
	for i := 0; i < 10_000; i++ {
		fmt.Fprintf(&doc, "  - {id: k%d, hash: %q, tenant: acme, user: u%d, groups: [sales]}\n", i, policy.FormatDigest(apikey.Digest(fmt.Sprintf("key-%d", i))), i)
	}
	snap, err := policy.Load([]policy.Input{{Name: "b.yaml", Data: []byte(doc.String())}}, policy.Options{Generation: 1})
	if err != nil {
		b.Fatal(err)
	}
	return snap
}

// benchCheckRequest is the encoded CheckRequest the gRPC benchmarks send:
// GET /orgs/acme-eu/sales/q1 with key as a bearer token.
func benchCheckRequest(b *testing.B, key string) []byte {
	b.Helper()
	req, err := proto.Marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1"}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "api.example.com", Path: "/orgs/acme-eu/sales/q1?year=2026",
			Headers: map[string]string{
				":authority": "api.example.com", ":method": "GET", ":path": "/orgs/acme-eu/sales/q1?year=2026",
				"authorization": "Bearer " + key, "user-agent": "bench", "accept": "*/*",
				"x-request-id": "8b1f9a0c", "x-forwarded-for": "10.0.0.1",
			},
		}},
	}})
	if err != nil {
		b.Fatal(err)
	}
	return req
}

// benchAuthorizer decides against snap through a fresh cache; obs records
// metrics when metricsOn, else it is nil.
func benchAuthorizer(b *testing.B, snap *policy.Snapshot, metricsOn bool) (*authz.Authorizer, server.Observer) {
	b.Helper()
	st := source.NewStore()
	st.Publish(snap)
	c, err := cache.New(cache.DefaultSize, time.Minute)
	if err != nil {
		b.Fatal(err)
	}
	if !metricsOn {
		return authz.New(st, c), nil
	}
	m, err := metrics.New(prometheus.NewRegistry(), metrics.Config{Store: st, Cache: c, Source: "file"})
	if err != nil {
		b.Fatal(err)
	}
	return authz.New(st, c), m
}
