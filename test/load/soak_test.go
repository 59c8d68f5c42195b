package main

import (
	"bytes"
	"testing"
	"time"
)

// TestSoakShort is the soak of `make soak` in brief: 9 s of load with a few
// hundred keys while the policy is rewritten every second, alternately with
// and without K_flip. It asserts no error on the main load, that K_flip is
// never allowed once a reload without it has completed (and is allowed once
// a reload with it has), at least 5 reloads, and flat goroutines and heap.
// No latency is asserted: it must pass on a loaded 2-core machine.
func TestSoakShort(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs keygate")
	}
	var progress bytes.Buffer
	res, err := soak(soakConfig{
		duration:     9 * time.Second,
		keys:         300,
		concurrency:  20,
		connections:  4,
		flipEvery:    time.Second,
		sampleEvery:  time.Second,
		warmup:       2 * time.Second,
		reloadWithin: 5 * time.Second,
	}, t.TempDir(), &progress)
	if err != nil {
		t.Fatalf("soak: %v\n%s", err, progress.String())
	}
	var out bytes.Buffer
	res.print(&out)
	for _, p := range res.problems(5) {
		t.Error(p)
	}
	if res.revokedProbes == 0 || res.restoredProbes == 0 {
		t.Errorf("%d checks with K_flip removed, %d with it listed; want some of each", res.revokedProbes, res.restoredProbes)
	}
	t.Log("\n" + progress.String() + out.String())
}
