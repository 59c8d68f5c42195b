//go:build unix

package source

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
)

// TestFileRefusesUnreadableFragment: in directory mode, a fragment that
// becomes unreadable refuses the reload, naming it and why; the policy in
// force keeps serving, the failure is counted and logged, and once the
// fragment is fixed the next change is loaded (the watch is not stuck: a
// FIFO opened for reading would block the reload forever).
func TestFileRefusesUnreadableFragment(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T, path string)
		want string
	}{
		{"dangling symlink", func(t *testing.T, path string) {
			if err := os.Symlink("gone.yaml", path); err != nil {
				t.Fatal(err)
			}
		}, "dangling symlink"},
		{"symlink loop", func(t *testing.T, path string) {
			if err := os.Symlink(filepath.Base(path), path); err != nil { // b.yaml -> b.yaml
				t.Fatal(err)
			}
		}, "symlink loop"},
		{"directory", func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}, "a directory, not a regular file"},
		{"fifo", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
		}, "a named pipe (FIFO), not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "a.yaml"), policyText("k1"))
			writeFile(t, filepath.Join(dir, "b.yaml"), "version: 1\n")
			f, store, logs := loadTestFile(t, dir)
			good := store.Current()
			startRun(t, f, logs)

			// Removed and made again at once: one burst of changes.
			if err := os.Remove(filepath.Join(dir, "b.yaml")); err != nil {
				t.Fatal(err)
			}
			tt.make(t, filepath.Join(dir, "b.yaml"))
			waitFor(t, "the reload to be refused", func() bool { return store.Status().ReloadsFailed > 0 })
			st := store.Status()
			if want := filepath.Join(dir, "b.yaml") + ": cannot read: " + tt.want; !strings.Contains(st.LastError, want) || st.LastReloadOK {
				t.Errorf("status %+v, want a failed reload saying %q", st, want)
			}
			if store.Current() != good {
				t.Error("a policy without b.yaml was published")
			}
			waitFor(t, "the refusal to be logged", func() bool { return logs.FilterLevelExact(zapcore.ErrorLevel).Len() > 0 })

			// Fixed: the watch still works and the new content is loaded.
			if err := os.RemoveAll(filepath.Join(dir, "b.yaml")); err != nil {
				t.Fatal(err)
			}
			replaceFile(t, filepath.Join(dir, "b.yaml"), "version: 1\ngroups: [{name: sales}]\n")
			snap := waitNewGeneration(t, store, good.Generation)
			if c := snap.Counts(); c.Groups != 1 || !hasKey(snap, "k1") {
				t.Errorf("after the fix: %+v", c)
			}
			if st := store.Status(); !st.LastReloadOK {
				t.Errorf("status after the fix: %+v", st)
			}
		})
	}
}

// TestFileModeIsFixedAtStart: --policy FILE that becomes a directory (or a
// FIFO), and --policy DIR that becomes a file, are refused reloads: the
// path keeps the meaning it had at start-up.
func TestFileModeIsFixedAtStart(t *testing.T) {
	t.Run("file becomes a directory", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "policy.yaml")
		writeFile(t, path, policyText("k1"))
		f, store, logs := loadTestFile(t, path)
		good := store.Current()
		startRun(t, f, logs)

		other := filepath.Join(dir, "other")
		if err := os.Mkdir(other, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(other, "a.yaml"), policyText("k2"))
		if err := os.Rename(other, path); err != nil { // rename(2) of a directory over a file fails
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, "the reload to be refused", func() bool { return store.Status().ReloadsFailed > 0 })
		if st := store.Status(); !strings.Contains(st.LastError, path+": cannot read: a directory, not a regular file") {
			t.Errorf("status %+v, want the directory refused", st)
		}
		if store.Current() != good || hasKey(store.Current(), "k2") {
			t.Error("the directory's policy was published for --policy FILE")
		}
	})
	t.Run("file becomes a fifo", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "policy.yaml")
		writeFile(t, path, policyText("k1"))
		f, store, logs := loadTestFile(t, path)
		good := store.Current()
		startRun(t, f, logs)

		fifo := filepath.Join(dir, "fifo")
		if err := syscall.Mkfifo(fifo, 0o644); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
		if err := os.Rename(fifo, path); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the reload to be refused", func() bool { return store.Status().ReloadsFailed > 0 })
		if st := store.Status(); !strings.Contains(st.LastError, "a named pipe (FIFO), not a regular file") {
			t.Errorf("status %+v, want the FIFO refused", st)
		}
		// Run is not stuck on the FIFO: a later edit is loaded.
		replaceFile(t, path, policyText("k2"))
		if snap := waitNewGeneration(t, store, good.Generation); !hasKey(snap, "k2") {
			t.Error("the edit after the FIFO was not loaded")
		}
	})
	t.Run("directory becomes a file", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "conf")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "a.yaml"), policyText("k1"))
		f, store, logs := newTestFile(t, dir)
		f.retry = 20 * time.Millisecond
		if err := f.Load(); err != nil {
			t.Fatal(err)
		}
		good := store.Current()
		startRun(t, f, logs)

		tmp := dir + ".new"
		writeFile(t, tmp, policyText("k2"))
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, dir); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the reload to be refused", func() bool { return store.Status().ReloadsFailed > 0 })
		if st := store.Status(); !strings.Contains(st.LastError, dir+": not a directory") {
			t.Errorf("status %+v, want the file refused", st)
		}
		if store.Current() != good {
			t.Error("the file's policy was published for --policy DIR")
		}
	})
}
