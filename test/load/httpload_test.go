package main

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestHarnessSmokeHTTP runs the HTTP mode once, briefly: wrk gets a 200 for
// every request from both the floor and keygate, and CPU time is read.
func TestHarnessSmokeHTTP(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs keygate")
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		t.Skip(wrkMissing)
	}
	cfg := &config{
		mode:   "http",
		rounds: 1,
		load:   load{duration: time.Second, concurrency: 8},
		keys:   20,
		pin:    true,
	}
	var progress bytes.Buffer
	rep, err := bench(cfg, t.TempDir(), &progress)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, progress.String())
	}
	if len(rep.runs) != 2 {
		t.Fatalf("%d runs, want floor and keygate", len(rep.runs))
	}
	for _, r := range rep.runs {
		if r.s.requests == 0 || r.s.errors != 0 || r.s.quantile(0.99) <= 0 {
			t.Errorf("%s: %d requests, %d errors (first: %v), p99 %v; want some, none and a latency", r.server, r.s.requests, r.s.errors, r.s.firstErr, r.s.quantile(0.99))
		}
	}
	var out bytes.Buffer
	rep.print(&out)
	if !strings.Contains(out.String(), "keygate HTTP load benchmark") {
		t.Errorf("report does not say it measured HTTP:\n%s", out.String())
	}
	t.Log("\n" + out.String())
}

func TestParseWrk(t *testing.T) {
	r, err := parseWrk("Running 1s test @ http://127.0.0.1:1\nKGLOAD 4200 1000123 0 1 0 3 0 950 1800 4100\n")
	if err != nil {
		t.Fatal(err)
	}
	if r.requests != 4200 || r.duration != 1000123*time.Microsecond || r.errors != 4 || r.errKinds != " read 1 status 3" ||
		r.pct[0.5] != 950*time.Microsecond || r.pct[0.99] != 4100*time.Microsecond {
		t.Errorf("parseWrk = %+v", r)
	}
	if _, err := parseWrk("Running 1s test\n"); err == nil {
		t.Error("output without a summary parsed")
	}
}

func TestParseSelfTicks(t *testing.T) {
	stat := []byte("4242 (load) S 1 4242 4242 0 -1 4194560 812 0 0 0 731 269 40 60 20 0 7 0 1234 0 0")
	if got, err := parseSelfTicks(stat); err != nil || got != 1100 {
		t.Fatalf("parseSelfTicks = %d, %v; want 731+269+40+60 = 1100", got, err)
	}
}
