// Package redistest runs a real redis-server for tests: on a free loopback
// port, nothing written to disk (no RDB snapshots, no AOF), killed with
// the test process. Kill and Restart make an honest outage. The suites
// under test/ reach it through harness.Redis; packages under internal/,
// which cannot import the harness, use New directly.
package redistest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is one redis-server.
type Server struct {
	Addr string // 127.0.0.1:PORT

	bin, dir string
	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when cmd has been waited for
	out      strings.Builder
}

// ErrNotInstalled: there is no redis-server to run.
var ErrNotInstalled = errors.New("redis-server is not installed (not on PATH nor in /usr/bin or /usr/sbin): `make test-deps` installs it (apt-get install redis-server)")

// New starts redis-server until the test ends. Without redis-server the
// test is skipped, and fails under CI=true (hack/test-deps.sh installs it).
func New(t testing.TB) *Server {
	t.Helper()
	s, err := Start(t.TempDir())
	if errors.Is(err, ErrNotInstalled) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%v (CI=true: hack/test-deps.sh should have installed it)", err)
		}
		t.Skipf("%v; skipped (under CI=true this fails)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("redis-server output:\n%s", s.Output())
		}
	})
	return s
}

// Start starts redis-server with dir as its working directory; the caller
// stops it (Stop).
func Start(dir string) (*Server, error) {
	bin, err := lookPath()
	if err != nil {
		return nil, err
	}
	s := &Server{bin: bin, dir: dir}
	for attempt := 0; attempt < 3; attempt++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		s.Addr = l.Addr().String()
		l.Close()
		if err = s.start(); err == nil {
			return s, nil
		}
		s.Kill() // lost its port to another process: try another
	}
	return nil, fmt.Errorf("redis-server on %s: %w\n%s", s.Addr, err, s.Output())
}

func lookPath() (string, error) {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/bin/redis-server", "/usr/sbin/redis-server"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", ErrNotInstalled
}

func (s *Server) start() error {
	_, port, _ := net.SplitHostPort(s.Addr)
	cmd := exec.Command(s.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", "")
	s.mu.Lock()
	cmd.Stdout, cmd.Stderr = &lockedWriter{s}, &lockedWriter{s}
	s.mu.Unlock()
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	s.mu.Lock()
	s.cmd, s.exited = cmd, exited
	s.mu.Unlock()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if err := s.ping(); err == nil {
			return nil
		}
		select {
		case <-exited:
			return errors.New("redis-server exited before it answered PING")
		default:
		}
		if time.Now().After(deadline) {
			return errors.New("redis-server did not answer PING within 10 s")
		}
	}
}

// lockedWriter collects the server's output under the Server's lock.
type lockedWriter struct{ s *Server }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	return w.s.out.Write(p)
}

// Output is what redis-server printed.
func (s *Server) Output() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.out.String()
}

// URL is the server's address as keygate's --ratelimit-store and
// --session-store take it.
func (s *Server) URL() string { return "redis://" + s.Addr + "/0" }

// Kill ends redis-server at once (SIGKILL), as a crash would.
func (s *Server) Kill() {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		select { // reaped: its port is free again
		case <-exited:
		case <-time.After(5 * time.Second):
		}
	}
}

// Stop ends redis-server.
func (s *Server) Stop() { s.Kill() }

// Restart starts redis-server again on the same address, empty, and waits
// until it answers PING.
func (s *Server) Restart() error {
	s.Kill()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = s.start(); err == nil {
			return nil
		}
		s.Kill()
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("redis-server did not come back on %s: %w", s.Addr, err)
}

// ping sends PING and wants +PONG.
func (s *Server) ping() error {
	c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}
