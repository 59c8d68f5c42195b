package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/test/internal/harness"
)

// Fragments of a policy directory where the admin area is defined in one
// fragment and a catch-all in another: without 10-admin.yaml, /admin/x
// falls through to the anonymous catch-all.
const (
	adminFragment = `version: 1
endpoints:
  - name: admin
    match: {path: "/admin/**"}
    require: [api_key]
    groups: [admin]
`
	publicFragment = `version: 1
endpoints:
  - name: public
    match: {path: "/**"}
    anonymous: true
`
)

// TestFragmentUnreadableKeepsAdminProtected: a fragment that becomes a
// dangling symlink or a FIFO refuses the reload; the admin area it defines
// stays protected, /readyz?verbose says the last reload failed and why, and
// keygate policy validate fails on the directory. The FIFO must not stall
// the watch: a later fix is loaded and SIGTERM still stops keygate.
func TestFragmentUnreadableKeepsAdminProtected(t *testing.T) {
	t.Parallel()
	breaks := []struct {
		name, want string
		make       func(t *testing.T, path string)
	}{
		{"dangling symlink", `cannot read: dangling symlink (its target "../moved/10-admin.yaml" does not exist)`, func(t *testing.T, path string) {
			if err := os.Symlink("../moved/10-admin.yaml", path); err != nil {
				t.Fatal(err)
			}
		}},
		{"fifo", "cannot read: a named pipe (FIFO), not a regular file", func(t *testing.T, path string) {
			if err := syscall.Mkfifo(path, 0o644); err != nil {
				t.Skipf("mkfifo: %v", err)
			}
		}},
	}
	for _, br := range breaks {
		t.Run(br.name, func(t *testing.T) {
			t.Parallel()
			admin := newKey(t, "acme", "", "root", "admin")
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "00-base.yaml"), renderPolicy("", []cred{admin}, nil))
			adminPath := filepath.Join(dir, "10-admin.yaml")
			writeFile(t, adminPath, adminFragment)
			writeFile(t, filepath.Join(dir, "90-public.yaml"), publicFragment)
			p := startKeygate(t, dir)
			if got := p.httpStatus(t, "GET", "/admin/users", nil); got != 401 {
				t.Fatalf("admin area without a key: %d, want 401", got)
			}
			if got := p.httpStatus(t, "GET", "/admin/users", bearer(admin.Raw)); got != 200 {
				t.Fatalf("admin area with the admin key: %d, want 200", got)
			}
			_, st := p.readyVerbose(t)
			gen0 := st.Generation

			// Broken in one step: made beside, then renamed over.
			tmp := filepath.Join(dir, ".10-admin.yaml.new")
			br.make(t, tmp)
			if err := os.Rename(tmp, adminPath); err != nil {
				t.Fatal(err)
			}
			opened := 0
			if _, ok := poll(reloadDeadline, func() bool {
				if p.httpStatus(t, "GET", "/admin/users", nil) != 401 {
					opened++
				}
				_, st = p.readyVerbose(t)
				return !st.LastReloadOK
			}); !ok {
				t.Fatalf("reload not refused within %v: %+v; output:\n%s", reloadDeadline, st, p.Out.Tail(20))
			}
			if opened > 0 {
				t.Errorf("the admin area answered without a key %d times after its fragment broke", opened)
			}
			if want := adminPath + ": " + br.want; !strings.Contains(st.LastError, want) {
				t.Errorf("last_error %q, want it to contain %q", st.LastError, want)
			}
			if st.Generation != gen0 || st.ReloadsFailed == 0 {
				t.Errorf("after the refused reload: %+v, want generation %d and reloads_failed > 0", st, gen0)
			}
			if got := p.httpStatus(t, "GET", "/admin/users", nil); got != 401 {
				t.Errorf("admin area without a key after the refused reload: %d, want 401", got)
			}
			if got := p.httpStatus(t, "GET", "/admin/users", bearer(admin.Raw)); got != 200 {
				t.Errorf("admin area with the admin key after the refused reload: %d, want 200", got)
			}
			if code, body := p.Admin("/readyz"); code != 200 {
				t.Errorf("/readyz with a refused reload: %d %q, want 200 (the last good policy serves)", code, body)
			}

			// keygate policy validate says the same of the directory.
			r := harness.Run(t, 10*time.Second, "policy", "validate", dir)
			if r.Code == 0 || !strings.Contains(r.Out.String(), adminPath+": "+br.want) {
				t.Errorf("keygate policy validate: exit %d, output:\n%s\nwant a failure naming %s", r.Code, r.Out.String(), adminPath)
			}

			// Fixed: the watch is alive and the next change is loaded.
			if err := os.Remove(adminPath); err != nil {
				t.Fatal(err)
			}
			writeAtomic(t, adminPath, strings.Replace(adminFragment, "/admin/**", "/admin/users", 1))
			if _, ok := poll(reloadDeadline, func() bool {
				_, st = p.readyVerbose(t)
				return st.LastReloadOK && st.Generation > gen0
			}); !ok {
				t.Fatalf("fixed fragment not loaded within %v: %+v; output:\n%s", reloadDeadline, st, p.Out.Tail(20))
			}
			if got := p.httpStatus(t, "GET", "/admin/users", nil); got != 401 {
				t.Errorf("admin area without a key after the fix: %d, want 401", got)
			}
		})
	}
}

// TestInPlaceTwoPartWriteNeverServesFirstHalf: a policy rewritten in place
// in two writes a second apart, whose first half is a valid policy without
// the line that disables a key, never lets that key in; the complete file
// is loaded once it has stayed unchanged.
func TestInPlaceTwoPartWriteNeverServesFirstHalf(t *testing.T) {
	t.Parallel()
	a := newKey(t, "acme", "", "api-bot", "sales")
	revoked := newKey(t, "acme", "", "old-bot", "sales")
	revoked.Disabled = true
	path := newPolicyFile(t, renderPolicy(simpleEndpoints, []cred{a, revoked}, nil))
	p := startKeygate(t, path)
	if got := p.httpStatus(t, "GET", "/whoami", bearer(revoked.Raw)); got != 401 {
		t.Fatalf("disabled key: %d, want 401", got)
	}

	b := newKey(t, "acme", "", "new-bot", "sales")
	full := renderPolicy(simpleEndpoints, []cred{a, b, revoked}, nil)
	if !strings.HasSuffix(full, "    disabled: true\n") {
		t.Fatalf("the policy must end with the disabled line:\n%s", full)
	}
	cut := len(full) - len("    disabled: true\n")

	let := 0 // checks that let the disabled key in
	check := func() {
		if p.httpStatus(t, "GET", "/whoami", bearer(revoked.Raw)) != 401 {
			let++
		}
	}
	fh, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteString(full[:cut]); err != nil {
		t.Fatal(err)
	}
	for start := time.Now(); time.Since(start) < time.Second; time.Sleep(20 * time.Millisecond) {
		check()
	}
	if _, err := fh.WriteString(full[cut:]); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
	latency, ok := poll(inPlaceSettle+reloadDeadline, func() bool {
		check()
		return p.httpStatus(t, "GET", "/whoami", bearer(b.Raw)) == 200
	})
	if !ok {
		_, st := p.readyVerbose(t)
		t.Fatalf("the complete file was not loaded: %+v; output:\n%s", st, p.Out.Tail(20))
	}
	t.Logf("the complete file was in force %v after its last write", latency.Round(time.Millisecond))
	check()
	if let > 0 {
		t.Errorf("the disabled key was let in %d times while the file was half-written", let)
	}
}
