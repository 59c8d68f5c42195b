package metrics_test

import (
	"math"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/authz"
)

// The duration histogram reads what was observed: each bucket counts the
// observations at or under its bound, +Inf and the count all of them, and
// the sum is in seconds. Observed from many goroutines at once, none is
// lost between the stripes (run with -race).
func TestDurationHistogram(t *testing.T) {
	reg, m, _, _ := setup(t)
	d := &authz.Decision{Result: authz.Allow, Reason: authz.ReasonDefaultAllow}
	took := []time.Duration{5 * time.Microsecond, 10 * time.Microsecond, 30 * time.Microsecond, 200 * time.Millisecond}
	const goroutines = 8
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, dt := range took {
				m.ObserveDecision("grpc", d, dt)
			}
		}()
	}
	wg.Wait()
	m.ObserveDecision("http", d, time.Millisecond)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	for _, mf := range mfs {
		if n := mf.GetName(); n == "keygate_check_duration_seconds" || n == "keygate_decisions_total" {
			seen++
		}
	}
	if seen != 2 {
		t.Fatalf("%d of the two families gathered", seen)
	}
	for _, mf := range mfs {
		if mf.GetName() == "keygate_decisions_total" {
			dec := mf.GetMetric()
			if len(dec) != 1 || dec[0].GetCounter().GetValue() != 4*goroutines+1 {
				t.Errorf("decisions: %v, want one series of %d", dec, 4*goroutines+1)
			}
			continue
		}
		if mf.GetName() != "keygate_check_duration_seconds" {
			continue
		}
		for _, s := range mf.GetMetric() {
			h := s.GetHistogram()
			transport := s.GetLabel()[0].GetValue()
			want := map[string]struct {
				count uint64
				sum   float64
				le    map[float64]uint64
			}{
				"grpc": {4 * goroutines, goroutines * 0.200045, map[float64]uint64{.00001: 2 * goroutines, .000025: 2 * goroutines, .00005: 3 * goroutines, .1: 3 * goroutines}},
				"http": {1, 0.001, map[float64]uint64{.0005: 0, .001: 1, .1: 1}},
			}[transport]
			if h.GetSampleCount() != want.count || math.Abs(h.GetSampleSum()-want.sum) > 1e-9 {
				t.Errorf("%s: count %d sum %g, want %d and %g", transport, h.GetSampleCount(), h.GetSampleSum(), want.count, want.sum)
			}
			for _, b := range h.GetBucket() {
				if n, ok := want.le[b.GetUpperBound()]; ok && b.GetCumulativeCount() != n {
					t.Errorf("%s: bucket le=%g holds %d, want %d", transport, b.GetUpperBound(), b.GetCumulativeCount(), n)
				}
			}
		}
	}
}
