package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/test/internal/harness"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// sysconf(_SC_CLK_TCK), which Linux fixes at 100 on every architecture
// (reading it for real would need cgo). One tick is 10ms.
const clockTicks = 100

// cpuTicks is the process's utime+stime so far, in clock ticks.
func cpuTicks(p *harness.Process) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid()))
	if err != nil {
		return 0, err
	}
	return parseStatTicks(b)
}

// cpuReading is CPU time in ticks, as /proc has it at one moment.
type cpuReading struct {
	server int64 // the server's utime+stime
	self   int64 // this process's and its waited-for children's (the load generator's, wrk's)
	busy   int64 // the machine's: user, nice, system, irq and softirq of all CPUs
}

func readCPU(server *harness.Process) (cpuReading, error) {
	var r cpuReading
	var err1, err2, err3 error
	r.server, err1 = cpuTicks(server)
	if b, err := os.ReadFile("/proc/self/stat"); err != nil {
		err2 = err
	} else {
		r.self, err2 = parseSelfTicks(b)
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

// parseSelfTicks is utime+stime plus cutime+cstime (fields 16 and 17): the
// CPU time of this process and of the children it has waited for, such as
// a finished wrk run.
func parseSelfTicks(stat []byte) (int64, error) {
	own, err := parseStatTicks(stat)
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	if len(f) < 15 {
		return 0, errors.New("short /proc stat")
	}
	cutime, err1 := strconv.ParseInt(f[13], 10, 64)
	cstime, err2 := strconv.ParseInt(f[14], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc stat: %w", err)
	}
	return own + cutime + cstime, nil
}

// maxRSS is the process's peak resident set (VmHWM), in bytes.
func maxRSS(p *harness.Process) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid()))
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
