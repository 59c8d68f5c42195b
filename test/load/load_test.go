package main

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/test/internal/harness"
)

// TestMain lets the test binary act as the floor server, as the harness
// re-executes itself for it; after the tests, no keygate may have printed
// a key the load sent.
func TestMain(m *testing.M) {
	if code, handled := childMain(os.Args[1:]); handled {
		os.Exit(code)
	}
	os.Exit(harness.Main(m))
}

// TestHarnessSmoke runs the whole harness once per case, briefly, with a
// tiny policy: both servers answer every request with an allow and CPU time
// is read; with policy swaps keygate reloads under load without an error,
// and with -session signed every request is a signed-in user's and keygate
// never prints the token.
func TestHarnessSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs keygate")
	}
	for _, tc := range []struct {
		name       string
		set        func(*config)
		wantRuns   []string
		wantReport []string
	}{
		{"api key, reloads", func(c *config) { c.reloadEvery = 250 * time.Millisecond },
			[]string{floorName, keygateSrv, reloadName}, []string{"keygate ÷ floor", "CPU/req µs", "reloading ÷ steady"}},
		{"signed session", func(c *config) { c.session = "signed" },
			[]string{floorName, keygateSrv}, []string{"keygate ÷ floor", "CPU/req µs", "signed session (JWT, EdDSA) of alice"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := &config{
				rounds: 1,
				load:   load{warmup: 200 * time.Millisecond, duration: time.Second, concurrency: 8, connections: 2},
				keys:   20,
				pin:    true,
			}
			tc.set(cfg)
			var progress bytes.Buffer
			rep, err := bench(cfg, t.TempDir(), &progress)
			if err != nil {
				t.Fatalf("bench: %v\n%s", err, progress.String())
			}
			var got []string
			for _, r := range rep.runs {
				got = append(got, r.server)
				if r.s.requests == 0 || r.s.errors != 0 {
					t.Errorf("%s: %d requests, %d errors (first: %v); want some and none", r.server, r.s.requests, r.s.errors, r.s.firstErr)
				}
				if r.server == reloadName && r.reloads == 0 {
					t.Errorf("%s: keygate reloaded the policy 0 times", r.server)
				}
			}
			if !slices.Equal(got, tc.wantRuns) {
				t.Fatalf("runs %q, want %q", got, tc.wantRuns)
			}
			var out bytes.Buffer
			rep.print(&out)
			for _, want := range tc.wantReport {
				if !strings.Contains(out.String(), want) {
					t.Errorf("report lacks %q:\n%s", want, out.String())
				}
			}
			// keygate has exited: everything it printed is scanned for the
			// key and the session the load sent (bench registers both).
			for _, leak := range harness.LeakedSecrets() {
				t.Error(leak)
			}
			t.Log("\n" + out.String())
		})
	}
}

func TestParseConfigSession(t *testing.T) {
	for _, tc := range []struct {
		args    []string
		wantErr string
	}{
		{[]string{"-session", "signed"}, ""},
		{[]string{"-session", "opaque"}, "must be signed"},
		{[]string{"-session", "signed", "-mode", "http"}, "gRPC rounds only"},
		{[]string{"-session", "signed", "-soak", "1m"}, "gRPC rounds only"},
		{[]string{"-session", "signed", "-ratelimit", "local"}, "one at a time"},
	} {
		_, err := parseConfig(tc.args, io.Discard)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("parseConfig(%q): %v", tc.args, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("parseConfig(%q) = %v, want an error about %q", tc.args, err, tc.wantErr)
		}
	}
}

// TestWritePolicy: -write-policy writes the policy the rounds serve, one
// keygate loads with every key, and starts nothing.
func TestWritePolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.json")
	var stderr strings.Builder
	if code := run([]string{"-write-policy", path, "-keys", "300"}, io.Discard, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	snap, err := policy.LoadPath(path, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Counts().APIKeys; got != 300 {
		t.Errorf("the written policy has %d keys, want 300", got)
	}
}

func TestParseStatTicks(t *testing.T) {
	stat := []byte("4242 (key gate) S 1 4242 4242 0 -1 4194560 812 0 0 0 731 269 0 0 20 0 7 0 1234 0 0")
	got, err := parseStatTicks(stat)
	if err != nil || got != 1000 {
		t.Fatalf("parseStatTicks = %d, %v; want 731+269 = 1000", got, err)
	}
	if _, err := parseStatTicks([]byte("4242 (x) S 1")); err == nil {
		t.Fatal("a short stat line parsed")
	}
}

func TestQuantile(t *testing.T) {
	var l []time.Duration
	for i := 1; i <= 100; i++ {
		l = append(l, time.Duration(i))
	}
	for q, want := range map[float64]time.Duration{0.5: 51, 0.9: 90, 0.99: 99, 1: 100} {
		if got := quantile(l, q); got != want {
			t.Errorf("quantile(%v) = %d, want %d", q, got, want)
		}
	}
}
