package keys

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/store"
)

// creatorEnv makes the test binary a process that creates keys: see
// TestMain and creator.
const creatorEnv = "KEYGATE_KEYS_TEST_CREATOR"

func TestMain(m *testing.M) {
	if spec := os.Getenv(creatorEnv); spec != "" {
		os.Exit(creator(spec))
	}
	os.Exit(m.Run())
}

// creator runs N concurrent creates for acme-eu on the policy at PATH (spec
// "PATH,N") as the operator, and prints one line per create: "ok ID
// DIGEST" or "limit". The secret itself never leaves the process.
func creator(spec string) int {
	path, n, _ := strings.Cut(spec, ",")
	count, _ := strconv.Atoi(n)
	st, err := store.NewFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	snap, err := st.Policy(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	lines, failed := createConcurrently(&Service{Store: st, Policy: func() *policy.Snapshot { return snap }}, count)
	for _, l := range lines {
		fmt.Println(l)
	}
	if failed != nil {
		fmt.Fprintln(os.Stderr, failed)
		return 1
	}
	return 0
}

// createConcurrently runs n creates for acme-eu at once and returns their
// results as creator prints them; any error but the limit is returned.
func createConcurrently(svc *Service, n int) ([]string, error) {
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		lines  []string
		failed error
	)
	for i := range n {
		wg.Go(func() {
			c, err := svc.Create(context.Background(), Actor{}, store.Scope{Tenant: "acme", Org: "acme-eu"}, NewKey{Name: fmt.Sprintf("concurrent %d", i)})
			mu.Lock()
			defer mu.Unlock()
			var e *Error
			switch {
			case err == nil:
				lines = append(lines, fmt.Sprintf("ok %s %s", c.ID, policy.FormatDigest(apikey.Digest(c.Secret))))
			case errors.As(err, &e) && e.Code == "limit_reached":
				lines = append(lines, "limit")
			default:
				failed = errors.Join(failed, err)
			}
		})
	}
	wg.Wait()
	return lines, failed
}

// concurrentPolicy allows 5 keys in acme-eu, of which one is active: 4
// slots are free.
const concurrentPolicy = `version: 1
settings:
  max_org_keys: 5
tenants:
  - id: acme
    orgs: [acme-eu]
api_keys:
  - {id: kg_first, hash: "sha256:1111111111111111111111111111111111111111111111111111111111111111", tenant: acme, org: acme-eu, user: bot}
  - {id: kg_gone, hash: "sha256:2222222222222222222222222222222222222222222222222222222222222222", tenant: acme, org: acme-eu, user: bot, disabled: true}
`

// TestLimitHoldsUnderConcurrency: 24 creates for one organization at once,
// 8 from goroutines of this process and 8 from each of two other processes,
// all on one policy file (and on one policy directory's managed.yaml):
// exactly the 4 free slots are taken, the other 20 get limit_reached, and
// the policy compiles with every created key in it.
func TestLimitHoldsUnderConcurrency(t *testing.T) {
	const procs, perProc, inProc, free = 2, 8, 8, 4
	for _, mode := range []string{"file", "dir"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "policy.yaml")
			if err := os.WriteFile(path, []byte(concurrentPolicy), 0o644); err != nil {
				t.Fatal(err)
			}
			target := path
			if mode == "dir" {
				target = dir
			}
			var (
				wg    sync.WaitGroup
				mu    sync.Mutex
				lines []string
			)
			for p := range procs {
				wg.Go(func() {
					cmd := exec.Command(os.Args[0], "-test.run=^$")
					cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s,%d", creatorEnv, target, perProc))
					out, err := cmd.Output()
					if err != nil {
						var ee *exec.ExitError
						if errors.As(err, &ee) {
							err = fmt.Errorf("%w: %s", err, ee.Stderr)
						}
						t.Errorf("process %d: %v", p, err)
					}
					mu.Lock()
					defer mu.Unlock()
					sc := bufio.NewScanner(strings.NewReader(string(out)))
					for sc.Scan() {
						lines = append(lines, sc.Text())
					}
				})
			}
			st, err := store.NewFile(target)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := st.Policy(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				got, err := createConcurrently(&Service{Store: st, Policy: func() *policy.Snapshot { return snap }}, inProc)
				if err != nil {
					t.Errorf("in-process creates: %v", err)
				}
				mu.Lock()
				defer mu.Unlock()
				lines = append(lines, got...)
			})
			wg.Wait()

			var created []string
			refused := 0
			for _, l := range lines {
				if l == "limit" {
					refused++
				} else {
					created = append(created, l)
				}
			}
			total := procs*perProc + inProc
			t.Logf("%s: %d concurrent creates from %d processes, %d free slots: %d created, %d refused with limit_reached",
				mode, total, procs+1, free, len(created), refused)
			if len(created) != free || refused != total-free {
				t.Fatalf("%d created and %d refused of %d, want %d and %d", len(created), refused, total, free, total-free)
			}
			after, err := st.Policy(context.Background())
			if err != nil {
				t.Fatalf("the policy does not compile after the creates: %v", err)
			}
			for _, l := range created {
				var id, hash string
				fmt.Sscanf(l, "ok %s %s", &id, &hash)
				d, err := policy.ParseDigest(hash)
				if err != nil {
					t.Fatal(err)
				}
				if p := after.Lookup(policy.KindAPIKey, d); p == nil || p.ID != id || p.Org != "acme-eu" {
					t.Errorf("created key %s is not in the policy: %+v", id, p)
				}
			}
			if n := after.Counts().APIKeys; n != 2+free {
				t.Errorf("the policy holds %d keys, want %d", n, 2+free)
			}
		})
	}
}
