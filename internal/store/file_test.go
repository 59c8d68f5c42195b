package store

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/policyedit"
)

const basePolicy = `# the base policy; comments stay
version: 1
settings:
  max_org_keys: 100
groups:
  - name: sales
tenants:
  - id: acme
    orgs: [acme-eu]
api_keys:
  - id: kg_base1    # the first key
    hash: "%s"
    tenant: acme
    org: acme-eu
    user: bot
`

func digest(s string) string {
	d := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(d[:])
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o640); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// key is an org-level key of acme-eu with a digest no other test key has.
func key(id string) policy.APIKey {
	return policy.APIKey{ID: id, Hash: digest(id), Tenant: "acme", Org: "acme-eu", User: "bot"}
}

func addKey(id string) func(tx *Tx) error {
	return func(tx *Tx) error { return tx.Doc.AddAPIKey(key(id)) }
}

func TestFileUpdatesPolicyFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "policy.yaml")
	writeFile(t, path, fmt.Sprintf(basePolicy, digest("base1")))
	f, err := NewFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := f.Update(ctx, Scope{Tenant: "acme", Org: "acme-eu"}, func(tx *Tx) error {
		if len(tx.Others) != 0 {
			t.Errorf("a single policy file has no other fragments: Others = %v", tx.Others)
		}
		return tx.Doc.AddAPIKey(key("kg_new1"))
	}); err != nil {
		t.Fatal(err)
	}
	text := readFile(t, path)
	if !strings.Contains(text, "# the base policy; comments stay") || !strings.Contains(text, "- id: kg_new1") {
		t.Errorf("edit lost the comments or the key:\n%s", text)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640 kept", st.Mode().Perm())
	}

	// A change that edits nothing writes nothing: the file is not replaced.
	before, _ := os.Stat(path)
	if err := f.Update(ctx, Scope{}, func(*Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.Stat(path); !os.SameFile(before, after) {
		t.Error("a change that edited nothing replaced the file")
	}

	// An error from the change is returned as is, nothing written.
	refused := errors.New("refused by the rules")
	if err := f.Update(ctx, Scope{}, func(tx *Tx) error {
		if err := tx.Doc.AddAPIKey(key("kg_new2")); err != nil {
			return err
		}
		return refused
	}); err != refused {
		t.Errorf("change's error = %v, want it as is", err)
	}
	// A result that does not compile is refused, located, nothing written.
	dup := key("kg_new1")
	dup.Hash = digest("another")
	err = f.Update(ctx, Scope{}, func(tx *Tx) error { return tx.Doc.AddAPIKey(dup) })
	var inv *policyedit.InvalidError
	if !errors.As(err, &inv) || !strings.Contains(err.Error(), `duplicate credential id "kg_new1"`) {
		t.Errorf("duplicate id: err = %v, want an InvalidError naming it", err)
	}
	if readFile(t, path) != text {
		t.Error("a refused change was written")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 2 { // the policy and the lock
		t.Errorf("%d entries in the directory, want policy.yaml and %s", len(entries), LockFile)
	}
	if _, err := os.Stat(filepath.Join(dir, LockFile)); err != nil {
		t.Errorf("lock file: %v", err)
	}
}

func TestFileUpdatesManagedFragment(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.yaml")
	writeFile(t, base, fmt.Sprintf(basePolicy, digest("base1")))
	baseText := readFile(t, base)
	f, err := NewFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	managed := filepath.Join(dir, ManagedFragment)
	if got := f.Target(Scope{}); got != managed {
		t.Errorf("Target = %q, want %q", got, managed)
	}
	ctx := context.Background()

	// Nothing edited: managed.yaml is not created.
	if err := f.Update(ctx, Scope{}, func(tx *Tx) error {
		if len(tx.Others) != 1 || tx.Others[0].ID != "kg_base1" {
			t.Errorf("Others = %+v, want base.yaml's kg_base1", tx.Others)
		}
		if got := string(tx.Doc.Bytes()); got != "version: 1\n" {
			t.Errorf("a missing managed.yaml reads as %q", got)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(managed); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("managed.yaml exists after a change that edited nothing: %v", err)
	}

	if err := f.Update(ctx, Scope{}, addKey("kg_new1")); err != nil {
		t.Fatal(err)
	}
	if err := f.Update(ctx, Scope{}, addKey("kg_new2")); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, managed); !strings.HasPrefix(got, "version: 1\napi_keys:\n  - id: kg_new1\n") || !strings.Contains(got, "- id: kg_new2") {
		t.Errorf("managed.yaml:\n%s", got)
	}
	if st, _ := os.Stat(managed); st.Mode().Perm() != 0o640 {
		t.Errorf("managed.yaml mode %v, want base.yaml's 0640", st.Mode().Perm())
	}
	if readFile(t, base) != baseText {
		t.Error("base.yaml was changed")
	}
	snap, err := f.Policy(ctx)
	if err != nil || snap.Counts().APIKeys != 3 {
		t.Fatalf("the directory does not load with 3 keys: %v", err)
	}

	// A fragment valid alone but not with the directory is refused: the
	// id is base.yaml's.
	err = f.Update(ctx, Scope{}, func(tx *Tx) error {
		k := key("kg_base1")
		k.Hash = digest("other")
		return tx.Doc.AddAPIKey(k)
	})
	if !errors.As(err, new(*policyedit.InvalidError)) || !strings.Contains(err.Error(), `duplicate credential id "kg_base1"`) ||
		!strings.Contains(err.Error(), "base.yaml") {
		t.Errorf("err = %v, want the duplicate located in base.yaml", err)
	}
}

func TestNewFileMissing(t *testing.T) {
	_, err := NewFile(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml: no such file or directory") {
		t.Errorf("err = %v", err)
	}
}

// Two stores of one file (as two processes would have) take turns: while
// one holds the lock, the other waits, and gives up when its context ends.
func TestFileLockWaitsForOtherWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, fmt.Sprintf(basePolicy, digest("base1")))
	a, _ := NewFile(path)
	b, _ := NewFile(path)
	holding, release := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- a.Update(context.Background(), Scope{}, func(tx *Tx) error {
			close(holding)
			<-release
			return tx.Doc.AddAPIKey(key("kg_a"))
		})
	}()
	<-holding
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	ran := false
	err := b.Update(ctx, Scope{}, func(*Tx) error { ran = true; return nil })
	if ran || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "another keygate") {
		t.Errorf("while a holds the lock, b ran %v with err %v; want it to wait and time out", ran, err)
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// b sees a's change once a is done.
	if err := b.Update(context.Background(), Scope{}, func(tx *Tx) error {
		if !strings.Contains(string(tx.Doc.Bytes()), "kg_a") {
			t.Error("b does not see a's key")
		}
		return tx.Doc.AddAPIKey(key("kg_b"))
	}); err != nil {
		t.Fatal(err)
	}
}

// helperEnv makes the test binary a writer process: see TestMain.
const helperEnv = "KEYGATE_STORE_TEST_WRITER"

func TestMain(m *testing.M) {
	if spec := os.Getenv(helperEnv); spec != "" {
		os.Exit(writer(spec))
	}
	os.Exit(m.Run())
}

// writer adds keys PREFIX-0..N-1 to PATH, each in its own Update, from
// N goroutines, and prints one line per key added.
func writer(spec string) int {
	parts := strings.SplitN(spec, ",", 3)
	n, _ := strconv.Atoi(parts[1])
	f, err := NewFile(parts[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	failed := false
	for i := range n {
		wg.Go(func() {
			id := fmt.Sprintf("%s%d", parts[2], i)
			err := f.Update(context.Background(), Scope{}, addKey(id))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				fmt.Fprintln(os.Stderr, id, err)
				failed = true
				return
			}
			fmt.Println(id)
		})
	}
	wg.Wait()
	if failed {
		return 1
	}
	return 0
}

// Writers in several processes, each with several goroutines, edit one
// policy file (and one directory) at once: every change lands, none is
// lost, and the result compiles.
func TestFileConcurrentWritersLoseNothing(t *testing.T) {
	for _, mode := range []string{"file", "dir"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "policy.yaml")
			writeFile(t, path, fmt.Sprintf(basePolicy, digest("base1")))
			target := path
			if mode == "dir" {
				target = dir
			}
			const procs, perProc, inProc = 3, 8, 8
			var wg sync.WaitGroup
			outs := make([]string, procs)
			for p := range procs {
				wg.Go(func() {
					cmd := exec.Command(os.Args[0], "-test.run=^$")
					cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d,kg_p%dk", helperEnv, target, perProc, p))
					out, err := cmd.Output()
					if err != nil {
						var ee *exec.ExitError
						if errors.As(err, &ee) {
							t.Errorf("writer %d: %v\n%s", p, err, ee.Stderr)
						}
					}
					outs[p] = string(out)
				})
			}
			f, err := NewFile(target)
			if err != nil {
				t.Fatal(err)
			}
			for i := range inProc {
				wg.Go(func() {
					if err := f.Update(context.Background(), Scope{}, addKey(fmt.Sprintf("kg_tk%d", i))); err != nil {
						t.Errorf("in-process writer %d: %v", i, err)
					}
				})
			}
			wg.Wait()
			added := 0
			for _, out := range outs {
				sc := bufio.NewScanner(strings.NewReader(out))
				for sc.Scan() {
					added++
				}
			}
			snap, err := f.Policy(context.Background())
			if err != nil {
				t.Fatalf("the result does not compile: %v", err)
			}
			want := 1 + procs*perProc + inProc
			if added != procs*perProc || snap.Counts().APIKeys != want {
				t.Errorf("processes added %d keys (want %d); the policy holds %d keys, want %d", added, procs*perProc, snap.Counts().APIKeys, want)
			}
			for p := range procs {
				for i := range perProc {
					if snap.Lookup(policy.KindAPIKey, mustDigest(t, fmt.Sprintf("kg_p%dk%d", p, i))) == nil {
						t.Errorf("key kg_p%dk%d is missing", p, i)
					}
				}
			}
		})
	}
}

func mustDigest(t *testing.T, id string) policy.Digest {
	t.Helper()
	d, err := policy.ParseDigest(digest(id))
	if err != nil {
		t.Fatal(err)
	}
	return d
}
