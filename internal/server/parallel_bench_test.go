package server_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/internal/server"
)

// BenchmarkCheckParallel is BenchmarkCheck's handler (request bytes in,
// answer bytes out, metrics on) called by every P at once, each goroutine
// presenting its own run of 1024 distinct keys. gate=default puts the
// handler behind a receive budget of four 10 MiB messages (keygate serve's
// default up to four CPUs: 4 Checks at once); gate=none leaves it out. Run
// it with -cpu 1,2,4,8.
func BenchmarkCheckParallel(b *testing.B) {
	const keys = 1024
	snap := benchSnapshot(b)
	reqs := make([][]byte, keys)
	for i := range reqs {
		reqs[i] = benchCheckRequest(b, fmt.Sprintf("key-%d", i*7))
	}
	for _, gated := range []bool{false, true} {
		name := "gate=none"
		if gated {
			name = "gate=default"
		}
		b.Run(name, func(b *testing.B) {
			a, m := benchAuthorizer(b, snap, true)
			var reg registrar
			var r grpc.ServiceRegistrar = &reg
			if gated {
				budget, err := server.NewRecvBudget(40<<20, 10<<20)
				if err != nil {
					b.Fatal(err)
				}
				r = budget.Registrar(&reg)
			}
			server.NewAuthServer(a, server.NewDecisionLog(zap.NewNop(), server.LogDenied), m).Register(r)
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
