package harness

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Memory is how much memory a process holds, in bytes, as Linux reports it
// in /proc/PID/status.
type Memory struct {
	RSS  int64 // VmRSS: resident now
	Peak int64 // VmHWM: the most it has held resident
}

// ReadMemory reads pid's Memory; an error where there is no /proc.
func ReadMemory(pid int) (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, err
	}
	var m Memory
	found := false
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "VmRSS:":
			m.RSS, found = kb<<10, true
		case "VmHWM:":
			m.Peak = kb << 10
		}
	}
	if !found {
		return Memory{}, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return m, nil
}

// Memory is ReadMemory of the process.
func (p *Process) Memory() (Memory, error) { return ReadMemory(p.Pid()) }
