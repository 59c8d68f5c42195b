package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"syscall"
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

// BenchmarkCheckParallel is BenchmarkCheck's handler (request bytes in,
// answer bytes out, metrics on) called by every P at once, each goroutine
// presenting its own run of 1024 distinct keys. gate=default puts the
// handler behind the receive budget as keygate serve does by default (40
// MiB of 10 MiB messages: 4 Checks at once); gate=none leaves it out. Run
// it with -cpu 1,2,4,8.
func BenchmarkCheckParallel(b *testing.B) {
	const keys = 1024
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
	reqs := make([][]byte, keys)
	for i := range reqs {
		reqs[i], err = proto.Marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
			Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
				SocketAddress: &corev3.SocketAddress{Address: "10.0.0.1"}}}},
			Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
				Method: "GET", Host: "api.example.com", Path: "/orgs/acme-eu/sales/q1?year=2026",
				Headers: map[string]string{
					":authority": "api.example.com", ":method": "GET", ":path": "/orgs/acme-eu/sales/q1?year=2026",
					"authorization": fmt.Sprintf("Bearer key-%d", i*7), "user-agent": "bench", "accept": "*/*",
					"x-request-id": "8b1f9a0c", "x-forwarded-for": "10.0.0.1",
				},
			}},
		}})
		if err != nil {
			b.Fatal(err)
		}
	}
	for _, gated := range []bool{false, true} {
		name := "gate=none"
		if gated {
			name = "gate=default"
		}
		b.Run(name, func(b *testing.B) {
			st := source.NewStore()
			st.Publish(snap)
			c, _ := cache.New(cache.DefaultSize, time.Minute)
			m, err := metrics.New(prometheus.NewRegistry(), metrics.Config{Store: st, Cache: c, Source: "file"})
			if err != nil {
				b.Fatal(err)
			}
			var reg registrar
			var r grpc.ServiceRegistrar = &reg
			if gated {
				budget, err := server.NewRecvBudget(40<<20, 10<<20)
				if err != nil {
					b.Fatal(err)
				}
				r = budget.Registrar(&reg)
			}
			server.NewAuthServer(authz.New(st, c), server.NewDecisionLog(zap.NewNop(), server.LogDenied), m).Register(r)
			check := reg.desc.Methods[0].Handler
			codec := server.Codec{}
			ctx := context.Background()
			answer := func(req []byte) (mem.BufferSlice, error) {
				in := mem.BufferSlice{mem.SliceBuffer(req)}
				resp, err := check(reg.impl, ctx, func(v any) error { return codec.Unmarshal(in, v) }, nil)
				if err != nil {
					return nil, err
				}
				return codec.Marshal(resp)
			}
			for _, req := range reqs {
				out, err := answer(req)
				if err != nil {
					b.Fatal(err)
				}
				var resp authv3.CheckResponse
				if err := proto.Unmarshal(out.Materialize(), &resp); err != nil || resp.GetOkResponse() == nil {
					b.Fatal("not allowed")
				}
				out.Free()
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1)) * 131
				for pb.Next() {
					out, err := answer(reqs[i%keys])
					if err != nil {
						b.Error(err)
						return
					}
					out.Free() // as gRPC does once it has written the answer
					i++
				}
			})
		})
	}
}

// reportCPU reports the process's CPU time per operation (user and system,
// every thread), from now until the returned func runs: flat across -cpu
// when the cores do not contend, whatever else the machine runs.
func reportCPU(b *testing.B) func() {
	start := cpuTime(b)
	return func() {
		b.ReportMetric(float64(cpuTime(b)-start)/float64(b.N), "cpu-ns/op")
	}
}

func cpuTime(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
