package harness

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// RedisServer is a real redis-server: on a free loopback port, with
// nothing written to disk (no RDB snapshots, no AOF). Kill and Restart make
// an honest outage.
type RedisServer struct {
	Addr string // 127.0.0.1:PORT

	bin  string
	dir  string
	proc *Process
}

// Redis starts redis-server until the test ends. Without redis-server the
// test is skipped (fails under CI=true: hack/test-deps.sh installs it).
func Redis(t testing.TB) *RedisServer {
	t.Helper()
	if _, err := LookPath("redis-server"); err != nil {
		Missing(t, err.Error()+": `make test-deps` installs it (apt-get install redis-server)")
	}
	r, err := StartRedis(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() && r.proc != nil {
			r.proc.Dump(t)
		}
	})
	return r
}

// StartRedis starts redis-server with dir as its working directory, for
// programs (test/load); the caller stops it (Stop).
func StartRedis(dir string) (*RedisServer, error) {
	bin, err := LookPath("redis-server")
	if err != nil {
		return nil, err
	}
	r := &RedisServer{bin: bin, dir: dir}
	for attempt := 0; attempt < 3; attempt++ {
		if r.Addr, err = FreeAddr(); err != nil {
			return nil, err
		}
		var p *Process
		if p, err = r.start(); err == nil {
			r.proc = p
			return r, nil
		}
		if p != nil {
			_ = p.Stop(0)
		}
		if !errors.Is(err, ErrExited) { // lost its port: retry with another
			break
		}
	}
	return nil, fmt.Errorf("redis-server: %w", err)
}

// Stop ends redis-server (SIGTERM, then SIGKILL after 5 s).
func (r *RedisServer) Stop() {
	if r.proc != nil {
		_ = r.proc.Stop(5 * time.Second)
	}
}

func (r *RedisServer) start() (*Process, error) {
	_, port, _ := net.SplitHostPort(r.Addr)
	cmd := exec.Command(r.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--logfile", "")
	p, err := StartProcess("redis-server", cmd)
	if err != nil {
		return nil, err
	}
	return p, p.WaitUntil(10*time.Second, r.ping)
}

// URL is the server's address as keygate's --ratelimit-store takes it.
func (r *RedisServer) URL() string { return "redis://" + r.Addr + "/0" }

// Kill ends redis-server at once (SIGKILL), as a crash would.
func (r *RedisServer) Kill() {
	if r.proc != nil {
		_ = r.proc.Stop(0)
	}
}

// Restart starts redis-server again on the same address, empty, and waits
// until it answers PING.
func (r *RedisServer) Restart() error {
	r.Kill()
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var p *Process
		if p, err = r.start(); err == nil {
			r.proc = p
			return nil
		}
		if p != nil {
			_ = p.Stop(0)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("redis-server did not come back on %s: %w", r.Addr, err)
}

// ping sends PING and wants +PONG.
func (r *RedisServer) ping() error {
	c, err := net.DialTimeout("tcp", r.Addr, 200*time.Millisecond)
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
