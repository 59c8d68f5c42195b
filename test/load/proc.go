package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// sysconf(_SC_CLK_TCK), which Linux fixes at 100 on every architecture
// (reading it for real would need cgo). One tick is 10ms.
const clockTicks = 100

// proc is a server under load, started as its own process.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
	waitErr error
}

// startProc starts argv, on CPU 0 when pin is set, with its output in
// logPath. The process is the server itself (taskset execs it), so its PID
// is the one whose CPU time is read.
func startProc(name string, pin bool, logPath string, argv ...string) (*proc, error) {
	if pin {
		argv = append([]string{"taskset", "-c", "0"}, argv...)
	}
	out, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, out
	// Never outlive the harness, even when it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// exited returns an error naming how the process ended, or nil if it runs.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited: %v\n%s", p.name, p.waitErr, p.logTail())
	default:
		return nil
	}
}

// stop sends SIGTERM and waits up to 10s, then kills.
func (p *proc) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *proc) logTail() string {
	b, _ := os.ReadFile(p.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// cpuTicks is the process's utime+stime so far, in clock ticks.
func (p *proc) cpuTicks() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	return parseStatTicks(b)
}

// cpuReading is CPU time in ticks, as /proc has it at one moment.
type cpuReading struct {
	server int64 // the server's utime+stime
	self   int64 // this process's (the load generator's)
	busy   int64 // the machine's: user, nice, system, irq and softirq of all CPUs
}

func readCPU(server *proc) (cpuReading, error) {
	var r cpuReading
	var err1, err2, err3 error
	r.server, err1 = server.cpuTicks()
	if b, err := os.ReadFile("/proc/self/stat"); err != nil {
		err2 = err
	} else {
		r.self, err2 = parseStatTicks(b)
	}
	if b, err := os.ReadFile("/proc/stat"); err != nil {
		err3 = err
	} else {
		r.busy, err3 = parseBusyTicks(b)
	}
	return r, errors.Join(err1, err2, err3)
}

// parseBusyTicks sums the busy columns of /proc/stat's "cpu" line: user,
// nice, system, irq and softirq (not idle, iowait or steal; guest time is
// already in user).
func parseBusyTicks(stat []byte) (int64, error) {
	line, _, _ := bytes.Cut(stat, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 8 || f[0] != "cpu" {
		return 0, errors.New("malformed /proc/stat")
	}
	var sum int64
	for _, i := range []int{1, 2, 3, 6, 7} {
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		sum += v
	}
	return sum, nil
}

// parseStatTicks reads fields 14 (utime) and 15 (stime) of /proc/PID/stat.
// The command name (field 2) may hold spaces, so fields count from its ")".
func parseStatTicks(stat []byte) (int64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3, state
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat: %w", err)
	}
	return utime + stime, nil
}

// maxRSS is the process's peak resident set (VmHWM), in bytes.
func (p *proc) maxRSS() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// pinSelf binds every thread of this process to the CPUs of want. Threads
// inherit the affinity of the thread that creates them, so once no unbound
// thread is left, none appears later.
func pinSelf(want unix.CPUSet) error {
	for range 20 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		changed := false
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			var cur unix.CPUSet
			if unix.SchedGetaffinity(tid, &cur) == nil && cur == want {
				continue
			}
			if err := unix.SchedSetaffinity(tid, &want); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("pin thread %d: %w", tid, err)
			}
			changed = true
		}
		if !changed {
			return nil
		}
	}
	return errors.New("threads kept appearing while pinning the load generator")
}

// freeAddr is a loopback address with a port free right now.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
