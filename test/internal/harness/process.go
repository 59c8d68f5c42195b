package harness

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Process is a child process whose output the harness captures.
type Process struct {
	Name     string
	Cmd      *exec.Cmd
	Out      *Output
	LogFiles []string // files it writes, shown with its output by Dump

	done     chan struct{} // closed when it has exited
	waitErr  error         // valid once done is closed
	signaled atomic.Bool   // a signal was sent: an exit is no surprise
	expected atomic.Bool   // the caller waited for the exit and judges it
}

// StartProcess starts cmd with its stdout and stderr captured in Out (and
// also written where cmd already sends them). The process dies with this
// one, even when this one is killed. logFiles are files it writes, for Dump.
func StartProcess(name string, cmd *exec.Cmd, logFiles ...string) (*Process, error) {
	p := &Process{Name: name, Cmd: cmd, Out: &Output{name: name}, LogFiles: logFiles, done: make(chan struct{})}
	cmd.Stdout = teeTo(p.Out, cmd.Stdout)
	cmd.Stderr = teeTo(p.Out, cmd.Stderr)
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	// Its own process group, so that a kill takes its children too (nginx's
	// workers), and dead with this process.
	cmd.SysProcAttr.Setpgid = true
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	// Should a child outlive it all the same, Wait does not wait for the
	// child to close the output pipes.
	if cmd.WaitDelay == 0 {
		cmd.WaitDelay = 2 * time.Second
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func teeTo(out *Output, w io.Writer) io.Writer {
	if w == nil {
		return out
	}
	return io.MultiWriter(out, w)
}

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has exited.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Err is how the process ended (nil for exit status 0), or nil while it runs.
func (p *Process) Err() error {
	if !p.Exited() {
		return nil
	}
	return p.waitErr
}

// ExitCode is the exit status, or -1 while it runs or when a signal ended it.
func (p *Process) ExitCode() int {
	if !p.Exited() {
		return -1
	}
	return p.Cmd.ProcessState.ExitCode()
}

// Pid is the process id (a wrapper that execs, like taskset, keeps it).
func (p *Process) Pid() int { return p.Cmd.Process.Pid }

// ExitError is nil while the process runs; else it says how the process
// ended, with the end of its output.
func (p *Process) ExitError() error {
	if !p.Exited() {
		return nil
	}
	return fmt.Errorf("%s exited: %v; output ends:\n%s", p.Name, p.waitErr, p.Out.Tail(40))
}

// Signal sends sig; the process's exit is then no surprise, except after
// SIGHUP, which asks a daemon (keygate, nginx) to reload and live on.
func (p *Process) Signal(sig os.Signal) error {
	if sig != syscall.SIGHUP {
		p.signaled.Store(true)
	}
	return p.Cmd.Process.Signal(sig)
}

// Stop sends SIGTERM and waits up to grace for the process to exit, then
// kills it, and says so in the error. A grace of 0 kills it at once, as a
// crash would. A process that has exited already is left as it is.
func (p *Process) Stop(grace time.Duration) error {
	if p.Exited() {
		return nil
	}
	if grace <= 0 {
		p.kill()
		return nil
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(grace):
		p.kill()
		return fmt.Errorf("%s did not exit within %s of SIGTERM and was killed", p.Name, grace)
	}
}

// kill sends SIGKILL to the process and its process group, and waits.
func (p *Process) kill() {
	p.signaled.Store(true)
	_ = syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// WaitExit waits up to timeout for the process to exit by itself, which the
// caller then judges (ExitCode, Out): the exit is no failure of its own.
func (p *Process) WaitExit(timeout time.Duration) error {
	p.expected.Store(true)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("%s still running after %s; output ends:\n%s", p.Name, timeout, p.Out.Tail(40))
	}
}

// ErrExited says a process ended before it was ready.
var ErrExited = errors.New("exited before it was ready")

// WaitUntil calls ready every 20ms until it returns nil, the process exits
// (an error wrapping ErrExited) or timeout passes (an error with ready's
// last complaint).
func (p *Process) WaitUntil(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		if p.Exited() {
			return fmt.Errorf("%s %w (%v); output ends:\n%s", p.Name, ErrExited, p.waitErr, p.Out.Tail(40))
		}
		err := ready()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s (last: %v); output ends:\n%s", p.Name, timeout, err, p.Out.Tail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Dump writes the process's command line, exit, output and log files into
// the test log.
func (p *Process) Dump(t testing.TB) {
	t.Helper()
	exit := "running"
	if p.Exited() {
		exit = fmt.Sprintf("exit: %v", p.waitErr)
	}
	t.Logf("===== %s (%s) output, %s =====\n%s", p.Name, strings.Join(p.Cmd.Args, " "), exit, p.Out.String())
	for _, f := range p.LogFiles {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Logf("===== %s %s: %v", p.Name, f, err)
			continue
		}
		t.Logf("===== %s %s =====\n%s", p.Name, f, data)
	}
}

// StopAtCleanup stops the process (Stop with grace) when the test ends, and
// dumps it when the test failed.
func (p *Process) StopAtCleanup(t testing.TB, grace time.Duration) {
	t.Cleanup(func() {
		if err := p.Stop(grace); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			p.Dump(t)
		}
	})
}

// Retry runs start up to three times: a process that exits before it is
// ready (an error wrapping ErrExited) most likely lost its free port to
// another, so start picks fresh ports each time. A failed attempt is
// stopped and dumped into the test log; the last failure fails the test.
func Retry(t testing.TB, name string, start func() (*Process, error)) *Process {
	t.Helper()
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var p *Process
		if p, err = start(); err == nil {
			return p
		}
		if p != nil {
			_ = p.Stop(5 * time.Second)
			p.Dump(t)
		}
		if !errors.Is(err, ErrExited) {
			break
		}
		t.Logf("%s attempt %d: %v; retrying with fresh ports", name, attempt, err)
	}
	t.Fatalf("%s: %v", name, err)
	return nil
}

// FreeAddrs returns n distinct loopback addresses (127.0.0.1:PORT) whose
// ports were free a moment ago: the listeners are held until all n are
// chosen, then closed for the process to bind. Another process can take a
// port in between; starters retry with fresh ports when that happens.
func FreeAddrs(n int) ([]string, error) {
	addrs := make([]string, n)
	ls := make([]net.Listener, 0, n)
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("free port: %w", err)
		}
		ls = append(ls, l)
		addrs[i] = l.Addr().String()
	}
	return addrs, nil
}

// FreeAddr is one address of FreeAddrs.
func FreeAddr() (string, error) {
	a, err := FreeAddrs(1)
	if err != nil {
		return "", err
	}
	return a[0], nil
}

// TCPReady is a readiness probe: something accepts connections on addr.
func TCPReady(addr string) func() error {
	return func() error {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			return err
		}
		return c.Close()
	}
}

// probeClient polls loopback readiness endpoints. It trusts any
// certificate: it asks only whether a server answers; the clients that
// matter (kubeconfigs) verify.
var probeClient = &http.Client{
	Timeout: 2 * time.Second,
	Transport: &http.Transport{
		Proxy:           nil,
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
	},
}

// HTTPReady is a readiness probe: GET url answers 200, with token as a
// bearer token when it is not empty.
func HTTPReady(url, token string) func() error {
	return func() error {
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := probeClient.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return errors.New(resp.Status)
		}
		return nil
	}
}
