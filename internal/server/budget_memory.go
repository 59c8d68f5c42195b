package server

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// After a burst, Go keeps the heap it grew: the garbage stays until the
// next collection, which an idle server reaches only by the runtime's
// two-minute timer, and the scavenger then returns pages slowly. So once
// the server is quiet, ReturnMemory collects and returns what it no longer
// needs at once, and a pod's RSS goes back down within seconds.

// Quiet means no unary call reserved or waited at a tick and less than
// quietAllocs bytes were allocated since the one before.
const (
	quietAllocs = 1 << 20
	// Less than this above the live heap is left to the runtime.
	returnAbove = 32 << 20
)

// memSample is what the runtime reports that ReturnMemory decides on.
type memSample struct {
	allocs   uint64 // bytes allocated since the process started
	mapped   uint64 // bytes the runtime holds from the OS, less what it returned
	live     uint64 // the heap marked live by the last collection
	inFlight bool   // a unary call reserved or waited
}

var memMetrics = []string{
	"/gc/heap/allocs:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
	"/gc/heap/live:bytes",
}

func readMem(b *RecvBudget) memSample {
	s := make([]metrics.Sample, len(memMetrics))
	for i, name := range memMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	v := func(i int) uint64 {
		if s[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return s[i].Value.Uint64()
	}
	return memSample{
		allocs:   v(0),
		mapped:   v(1) - v(2),
		live:     v(3),
		inFlight: b.InUse() > 0 || b.Waiting() > 0,
	}
}

// shouldReturn says whether to give memory back now: the server is quiet
// and holds more than returnAbove beyond its live heap.
func shouldReturn(prev, cur memSample) bool {
	quiet := !cur.inFlight && cur.allocs-prev.allocs < quietAllocs
	return quiet && cur.mapped > cur.live+returnAbove
}

// ReturnMemory checks every interval until ctx ends, and returns memory to
// the OS (debug.FreeOSMemory: a collection, then every free page) when the
// server has gone quiet holding more than it needs. freed, if not nil, is
// told how many bytes the runtime held before and after.
func ReturnMemory(ctx context.Context, b *RecvBudget, every time.Duration, freed func(before, after uint64)) {
	t := time.NewTicker(every)
	defer t.Stop()
	prev := readMem(b)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := readMem(b)
		if shouldReturn(prev, cur) {
			// Pooled buffers (gRPC's among them) outlive one collection
			// in sync.Pool's victim cache: the second one frees them.
			runtime.GC()
			debug.FreeOSMemory()
			after := readMem(b)
			if freed != nil {
				freed(cur.mapped, after.mapped)
			}
			cur = after
		}
		prev = cur
	}
}
