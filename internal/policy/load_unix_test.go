//go:build unix

package policy

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// unreadable makes name in dir something that cannot be read as a policy
// file, and returns what the error must say about it.
var unreadable = []struct {
	name string
	make func(t *testing.T, path string)
	want string
}{
	{"dangling symlink", func(t *testing.T, path string) {
		if err := os.Symlink("gone.yaml", path); err != nil {
			t.Fatal(err)
		}
	}, `dangling symlink (its target "gone.yaml" does not exist)`},
	{"symlink loop", func(t *testing.T, path string) {
		if err := os.Symlink(filepath.Base(path), path); err != nil {
			t.Fatal(err)
		}
	}, "symlink loop"},
	{"directory", func(t *testing.T, path string) {
		writeFile(t, filepath.Join(path, "inner.yaml"), "version: 1\n")
	}, "a directory, not a regular file"},
	{"fifo", func(t *testing.T, path string) {
		if err := syscall.Mkfifo(path, 0o644); err != nil {
			t.Skipf("mkfifo: %v", err)
		}
	}, "a named pipe (FIFO), not a regular file"},
	{"socket", func(t *testing.T, path string) {
		l, err := net.Listen("unix", path)
		if err != nil {
			t.Skipf("listen on a unix socket: %v", err)
		}
		t.Cleanup(func() { l.Close() })
	}, "a socket, not a regular file"},
	{"device", func(t *testing.T, path string) {
		if err := os.Symlink(os.DevNull, path); err != nil {
			t.Fatal(err)
		}
	}, "a device, not a regular file"},
}

// TestReadDirRefusesUnreadableFragment: a fragment that cannot be read as a
// regular file refuses the whole directory, naming the fragment and why.
// Skipping it would publish the other fragments without it: an admin
// endpoint defined there would fall through to a catch-all in another.
func TestReadDirRefusesUnreadableFragment(t *testing.T) {
	for _, tc := range unreadable {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeFile(t, filepath.Join(dir, "10-base.yaml"), "version: 1\ntenants: [{id: acme}]\n")
			writeFile(t, filepath.Join(dir, "90-public.yaml"), "version: 1\nendpoints: [{name: all, match: {path: /**}, anonymous: true}]\n")
			bad := filepath.Join(dir, "20-admin.yaml")
			tc.make(t, bad)

			for name, read := range map[string]func(string) ([]Input, error){"ReadDir": ReadDir, "ReadPath": ReadPath} {
				inputs, err := readWithin(t, func() ([]Input, error) { return read(dir) })
				if err == nil {
					t.Fatalf("%s read %d fragments and no error", name, len(inputs))
				}
				if want := bad + ": cannot read: " + tc.want; !strings.Contains(err.Error(), want) {
					t.Errorf("%s error %q, want it to contain %q", name, err, want)
				}
				var pe Errors
				if !errors.As(err, &pe) || len(pe) != 1 || pe[0].File != bad {
					t.Errorf("%s error %#v is not one policy.Error naming %s", name, err, bad)
				}
			}
			if _, err := readWithin(t, func() ([]Input, error) {
				_, err := LoadPath(dir, Options{})
				return nil, err
			}); err == nil {
				t.Error("LoadPath succeeded")
			}
		})
	}
}

// TestReadFileRefusesNonRegular: --policy FILE reads a regular file (or a
// symlink to one) and nothing else.
func TestReadFileRefusesNonRegular(t *testing.T) {
	for _, tc := range unreadable {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "policy.yaml")
			tc.make(t, path)
			_, err := readWithin(t, func() ([]Input, error) { return ReadFile(path) })
			if want := path + ": cannot read: " + tc.want; err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("ReadFile error %v, want it to contain %q", err, want)
			}
		})
	}
}
