package source

import (
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
)

// TestReloadsYieldWhileBusy: the first load runs flat out (nothing is served
// yet); a reload of a large policy while requests are being decided (its
// fingerprint, then its load) runs beside them on a low-priority thread
// where it can, and otherwise asks
// whether requests are being decided while it works, and sleeps only when
// they are.
func TestReloadsYieldWhileBusy(t *testing.T) {
	ids := make([]string, 20_000)
	for i := range ids {
		ids[i] = fmt.Sprintf("k%d", i)
	}
	for _, tc := range []struct {
		name       string
		gomaxprocs string // the GOMAXPROCS variable: set, runBeside declines
		beside     bool
	}{
		{"beside", "", runtime.GOOS == "linux"},
		{"paced", "1", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.gomaxprocs != "" {
				t.Setenv("GOMAXPROCS", tc.gomaxprocs)
			}
			path := filepath.Join(t.TempDir(), "policy.yaml")
			writeFile(t, path, policyText(ids...))
			f, store, _ := newTestFile(t, path)
			asked := 0
			store.YieldWhile(func() bool { asked++; return asked%2 == 0 })

			if err := f.Load(); err != nil {
				t.Fatal(err)
			}
			if asked != 0 {
				t.Fatalf("the first load asked %d times whether requests were waiting", asked)
			}
			before := besideLoads.Load()
			writeFile(t, path, policyText(ids[1:]...))
			if err := f.Load(); err != nil {
				t.Fatal(err)
			}
			// Both the fingerprint and the load, where they can.
			want := uint64(0)
			if tc.beside {
				want = 2
			}
			if beside := besideLoads.Load() - before; beside != want {
				t.Errorf("%d parts of the reload ran beside the requests, want %d", beside, want)
			}
			if !tc.beside && asked == 0 {
				t.Error("a paced reload of 20,000 keys never gave requests a turn")
			}
			if hasKey(store.Current(), ids[0]) {
				t.Error("the reload was not published")
			}
		})
	}
}
