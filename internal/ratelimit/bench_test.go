package ratelimit

import (
	"fmt"
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
