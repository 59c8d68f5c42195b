package source

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/keygate/keygate/internal/policy"
)

// keyHash is the policy digest of the key named id (the test's "secret" is
// the id itself).
func keyHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:])
}

// policyText is a minimal valid policy holding one API key per id.
func policyText(ids ...string) string {
	var b strings.Builder
	b.WriteString("version: 1\n")
	b.WriteString("tenants: [{id: acme, orgs: [acme-eu]}]\n")
	b.WriteString("endpoints:\n")
	b.WriteString("  - {name: whoami, match: {path: /whoami}}\n")
	b.WriteString("api_keys:\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "  - {id: %s, hash: \"sha256:%s\", tenant: acme, user: bot}\n", id, keyHash(id))
	}
	return b.String()
}

// brokenText has an unknown field on line 3.
const brokenText = "version: 1\ntenants: [{id: acme, orgs: [acme-eu]}]\nendpointz: []\n"

func hasKey(s *policy.Snapshot, id string) bool {
	return s != nil && s.Lookup(policy.KindAPIKey, policy.Digest(sha256.Sum256([]byte(id)))) != nil
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes text to a temporary file and renames it over path, so
// no reader ever sees a half-written file. Tests of what a reload does with
// content use it; in-place writes are exercised in TestFileReload.
func replaceFile(t *testing.T, path, text string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, text)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// rewriteInPlace writes text over the start of path without truncating it
// first, so the file is never empty on the way (os.WriteFile truncates).
func rewriteInPlace(t *testing.T, path, text string) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteString(text); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
}

// newTestFile returns a File for path with a store and a logger that records
// every entry.
func newTestFile(t *testing.T, path string, opts ...FileOption) (*File, *Store, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	store := NewStore()
	return NewFile(path, store, zap.New(core), opts...), store, logs
}

// loadTestFile is newTestFile with the policy loaded, as serve starts.
func loadTestFile(t *testing.T, path string, opts ...FileOption) (*File, *Store, *observer.ObservedLogs) {
	t.Helper()
	f, store, logs := newTestFile(t, path, opts...)
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	return f, store, logs
}

// waitFor polls cond every 10ms for up to 3s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitNewGeneration waits for the store's snapshot to differ from old's
// generation and returns the new snapshot.
func waitNewGeneration(t *testing.T, store *Store, old uint64) *policy.Snapshot {
	t.Helper()
	deadline := time.Now().Add(DefaultSettle + 3*time.Second) // in-place writes settle first
	for {
		if cur := store.Current(); cur != nil && cur.Generation != old {
			return cur
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for a generation after %d (last error: %q)", old, store.Status().LastError)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// countMsg counts the entries logged with msg.
func countMsg(logs *observer.ObservedLogs, msg string) int {
	return logs.FilterMessage(msg).Len()
}

// runUntilCleanup runs a source's Run until the test ends, then checks that
// it returns nil promptly once its context is cancelled.
func runUntilCleanup(t *testing.T, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(3 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

// startRun runs f until the test ends and returns once the watch is in place
// (Run logs "watching policy" after its first look at the content).
func startRun(t *testing.T, f *File, logs *observer.ObservedLogs) {
	t.Helper()
	runUntilCleanup(t, f.Run)
	waitFor(t, "the watch to start", func() bool { return countMsg(logs, "watching policy") > 0 })
}

// k8sMount lays out dir like a ConfigMap volume: the data in a timestamped
// directory, ..data linking to it and policy.yaml linking through ..data.
func k8sMount(t *testing.T, dir, stamp, text string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, stamp), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, stamp, "policy.yaml"), text)
	if err := os.Symlink(stamp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), filepath.Join(dir, "policy.yaml")); err != nil {
		t.Fatal(err)
	}
}

// k8sSwap updates dir the way the kubelet does: new timestamped directory,
// ..data_tmp linking to it, renamed over ..data, old directory removed.
func k8sSwap(t *testing.T, dir, oldStamp, newStamp, text string) {
	t.Helper()
	if err := os.Mkdir(filepath.Join(dir, newStamp), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, newStamp, "policy.yaml"), text)
	tmp := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(newStamp, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, oldStamp)); err != nil {
		t.Fatal(err)
	}
}

func TestFileLoadPublishes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyText("k1"))
	f, store, logs := newTestFile(t, path)

	if err := f.Load(); err != nil {
		t.Fatalf("Load: %v", err)
	}
	snap := store.Current()
	if snap == nil || !hasKey(snap, "k1") {
		t.Fatalf("snapshot %+v does not hold k1", snap)
	}
	if got, want := snap.Counts(), (policy.Counts{APIKeys: 1, Endpoints: 1, Tenants: 1, Orgs: 1}); got != want {
		t.Errorf("counts = %+v, want %+v", got, want)
	}
	if snap.Source != path {
		t.Errorf("source = %q, want %q", snap.Source, path)
	}
	if st := store.Status(); !st.LastReloadOK || st.ReloadsOK != 1 || store.Current() != snap {
		t.Errorf("status = %+v", st)
	}
	loaded := logs.FilterMessage("policy loaded").All()
	if len(loaded) != 1 {
		t.Fatalf("%d 'policy loaded' lines, want 1", len(loaded))
	}
	fields := loaded[0].ContextMap()
	want := map[string]any{
		"source": path, "generation": snap.Generation,
		"api_keys": int64(1), "sessions": int64(0), "endpoints": int64(1),
	}
	for k, v := range want {
		if fields[k] != v {
			t.Errorf("field %s = %v (%T), want %v (%T)", k, fields[k], fields[k], v, v)
		}
	}
}

// TestFileReloadReusesCredentials: a reload takes the credentials that did
// not change from the snapshot in force, says how many on its "policy
// loaded" line, and serves the ones that changed as written.
func TestFileReloadReusesCredentials(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.json")
	writeFile(t, path, jsonText(0, "k1", "k2", "k3"))
	f, store, logs := loadTestFile(t, path)
	writeFile(t, path, jsonText(0, "k1", "k2", "k4"))
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	if snap := store.Current(); !hasKey(snap, "k4") || hasKey(snap, "k3") {
		t.Errorf("after the reload k4 is served: %v, k3 is: %v; want only k4", hasKey(snap, "k4"), hasKey(snap, "k3"))
	}
	var reused []any
	for _, e := range logs.FilterMessage("policy loaded").All() {
		reused = append(reused, e.ContextMap()["credentials_reused"])
	}
	if want := []any{int64(0), int64(2)}; !reflect.DeepEqual(reused, want) {
		t.Errorf("credentials_reused on the 'policy loaded' lines: %v, want %v", reused, want)
	}
}

func TestFileLoadBrokenNamesFileAndLine(t *testing.T) {
	t.Run("file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "policy.yaml")
		writeFile(t, path, brokenText)
		f, store, _ := newTestFile(t, path)
		err := f.Load()
		if err == nil {
			t.Fatal("Load of a broken policy succeeded")
		}
		var pe policy.Errors
		if !errors.As(err, &pe) {
			t.Errorf("error %T is not policy.Errors", err)
		}
		if want := path + ":3:"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
		if store.Current() != nil {
			t.Error("a broken policy was published")
		}
		if st := store.Status(); st.ReloadsFailed != 1 || !strings.Contains(st.LastError, "policy.yaml:3") {
			t.Errorf("status = %+v", st)
		}
	})
	t.Run("directory", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "a.yaml"), policyText("k1"))
		writeFile(t, filepath.Join(dir, "b.yaml"), brokenText)
		f, _, _ := newTestFile(t, dir)
		err := f.Load()
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "b.yaml")+":3:") {
			t.Errorf("Load error = %v, want one naming b.yaml:3", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		f, _, _ := newTestFile(t, filepath.Join(t.TempDir(), "nope.yaml"))
		if err := f.Load(); err == nil || !strings.Contains(err.Error(), "nope.yaml") {
			t.Errorf("Load error = %v, want one naming nope.yaml", err)
		}
	})
}

func TestFileReload(t *testing.T) {
	tests := []struct {
		name string
		// setup writes the first version (key k1) and returns --policy.
		setup func(t *testing.T, dir string) string
		// change replaces it with the second version.
		change func(t *testing.T, dir string)
		// want are the keys after the change; k1 is gone unless listed.
		want []string
		// atomic changes never show a reader a half-written file, so they
		// must not be refused on the way.
		atomic bool
	}{{
		name: "in-place write",
		setup: func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, "policy.yaml"), policyText("k1"))
			return filepath.Join(dir, "policy.yaml")
		},
		change: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "policy.yaml"), policyText("k2"))
		},
	}, {
		name: "atomic rename",
		setup: func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, "policy.yaml"), policyText("k1"))
			return filepath.Join(dir, "policy.yaml")
		},
		change: func(t *testing.T, dir string) {
			tmp := filepath.Join(dir, "policy.yaml.tmp")
			writeFile(t, tmp, policyText("k2"))
			if err := os.Rename(tmp, filepath.Join(dir, "policy.yaml")); err != nil {
				t.Fatal(err)
			}
		},
		atomic: true,
	}, {
		name: "kubernetes swap, file",
		setup: func(t *testing.T, dir string) string {
			k8sMount(t, dir, "..2026_01_01", policyText("k1"))
			return filepath.Join(dir, "policy.yaml")
		},
		change: func(t *testing.T, dir string) {
			k8sSwap(t, dir, "..2026_01_01", "..2026_01_02", policyText("k2"))
		},
		atomic: true,
	}, {
		name: "kubernetes swap, directory",
		setup: func(t *testing.T, dir string) string {
			k8sMount(t, dir, "..2026_01_01", policyText("k1"))
			return dir
		},
		change: func(t *testing.T, dir string) {
			k8sSwap(t, dir, "..2026_01_01", "..2026_01_02", policyText("k2"))
		},
		atomic: true,
	}, {
		name: "directory, fragment added",
		setup: func(t *testing.T, dir string) string {
			writeFile(t, filepath.Join(dir, "a.yaml"), policyText("k1"))
			return dir
		},
		change: func(t *testing.T, dir string) {
			writeFile(t, filepath.Join(dir, "b.yml"), "version: 1\napi_keys:\n  - {id: k2, hash: \"sha256:"+keyHash("k2")+"\", tenant: acme, user: bot}\n")
		},
		want: []string{"k1", "k2"},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f, store, logs := newTestFile(t, tt.setup(t, dir))
			if err := f.Load(); err != nil {
				t.Fatalf("Load: %v", err)
			}
			first := store.Current()
			if !hasKey(first, "k1") {
				t.Fatal("first snapshot lacks k1")
			}
			startRun(t, f, logs)

			tt.change(t, dir)
			snap := waitNewGeneration(t, store, first.Generation)
			want := tt.want
			if want == nil {
				want = []string{"k2"}
			}
			if c := snap.Counts(); c.APIKeys != len(want) {
				t.Errorf("snapshot after the change has %d keys, want %v", c.APIKeys, want)
			}
			for _, id := range want {
				if !hasKey(snap, id) {
					t.Errorf("snapshot after the change lacks %s", id)
				}
			}
			// An in-place write is published only once it has settled, but
			// a file created empty and then written may be looked at in
			// between and refused; an atomic change never may.
			if n := logs.FilterLevelExact(zapcore.ErrorLevel).Len(); tt.atomic && n != 0 {
				t.Errorf("%d error lines logged: %v", n, logs.FilterLevelExact(zapcore.ErrorLevel).All())
			}
		})
	}
}

func TestFileRefusesBrokenEditThenLoadsFix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyText("k1"))
	f, store, logs := loadTestFile(t, path)
	good := store.Current()
	startRun(t, f, logs)

	// valid -> invalid: refused, the old snapshot keeps serving.
	replaceFile(t, path, brokenText)
	waitFor(t, "the broken edit to be refused and logged", func() bool {
		return store.Status().ReloadsFailed == 1 && logs.FilterLevelExact(zapcore.ErrorLevel).Len() > 0
	})
	if store.Current() != good {
		t.Fatal("the snapshot changed after a broken edit")
	}
	st := store.Status()
	if want := path + ":3:"; !strings.Contains(st.LastError, want) || st.LastReloadOK {
		t.Errorf("status = %+v, want a failed reload naming %s", st, want)
	}
	refused := logs.FilterLevelExact(zapcore.ErrorLevel).All()
	if len(refused) != 1 {
		t.Fatalf("%d error lines for one broken edit, want 1", len(refused))
	}
	if msg, _ := refused[0].ContextMap()["error"].(string); !strings.Contains(msg, path+":3:") {
		t.Errorf("error line's error field = %q, want it to name %s:3", msg, path)
	}

	// The same broken bytes again: skipped, not refused and logged twice.
	unchanged := countMsg(logs, "policy unchanged")
	rewriteInPlace(t, path, brokenText)
	waitFor(t, "the rewrite to be looked at", func() bool { return countMsg(logs, "policy unchanged") > unchanged })
	if st := store.Status(); st.ReloadsFailed != 1 {
		t.Errorf("ReloadsFailed = %d after rewriting the same broken bytes, want 1", st.ReloadsFailed)
	}

	// invalid -> valid: published.
	replaceFile(t, path, policyText("k2"))
	snap := waitNewGeneration(t, store, good.Generation)
	if !hasKey(snap, "k2") {
		t.Error("fixed policy lacks k2")
	}
	if st := store.Status(); !st.LastReloadOK || st.LastError != "" || st.ReloadsFailed != 1 {
		t.Errorf("status after the fix = %+v", st)
	}

	// Logs carry counts and errors, never policy contents.
	for _, e := range logs.All() {
		line := e.Message + fmt.Sprint(e.ContextMap())
		for _, id := range []string{"k1", "k2"} {
			if strings.Contains(line, keyHash(id)) {
				t.Errorf("log line %q holds a policy digest", line)
			}
		}
	}
}

func TestFileUnchangedContentIsSkipped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyText("k1"))
	f, store, logs := loadTestFile(t, path)
	first := store.Current()
	startRun(t, f, logs)

	unchanged := countMsg(logs, "policy unchanged")
	now := time.Now()
	if err := os.Chtimes(path, now, now); err != nil { // touch
		t.Fatal(err)
	}
	rewriteInPlace(t, path, policyText("k1")) // the same bytes, in place
	replaceFile(t, path, policyText("k1"))    // and renamed over
	waitFor(t, "the rewrite to be looked at", func() bool { return countMsg(logs, "policy unchanged") > unchanged })
	if store.Current() != first {
		t.Fatalf("generation %d -> %d for unchanged content", first.Generation, store.Current().Generation)
	}
	if st := store.Status(); st.ReloadsOK != 1 || st.ReloadsFailed != 0 {
		t.Errorf("status = %+v, want one load and no failures", st)
	}

	// No generation was spent on the skipped content.
	replaceFile(t, path, policyText("k2"))
	if snap := waitNewGeneration(t, store, first.Generation); snap.Generation != first.Generation+1 {
		t.Errorf("generation after a change = %d, want %d", snap.Generation, first.Generation+1)
	}
}

func TestFileTrigger(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyText("k1"))
	// With an hour of debounce, only Trigger can reload within the test.
	f, store, logs := loadTestFile(t, path, WithDebounce(time.Hour))
	first := store.Current()

	// Trigger never blocks, with or without Run.
	for range 10 {
		f.Trigger()
	}
	startRun(t, f, logs)

	writeFile(t, path, policyText("k1", "k2"))
	f.Trigger()
	snap := waitNewGeneration(t, store, first.Generation)
	if c := snap.Counts(); c.APIKeys != 2 || !hasKey(snap, "k2") {
		t.Errorf("snapshot after Trigger has %d keys (k2=%v), want 2 with k2", c.APIKeys, hasKey(snap, "k2"))
	}

	// Trigger with unchanged content does not publish.
	unchanged := countMsg(logs, "policy unchanged")
	f.Trigger()
	waitFor(t, "the trigger to be handled", func() bool { return countMsg(logs, "policy unchanged") > unchanged })
	if store.Current() != snap {
		t.Error("Trigger with unchanged content published a new snapshot")
	}
}

func TestFileWatchesRecreatedDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "conf")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "policy.yaml"), policyText("k1"))
	f, store, logs := newTestFile(t, dir)
	f.retry = 20 * time.Millisecond
	if err := f.Load(); err != nil {
		t.Fatal(err)
	}
	first := store.Current()
	startRun(t, f, logs)

	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the lost watch to be noticed", func() bool {
		return countMsg(logs, "policy directory removed; serving the current policy and retrying the watch") == 1
	})
	if store.Current() != first {
		t.Fatal("the snapshot changed when its directory was removed")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "policy.yaml"), policyText("k2"))
	snap := waitNewGeneration(t, store, first.Generation)
	if !hasKey(snap, "k2") {
		t.Error("policy in the recreated directory not loaded")
	}
	waitFor(t, "the watch to be back", func() bool { return countMsg(logs, "watching policy directory again") == 1 })

	// The new directory is watched: a later edit is seen.
	writeFile(t, filepath.Join(dir, "policy.yaml"), policyText("k3"))
	if snap := waitNewGeneration(t, store, snap.Generation); !hasKey(snap, "k3") {
		t.Error("edit in the recreated directory not loaded")
	}
}

func TestFileRunStopsOnCancel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyText("k1"))
	f, _, logs := loadTestFile(t, path)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	waitFor(t, "the watch to start", func() bool { return countMsg(logs, "watching policy") > 0 })
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run after cancel = %v, want nil", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestFileRunFailsWithoutDirectory(t *testing.T) {
	f, _, _ := newTestFile(t, filepath.Join(t.TempDir(), "missing", "policy.yaml"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := f.Run(ctx); err == nil || ctx.Err() != nil {
		t.Errorf("Run = %v, want an immediate error for a missing directory", err)
	}
}

func TestFileRelevantEvents(t *testing.T) {
	dir := t.TempDir()
	fileMode := NewFile(filepath.Join(dir, "policy.yaml"), NewStore(), nil)
	dirMode := NewFile(dir, NewStore(), nil)
	ev := func(name string, op fsnotify.Op) fsnotify.Event {
		return fsnotify.Event{Name: filepath.Join(dir, name), Op: op}
	}
	tests := []struct {
		ev            fsnotify.Event
		file, dirWant bool
	}{
		{ev("policy.yaml", fsnotify.Write), true, true},
		{ev("policy.yaml", fsnotify.Create), true, true},
		{ev("policy.yaml", fsnotify.Remove), true, true},
		{ev("policy.yaml", fsnotify.Rename), true, true},
		{ev("policy.yaml", fsnotify.Chmod), false, false},
		{ev("..data", fsnotify.Create), true, true},
		{ev("..data_tmp", fsnotify.Create), false, false},
		{ev("..data_tmp", fsnotify.Rename), false, false},
		{ev("..2026_01_02", fsnotify.Create), false, false},
		{ev("policy.yaml.tmp", fsnotify.Create), false, false},
		{ev(".policy.yaml.swp", fsnotify.Write), false, false},
		{ev("other.yaml", fsnotify.Write), false, true},
		{ev("other.JSON", fsnotify.Create), false, true},
		{ev("README.md", fsnotify.Write), false, false},
	}
	for _, tt := range tests {
		if got := fileMode.relevant(tt.ev); got != tt.file {
			t.Errorf("file mode: relevant(%v) = %v, want %v", tt.ev, got, tt.file)
		}
		if got := dirMode.relevant(tt.ev); got != tt.dirWant {
			t.Errorf("directory mode: relevant(%v) = %v, want %v", tt.ev, got, tt.dirWant)
		}
	}
	gone := fsnotify.Event{Name: dir, Op: fsnotify.Remove}
	if !dirMode.isDirGone(gone) || !fileMode.isDirGone(gone) {
		t.Error("removal of the watched directory not recognised")
	}
}

// revokedText is policyText(ids...) followed by key "revoked", disabled on
// the policy's last line: cut just before that line, the text is still a
// valid policy, in which the key is enabled.
func revokedText(ids ...string) string {
	return policyText(ids...) + "  - id: revoked\n" +
		"    hash: \"sha256:" + keyHash("revoked") + "\"\n" +
		"    tenant: acme\n" +
		"    user: bot\n" +
		"    disabled: true\n"
}

// revokedEnabled reports whether s lets the revoked key in.
func revokedEnabled(s *policy.Snapshot) bool {
	p := s.Lookup(policy.KindAPIKey, policy.Digest(sha256.Sum256([]byte("revoked"))))
	return p != nil && !p.Disabled
}

// TestFileInPlaceWriteInTwoParts: a file rewritten in place in two writes a
// second apart must never be published half-written, even when the first
// half is a valid policy (here it drops the line that revokes a key). The
// complete file is published once it has stayed unchanged; an atomic rename
// is still published at once.
func TestFileInPlaceWriteInTwoParts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, revokedText("k1"))
	f, store, logs := loadTestFile(t, path)
	first := store.Current()
	if revokedEnabled(first) {
		t.Fatal("the revoked key is enabled in the first policy")
	}
	var (
		mu        sync.Mutex
		published []*policy.Snapshot
	)
	store.OnPublish(func(s *policy.Snapshot) {
		mu.Lock()
		defer mu.Unlock()
		published = append(published, s)
	})
	startRun(t, f, logs)

	full := revokedText("k1", "k2")
	cut := strings.Index(full, "    disabled: true\n")
	if _, err := policy.Load([]policy.Input{{Name: "half.yaml", Data: []byte(full[:cut])}}, policy.Options{}); err != nil {
		t.Fatalf("the first half must be a valid policy for this test: %v", err)
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteString(full[:cut]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second)
	if _, err := fh.WriteString(full[cut:]); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	written := time.Now()
	snap := waitNewGeneration(t, store, first.Generation)
	t.Logf("the complete file was published %v after its last write", time.Since(written).Round(time.Millisecond))
	if !hasKey(snap, "k2") || revokedEnabled(snap) {
		t.Errorf("published k2=%v, revoked key enabled=%v; want the complete file", hasKey(snap, "k2"), revokedEnabled(snap))
	}
	time.Sleep(2 * DefaultDebounce)
	mu.Lock()
	for _, s := range published {
		if revokedEnabled(s) {
			t.Errorf("generation %d, the first half of the write, was published: it let the revoked key in", s.Generation)
		}
	}
	n := len(published)
	mu.Unlock()
	if n != 1 {
		t.Errorf("%d snapshots published for one rewrite, want 1", n)
	}

	// A rename brings a complete file: no wait for it to settle.
	replaceFile(t, path, revokedText("k1", "k2", "k3"))
	renamed := time.Now()
	snap = waitNewGeneration(t, store, snap.Generation)
	if d := time.Since(renamed); d >= DefaultSettle {
		t.Errorf("a rename was published %v after it, want well within the in-place settle time %v", d, DefaultSettle)
	}
	if !hasKey(snap, "k3") {
		t.Error("the renamed file lacks k3")
	}
}

// TestFileStuckReadIsBounded: a read that never returns (a hung network
// filesystem) refuses the reload after the read timeout instead of holding
// the watch forever; while it is still stuck no second read piles up; and
// Run returns when its context is done even in the middle of a read.
func TestFileStuckReadIsBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyText("k1"))
	f, store, logs := loadTestFile(t, path)
	good := store.Current()
	startRun(t, f, logs)

	release := make(chan struct{})
	entered := make(chan struct{}, 10)
	realRead := f.read
	f.readTimeout = 100 * time.Millisecond
	f.read = func() ([]policy.Input, error) {
		entered <- struct{}{}
		<-release
		return realRead()
	}
	f.Trigger()
	waitFor(t, "the stuck read to be refused", func() bool { return store.Status().ReloadsFailed == 1 })
	if st := store.Status(); !strings.Contains(st.LastError, "no answer within 100ms") || st.LastReloadOK {
		t.Errorf("status %+v, want a refused reload saying the read timed out", st)
	}
	if store.Current() != good {
		t.Error("the snapshot changed")
	}
	// Still stuck: refused at once, without starting another read.
	f.Trigger()
	waitFor(t, "the second reload to be refused", func() bool { return store.Status().ReloadsFailed == 2 })
	if st := store.Status(); !strings.Contains(st.LastError, "has not returned") {
		t.Errorf("status %+v, want a refusal saying the earlier read is still stuck", st)
	}
	if n := len(entered); n != 1 {
		t.Errorf("%d reads started, want 1", n)
	}

	// Unstuck: the next change is loaded.
	close(release)
	waitFor(t, "the stuck read to return", func() bool { return !f.reading.Load() })
	f.read = realRead
	replaceFile(t, path, policyText("k2"))
	if snap := waitNewGeneration(t, store, good.Generation); !hasKey(snap, "k2") {
		t.Error("the change after the stuck read was not loaded")
	}
}

// TestFileRunStopsDuringStuckRead: SIGTERM (the context) ends Run while a
// read is stuck with no timeout in sight.
func TestFileRunStopsDuringStuckRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, policyText("k1"))
	f, _, logs := loadTestFile(t, path)
	block := make(chan struct{})
	defer close(block)
	entered := make(chan struct{}, 1)
	f.readTimeout = time.Hour
	realRead := f.read
	f.read = func() ([]policy.Input, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-block
		return realRead()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	f.Trigger()
	select {
	case <-entered:
	case <-time.After(3 * time.Second):
		t.Fatal("no read started")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Run did not return while a read was stuck")
	}
	if n := countMsg(logs, "policy reload refused; keeping the current policy"); n != 0 {
		t.Errorf("shutting down logged %d refused reloads", n)
	}
}
