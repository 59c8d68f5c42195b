package redissessions_test

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// redisServer is a real redis-server on a loopback port, nothing on disk,
// for one test. (Suites under test/ have harness.Redis; a package outside
// test/ cannot import it.) Without redis-server the test is skipped, and
// fails under CI=true.
type redisServer struct {
	t    testing.TB
	bin  string
	dir  string
	Addr string

	mu  sync.Mutex
	cmd *exec.Cmd
	out strings.Builder
}

func startRedis(t testing.TB) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("redis-server is not installed (CI=true: hack/test-deps.sh should have installed it)")
		}
		t.Skip("redis-server is not installed; skipped (under CI=true this fails)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &redisServer{t: t, bin: bin, dir: t.TempDir(), Addr: l.Addr().String()}
	l.Close()
	r.start()
	t.Cleanup(r.Kill)
	return r
}

func (r *redisServer) URL() string { return "redis://" + r.Addr + "/0" }

func (r *redisServer) start() {
	r.t.Helper()
	_, port, _ := net.SplitHostPort(r.Addr)
	cmd := exec.Command(r.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir)
	cmd.Stdout, cmd.Stderr = &r.out, &r.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.cmd = cmd
	r.mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("tcp", r.Addr); err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("redis-server not listening on %s: %s", r.Addr, r.out.String())
		}
	}
}

// Kill ends redis-server at once, as a crash would.
func (r *redisServer) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		r.cmd = nil
	}
}

// Restart starts it again on the same address, empty.
func (r *redisServer) Restart() {
	r.Kill()
	r.start()
}
