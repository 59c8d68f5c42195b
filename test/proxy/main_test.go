// Package proxy puts real reverse proxies in front of keygate, end to end:
// nginx (auth_request) and Caddy (forward_auth) ask keygate's HTTP adapter
// about every request before it reaches a small Go backend, and one table of
// scenarios runs against both proxies and directly against keygate's gRPC
// adapter (a real go-control-plane ext_authz client playing Envoy), so the
// test shows that every adapter decides identically.
//
// The proxies come from Debian (.ci/run installs them). A missing proxy fails
// the suite unless KEYGATE_SKIP_PROXIES=1 is set.
//
// The proxy configurations are the templates in testdata/; docs/proxies.md
// shows the same configurations with the test's paths and ports generalized.
package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// keygateBin is the keygate binary under test, built once by TestMain.
var keygateBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "keygate-proxy-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "proxy:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	keygateBin = filepath.Join(tmp, "keygate")
	build := exec.Command("go", "build", "-o", keygateBin, "./cmd/keygate")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "proxy: go build ./cmd/keygate: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}

// skipProxies is the escape hatch for machines without nginx and Caddy.
func skipProxies() bool { return os.Getenv("KEYGATE_SKIP_PROXIES") == "1" }

// lookupProxy finds a proxy binary. Debian installs nginx in /usr/sbin, which
// an unprivileged user's PATH often lacks, so the sbin directories are tried
// after PATH. The error is the message a missing proxy fails the test with.
func lookupProxy(name string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s is not on PATH (nor in /usr/sbin): .ci/run installs it "+
		"(apt-get install -y --no-install-recommends nginx caddy); "+
		"set KEYGATE_SKIP_PROXIES=1 to run without the proxy tests", name)
}

// lockedBuffer collects a process's output; the process writes while the
// test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// process is a child process whose output (and log files) go to the test log
// when the test fails.
type process struct {
	name     string
	cmd      *exec.Cmd
	out      lockedBuffer
	exited   chan struct{}
	waitErr  error
	logFiles []string
	stopOnce sync.Once
}

// startProcess starts cmd and registers its stop, and the dump of its logs on
// failure, with t.Cleanup.
func startProcess(t *testing.T, name string, cmd *exec.Cmd, logFiles ...string) (*process, error) {
	t.Helper()
	p := &process{name: name, cmd: cmd, exited: make(chan struct{}), logFiles: logFiles}
	cmd.Stdout = &p.out
	cmd.Stderr = &p.out
	// Should the test binary die, take the child with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			p.dump(t)
		}
	})
	return p, nil
}

// stop asks the process to exit (SIGTERM: nginx's fast shutdown, Caddy's and
// keygate's graceful one) and kills it if it has not within 5 s.
func (p *process) stop() {
	p.stopOnce.Do(func() {
		select {
		case <-p.exited:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
	})
}

func (p *process) running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// dump writes the process's output and log files into the test log.
func (p *process) dump(t *testing.T) {
	t.Helper()
	t.Logf("===== %s (%s) output, exit: %v =====\n%s", p.name, strings.Join(p.cmd.Args, " "), p.waitErr, p.out.String())
	for _, f := range p.logFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Logf("===== %s %s: %v", p.name, f, err)
			continue
		}
		t.Logf("===== %s %s =====\n%s", p.name, f, data)
	}
}

// freePort returns a loopback port that was free a moment ago. Starters
// retry with fresh ports when a process loses the race for it.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// errExited says the process ended before it was ready.
var errExited = errors.New("process exited before it was ready")

// waitReady polls ready until it succeeds, the process exits or 15 s pass.
func waitReady(p *process, ready func() bool) error {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if !p.running() {
			return fmt.Errorf("%s: %w (%v)", p.name, errExited, p.waitErr)
		}
		if ready() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready after 15 s", p.name)
}

// tcpReady reports whether something accepts connections on addr.
func tcpReady(addr string) func() bool {
	return func() bool {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return false
		}
		_ = c.Close()
		return true
	}
}

// startWithRetry runs start up to three times: a process that exits before it
// is ready most likely lost its free port to another process.
func startWithRetry(t *testing.T, name string, start func() (*process, error)) *process {
	t.Helper()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var p *process
		p, err = start()
		if err == nil {
			return p
		}
		if p != nil {
			p.stop()
			p.dump(t)
		}
		if !errors.Is(err, errExited) {
			break
		}
		t.Logf("%s attempt %d: %v; retrying with fresh ports", name, attempt, err)
	}
	t.Fatalf("%s: %v", name, err)
	return nil
}
