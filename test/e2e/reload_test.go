package e2e

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// reloadDeadline bounds how long a policy change may take to be in force.
const reloadDeadline = 3 * time.Second

// inPlaceSettle is how long a file written in place must stay unchanged
// before keygate publishes it (source.DefaultSettle).
const inPlaceSettle = 2 * time.Second

// k8sVolume imitates a mounted ConfigMap: DIR/..TS/policy.yaml holds the
// data, DIR/..data links to the current ..TS directory and DIR/policy.yaml
// links to ..data/policy.yaml. Updates swap ..data atomically, as the
// kubelet does.
type k8sVolume struct {
	t   testing.TB
	dir string
	ts  string // current timestamped directory
	n   int
}

func newK8sVolume(t testing.TB, text string) *k8sVolume {
	v := &k8sVolume{t: t, dir: t.TempDir()}
	v.ts = v.writeVersion(text)
	if err := os.Symlink(v.ts, filepath.Join(v.dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join("..data", "policy.yaml"), v.path()); err != nil {
		t.Fatal(err)
	}
	return v
}

func (v *k8sVolume) path() string { return filepath.Join(v.dir, "policy.yaml") }

func (v *k8sVolume) writeVersion(text string) string {
	v.n++
	ts := fmt.Sprintf("..2026_01_01_00_00_%02d.%09d", v.n, v.n)
	if err := os.Mkdir(filepath.Join(v.dir, ts), 0o755); err != nil {
		v.t.Fatal(err)
	}
	writeFile(v.t, filepath.Join(v.dir, ts, "policy.yaml"), text)
	return ts
}

// update swaps ..data to a new timestamped directory and removes the old one.
func (v *k8sVolume) update(text string) {
	ts := v.writeVersion(text)
	tmp := filepath.Join(v.dir, "..data_tmp")
	if err := os.Symlink(ts, tmp); err != nil {
		v.t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(v.dir, "..data")); err != nil {
		v.t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(v.dir, v.ts)); err != nil {
		v.t.Fatal(err)
	}
	v.ts = ts
}

func TestReload(t *testing.T) {
	t.Parallel()
	methods := []struct {
		name  string
		setup func(t *testing.T, text string) (path string, update func(text string))
		// settle is how long the change must stay unchanged before it is
		// published: an in-place write may be read half-written.
		settle time.Duration
	}{
		{"in-place write", func(t *testing.T, text string) (string, func(string)) {
			path := newPolicyFile(t, text)
			return path, func(s string) { writeFile(t, path, s) }
		}, inPlaceSettle},
		{"atomic rename", func(t *testing.T, text string) (string, func(string)) {
			path := newPolicyFile(t, text)
			return path, func(s string) { writeAtomic(t, path, s) }
		}, 0},
		{"kubernetes ..data symlink swap", func(t *testing.T, text string) (string, func(string)) {
			v := newK8sVolume(t, text)
			return v.path(), v.update
		}, 0},
	}
	for _, m := range methods {
		t.Run(m.name, func(t *testing.T) {
			t.Parallel()
			keys := []cred{newKey(t, "acme", "", "bot-0", "sales")}
			path, update := m.setup(t, renderPolicy(simpleEndpoints, keys, nil))
			p := startKeygate(t, path)
			if got := p.httpStatus(t, "GET", "/whoami", bearer(keys[0].Raw)); got != 200 {
				t.Fatalf("initial key: %d, want 200", got)
			}
			// Two rounds: the watch must survive the first change.
			for round := 1; round <= 2; round++ {
				nk := newKey(t, "acme", "", fmt.Sprintf("bot-%d", round), "sales")
				if got := p.httpStatus(t, "GET", "/whoami", bearer(nk.Raw)); got != 401 {
					t.Fatalf("round %d: new key before the change: %d, want 401", round, got)
				}
				keys = append(keys, nk)
				update(renderPolicy(simpleEndpoints, keys, nil))
				latency, ok := poll(m.settle+reloadDeadline, func() bool {
					return p.httpStatus(t, "GET", "/whoami", bearer(nk.Raw)) == 200
				})
				if !ok {
					_, st := p.readyVerbose(t)
					t.Fatalf("round %d: new key not accepted within %v; status %+v; output:\n%s",
						round, m.settle+reloadDeadline, st, p.Out.Tail(20))
				}
				t.Logf("round %d: new key accepted %v after the change", round, latency.Round(time.Millisecond))
				for _, k := range keys {
					if got := p.httpStatus(t, "GET", "/whoami", bearer(k.Raw)); got != 200 {
						t.Errorf("round %d: key %s after reload: %d, want 200", round, k.ID, got)
					}
				}
			}
		})
	}
}

func TestRevocationWithWarmCache(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"disabled", "removed"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			k := newKey(t, "acme", "", "api-bot", "sales")
			other := newKey(t, "acme", "", "other-bot", "sales")
			path := newPolicyFile(t, renderPolicy(simpleEndpoints, []cred{k, other}, nil))
			p := startKeygate(t, path)

			c := answerCase{method: "GET", host: defaultHost, path: "/whoami", headers: bearer(k.Raw)}
			for i := 0; i < 100; i++ {
				if o := grpcCheck(t, p, c); o.status != 200 {
					t.Fatalf("warm-up check %d: %d, want 200", i, o.status)
				}
			}
			_, st := p.readyVerbose(t)
			gen0 := st.Generation

			revoked := []cred{other}
			if mode == "disabled" {
				dk := k
				dk.Disabled = true
				revoked = []cred{dk, other}
			}
			writeAtomic(t, path, renderPolicy(simpleEndpoints, revoked, nil))
			allowedBefore := 0
			var firstAfter outcome
			latency, ok := poll(reloadDeadline, func() bool {
				if grpcCheck(t, p, c).status == 200 {
					allowedBefore++
				}
				if _, st := p.readyVerbose(t); st.Generation == gen0 {
					return false
				}
				firstAfter = grpcCheck(t, p, c)
				return true
			})
			if !ok {
				t.Fatalf("the policy generation did not change within %v; output:\n%s", reloadDeadline, p.Out.Tail(20))
			}
			if firstAfter.status != 401 {
				t.Fatalf("first check after the new generation was published: %d, want 401 (the cache must not keep a %s key alive)", firstAfter.status, mode)
			}
			if firstAfter.challenge != `Bearer realm="`+testRealm+`", error="invalid_token"` {
				t.Errorf("WWW-Authenticate %q", firstAfter.challenge)
			}
			if got := p.httpStatus(t, "GET", "/whoami", bearer(k.Raw)); got != 401 {
				t.Errorf("HTTP check of the %s key: %d, want 401", mode, got)
			}
			if got := p.httpStatus(t, "GET", "/whoami", bearer(other.Raw)); got != 200 {
				t.Errorf("the other key: %d, want 200", got)
			}
			t.Logf("%s key denied %v after the change (%d checks still allowed before the new generation showed)",
				mode, latency.Round(time.Millisecond), allowedBefore)
		})
	}
}

func TestBrokenPolicyKeepsServing(t *testing.T) {
	t.Parallel()
	a := newKey(t, "acme", "", "api-bot", "sales")
	good := renderPolicy(simpleEndpoints, []cred{a}, nil)
	path := newPolicyFile(t, good)
	p := startKeygate(t, path)
	_, st := p.readyVerbose(t)
	gen0 := st.Generation

	// An unknown field under a known key: the error must name its line.
	anchor := "    user: api-bot\n"
	if !strings.Contains(good, anchor) {
		t.Fatalf("policy has no %q", anchor)
	}
	broken := strings.Replace(good, anchor, anchor+"    colour: blue\n", 1)
	line := lineOf(t, broken, "colour: blue")
	fileLine := fmt.Sprintf("policy.yaml:%d", line)
	writeAtomic(t, path, broken)

	if _, ok := poll(reloadDeadline, func() bool {
		_, st = p.readyVerbose(t)
		return !st.LastReloadOK
	}); !ok {
		t.Fatalf("broken policy not refused within %v: %+v", reloadDeadline, st)
	}
	if !strings.Contains(st.LastError, fileLine) {
		t.Errorf("last_error %q does not name %s", st.LastError, fileLine)
	}
	if !strings.Contains(st.LastError, "colour") {
		t.Errorf("last_error %q does not name the unknown field", st.LastError)
	}
	if st.Generation != gen0 || st.ReloadsFailed == 0 {
		t.Errorf("after a refused reload: %+v, want generation %d and reloads_failed > 0", st, gen0)
	}
	if code, body := p.Admin("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz with a refused reload: %d %q, want 200", code, body)
	}
	if got := p.httpStatus(t, "GET", "/whoami", bearer(a.Raw)); got != 200 {
		t.Errorf("old key while the policy is broken: %d, want 200", got)
	}
	// SIGHUP re-reads the same broken content: still one log line.
	_ = p.Signal(syscall.SIGHUP)
	logged := func() []string {
		var out []string
		for _, l := range p.Out.Lines() {
			if strings.Contains(l, fileLine) {
				out = append(out, l)
			}
		}
		return out
	}
	poll(reloadDeadline, func() bool { return len(logged()) > 0 })
	time.Sleep(300 * time.Millisecond) // let any duplicate show up
	if ls := logged(); len(ls) != 1 {
		t.Errorf("want exactly one log line naming %s, got %d:\n%s", fileLine, len(ls), strings.Join(ls, "\n"))
	}

	// The fix is picked up.
	b := newKey(t, "acme", "", "new-bot", "sales")
	writeAtomic(t, path, renderPolicy(simpleEndpoints, []cred{a, b}, nil))
	latency, ok := poll(reloadDeadline, func() bool {
		return p.httpStatus(t, "GET", "/whoami", bearer(b.Raw)) == 200
	})
	if !ok {
		t.Fatalf("fixed policy not loaded within %v; output:\n%s", reloadDeadline, p.Out.Tail(20))
	}
	t.Logf("fixed policy in force %v after the write", latency.Round(time.Millisecond))
	_, st = p.readyVerbose(t)
	if !st.LastReloadOK || st.LastError != "" || st.Generation <= gen0 {
		t.Errorf("after the fix: %+v", st)
	}
	if got := p.httpStatus(t, "GET", "/whoami", bearer(a.Raw)); got != 200 {
		t.Errorf("old key after the fix: %d, want 200", got)
	}
}
