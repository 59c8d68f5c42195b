package source

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/policy"
)

// bigJSONText is policyText's policy in JSON, padded with spaces past the
// size from which policy.OpenFile leaves a file open and loads it from the
// descriptor (16 MiB).
func bigJSONText(ids ...string) string { return jsonText(17<<20, ids...) }

// jsonText is policyText's policy in JSON with pad spaces before its end.
func jsonText(pad int, ids ...string) string {
	var b strings.Builder
	b.WriteString(`{"version": 1, "tenants": [{"id": "acme", "orgs": ["acme-eu"]}], "endpoints": [{"name": "whoami", "match": {"path": "/whoami"}}], "api_keys": [`)
	for i, id := range ids {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, `{"id": %q, "hash": "sha256:%s", "tenant": "acme", "user": "bot"}`, id, keyHash(id))
	}
	b.WriteString("]")
	b.WriteString(strings.Repeat(" ", pad))
	b.WriteString("}\n")
	return b.String()
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(fds)
}

// streamedFile writes a big JSON policy at path and checks that
// policy.OpenFile leaves it open, so that the test exercises that path.
func streamedFile(t *testing.T, path string, ids ...string) {
	t.Helper()
	writeFile(t, path, bigJSONText(ids...))
	before := openFDs(t)
	inputs, err := policy.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	open := openFDs(t) - before
	policy.CloseInputs(inputs)
	if open != 1 {
		t.Fatalf("policy.OpenFile left %d files open, want the policy's one", open)
	}
}

// TestFileStreamedPolicyClosesEveryFile: a large JSON policy is loaded,
// skipped when unchanged, reloaded when changed and refused when broken,
// and once Run returns no file is left open.
func TestFileStreamedPolicyClosesEveryFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.json")
	streamedFile(t, path, "k1")
	before := openFDs(t)

	f, store, logs := loadTestFile(t, path)
	first := store.Current()
	if !hasKey(first, "k1") {
		t.Fatal("k1 was not loaded")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	waitFor(t, "the watch to start", func() bool { return countMsg(logs, "watching policy") > 0 })

	unchanged := countMsg(logs, "policy unchanged")
	replaceFile(t, path, bigJSONText("k1"))
	waitFor(t, "the same content to be skipped", func() bool { return countMsg(logs, "policy unchanged") > unchanged })
	if store.Current() != first {
		t.Fatal("unchanged content was published again")
	}
	replaceFile(t, path, bigJSONText("k2"))
	if snap := waitNewGeneration(t, store, first.Generation); !hasKey(snap, "k2") || hasKey(snap, "k1") {
		t.Fatal("the change was not loaded")
	}
	replaceFile(t, path, strings.Replace(bigJSONText("k3"), `"user"`, `"usr"`, 1))
	waitFor(t, "the broken policy to be refused", func() bool { return store.Status().ReloadsFailed == 1 })
	if st := store.Status(); !strings.HasPrefix(st.LastError, path+":1: ") || !strings.Contains(st.LastError, `unknown field "usr"`) {
		t.Errorf("refused with %q, want the file, line and field", st.LastError)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d files open before, %d after", before, after)
	}
}

// TestFileStreamedReadAbandoned: a read that returns after its timeout
// closes what it opened.
func TestFileStreamedReadAbandoned(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.json")
	streamedFile(t, path, "k1")
	f, _, _ := loadTestFile(t, path)
	before := openFDs(t)
	release := make(chan struct{})
	realRead := f.read
	f.readTimeout = 50 * time.Millisecond
	f.read = func() ([]policy.Input, error) {
		<-release
		return realRead()
	}
	if err := f.Load(); err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("Load = %v, want the read timed out", err)
	}
	close(release)
	waitFor(t, "the abandoned read to return", func() bool { return !f.reading.Load() })
	waitFor(t, "its file to be closed", func() bool { return openFDs(t) == before })
}

// TestFileStreamedChangedWhileLoading: content refused because the file
// changed in place while it loaded is loaded when read again, even when it
// turns out the same as what was fingerprinted (not skipped as seen).
func TestFileStreamedChangedWhileLoading(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.json")
	streamedFile(t, path, "k1")
	f, store, _ := newTestFile(t, path)

	inputs, err := policy.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := f.pub.fingerprint(inputs)
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(path, later, later); err != nil { // written again, the same bytes
		t.Fatal(err)
	}
	_, err = f.pub.publishSum(path, inputs, &sum, nil, false)
	policy.CloseInputs(inputs)
	if want := path + ": changed while it was being read"; err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("publish = %v, want %q...", err, want)
	}

	inputs, err = policy.OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer policy.CloseInputs(inputs)
	again := f.pub.fingerprint(inputs)
	if again != sum {
		t.Fatal("the fingerprint changed with the same bytes")
	}
	if published, err := f.pub.publishSum(path, inputs, &again, nil, false); !published || err != nil || !hasKey(store.Current(), "k1") {
		t.Errorf("publish again = %v, %v; want the policy loaded", published, err)
	}
}
