package harness

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Missing reports a real component (a binary) that is not installed: the
// test is skipped with msg, except under CI=true, where `make test`
// (hack/test-deps.sh) has installed everything and a missing component
// fails the test. The starters below install nothing.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s (CI=true: hack/test-deps.sh should have installed it)", msg)
	}
	t.Skipf("%s; skipped (under CI=true this fails)", msg)
}

// LookPath finds a binary on PATH, then in /usr/sbin and /usr/local/sbin,
// where Debian installs daemons such as nginx and an unprivileged user's
// PATH often does not look.
func LookPath(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not installed (not on PATH nor in /usr/sbin)", name)
}

// Nginx runs nginx in the foreground, on a free loopback address, until the
// test ends, and returns that address. conf writes the configuration and
// returns its path; it gets nginx's own temporary directory (for the pid
// file, error.log, access.log and temp paths) and the address to listen on,
// and is called again with a fresh address if nginx loses the port. nginx's
// output, logs and configuration go to the test log if the test fails.
// Without nginx the test is skipped (fails under CI=true; KEYGATE_SKIP_PROXIES=1
// always skips).
func Nginx(t testing.TB, conf func(dir, listen string) string) string {
	t.Helper()
	if os.Getenv("KEYGATE_SKIP_PROXIES") == "1" {
		t.Skip("KEYGATE_SKIP_PROXIES=1: not running nginx")
	}
	bin, err := LookPath("nginx")
	if err != nil {
		Missing(t, err.Error()+": `make test-deps` installs it (apt-get install nginx)")
	}
	dir := t.TempDir()
	var listen string
	Retry(t, "nginx", func() (*Process, error) {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		path := conf(dir, addr)
		errorLog := filepath.Join(dir, "error.log")
		cmd := exec.Command(bin, "-c", path, "-p", dir, "-e", errorLog)
		p, err := StartProcess("nginx", cmd, errorLog, filepath.Join(dir, "access.log"), path)
		if err != nil {
			return nil, err
		}
		listen = addr
		return p, p.WaitUntil(15*time.Second, TCPReady(addr))
	}).StopAtCleanup(t, 5*time.Second)
	return listen
}
