package ratelimit

import (
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkLocalTake is one request's spend from a budget held in the
// local store (a hit), from one and from three budgets, the most a policy
// applies (the endpoint's, the key's and the session's).
func BenchmarkLocalTake(b *testing.B) {
	for _, n := range []int{1, 3} {
		b.Run(fmt.Sprint("buckets=", n), func(b *testing.B) {
			l, _ := NewLocal(DefaultLocalSize)
			bs := []Bucket{
				{Name: "search", Requests: 1 << 40, Per: time.Second, By: "user", Scope: "acme", ID: "alice"},
				{Name: "standard", Requests: 1 << 40, Per: time.Minute, By: "key", ID: "kg_7Hq2pX"},
				{Name: "standard", Requests: 1 << 40, Per: time.Minute, By: "session", ID: "s_91ab"},
			}[:n]
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				if v, _ := l.Take(now, bs); !v.Allowed {
					b.Fatal("denied")
				}
			}
		})
	}
}

// BenchmarkLocalMemory fills the local store with a million distinct
// budgets (the default size) and reports the live heap they hold, per
// budget and in all. Run it once: -bench LocalMemory -benchtime 1x.
func BenchmarkLocalMemory(b *testing.B) {
	const n = DefaultLocalSize
	for b.Loop() {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		l, _ := NewLocal(n)
		now := time.Now()
		bs := []Bucket{{Name: "standard", Requests: 100, Per: time.Minute, By: "key"}}
		for i := range n {
			bs[0].ID = "kg_" + strconv.Itoa(i) // the ids are the policy's, held by it: not counted here
			l.Take(now, bs)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		held := float64(after.HeapAlloc) - float64(before.HeapAlloc)
		b.ReportMetric(held/n, "bytes/budget")
		b.ReportMetric(held/(1<<20), "MiB")
		runtime.KeepAlive(l)
	}
}
