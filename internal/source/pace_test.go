package source

import (
	"fmt"
	"path/filepath"
	"testing"
)

// TestReloadsYieldWhileBusy: the first load runs flat out (nothing is served
// yet); a reload of a large policy asks whether requests are being decided
// while it works, and sleeps only when they are.
func TestReloadsYieldWhileBusy(t *testing.T) {
	ids := make([]string, 20_000)
	for i := range ids {
		ids[i] = fmt.Sprintf("k%d", i)
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
	writeFile(t, path, policyText(ids[1:]...))
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	if asked == 0 {
		t.Error("a reload of 20,000 keys never gave requests a turn")
	}
	if hasKey(store.Current(), ids[0]) {
		t.Error("the reload was not published")
	}
}
