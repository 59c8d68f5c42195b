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

// returnAbove is how much more than after the last return the runtime may
// hold before it is given back.
const returnAbove = 32 << 20

// memSample is what the runtime reports that ReturnMemory decides on.
type memSample struct {
	allocs   uint64 // bytes allocated since the process started
	mapped   uint64 // bytes the runtime holds from the OS, less what it returned
	inFlight bool   // a unary call reserved or waited
}

var memMetrics = []string{
	"/gc/heap/allocs:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/released:bytes",
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
		inFlight: b.InUse() > 0 || b.Waiting() > 0,
	}
}

// shouldReturn says whether to give memory back now: the runtime holds
// returnAbove more than it kept after the last return (kept; 0 before the
// first), and the server is quiet: no call reserves or waits, and it
// allocated less since the last tick than an eighth of the excess, which
// it is therefore not about to reuse. (The live heap the runtime reports is
// the last collection's: after a burst, the burst's, so it is no guide.)
func shouldReturn(prev, cur memSample, kept uint64) bool {
	if cur.inFlight || cur.mapped <= kept+returnAbove {
		return false
	}
	return cur.allocs-prev.allocs < (cur.mapped-kept)/8
}

// ReturnMemory checks every interval until ctx ends, and returns memory to
// the OS (debug.FreeOSMemory: a collection, then every free page) when the
// server has gone quiet holding more than it needs. freed, if not nil, is
// told how many bytes the runtime held before and after.
func ReturnMemory(ctx context.Context, b *RecvBudget, every time.Duration, freed func(before, after uint64)) {
	t := time.NewTicker(every)
	defer t.Stop()
	prev := readMem(b)
	var kept uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur := readMem(b)
		if shouldReturn(prev, cur, kept) {
			// Pooled buffers (gRPC's among them) outlive one collection
			// in sync.Pool's victim cache: the second one frees them.
			runtime.GC()
			debug.FreeOSMemory()
			after := readMem(b)
			if freed != nil {
				freed(cur.mapped, after.mapped)
			}
			cur, kept = after, after.mapped
		}
		prev = cur
	}
}
