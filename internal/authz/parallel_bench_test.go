package authz_test

import (
	"fmt"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
)

// BenchmarkDecideParallel is BenchmarkDecide's request (10,000 keys, 10
// endpoints, a cache hit) decided by every P at once, as Envoy's many
// connections do. keys=1024: each goroutine walks its own run of a
// thousand distinct keys, the traffic of a fleet of clients; keys=1: every
// goroutine presents the same key, the worst case for a cache sharded by
// digest. Run it with -cpu 1,2,4,8: on a machine of n cores, ns/op at
// -cpu n should be about ns/op at -cpu 1 divided by n.
func BenchmarkDecideParallel(b *testing.B) {
	snap := benchSnapshot(b, 10_000, 10, fillDistinct)
	for _, keys := range []int{1024, 1} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			c, _ := cache.New(cache.DefaultSize, cache.DefaultNegativeTTL)
			a := authz.New(fixedStore{snap}, c)
			reqs := make([]authz.Request, keys)
			for i := range reqs {
				reqs[i] = authz.Request{
					Method: "GET", Host: "api.example.com:443", Path: "/orgs/acme-eu/sales/reports?year=2026",
					Headers: authz.MapHeaders{
						":authority": "api.example.com", "authorization": fmt.Sprintf("Bearer bench-key-%08d", i*7),
						"user-agent": "bench", "accept": "*/*", "x-request-id": "r1", "x-forwarded-for": "10.0.0.1",
						"x-keygate-user": "spoof", "content-type": "application/json",
					},
				}
				if d := a.Decide(&reqs[i]); d.Result != authz.Allow || d.Endpoint.Name != "sales" {
					b.Fatalf("want allow by sales, got %v %v", d.Status, d.Reason)
				}
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			defer reportCPU(b)()
			b.RunParallel(func(pb *testing.PB) {
				i := int(next.Add(1)) * 131 // goroutines start apart in the key set
				for pb.Next() {
					if d := a.Decide(&reqs[i%keys]); d.Result != authz.Allow {
						b.Error("denied")
						return
					}
					i++
				}
			})
		})
	}
}

// reportCPU reports the process's CPU time (user and system, every thread)
// per operation, from now until the returned func runs. Unlike ns/op it does
// not depend on how much of the machine other processes leave free: with no
// contention between cores it stays flat from -cpu 1 to -cpu 8, and spinning
// on a lock or bouncing a cache line between cores raises it.
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
