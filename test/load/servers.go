package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// target is a server the rounds drive.
type target struct {
	name  string
	proc  *proc
	addr  string // gRPC
	admin string // keygate's admin base URL
	pprof string // base URL of /debug/pprof/profile, when profiling
}

// startFloor re-executes this program as the floor server.
func startFloor(dir string, pin, pprof bool) (*target, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	t := &target{name: floorName}
	if t.addr, err = freeAddr(); err != nil {
		return nil, err
	}
	argv := []string{exe, floorFlag, t.addr}
	if pprof {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		argv, t.pprof = append(argv, addr), "http://"+addr
	}
	if t.proc, err = startProc(floorName, pin, filepath.Join(dir, "floor.log"), argv...); err != nil {
		return nil, err
	}
	return t, nil
}

// startKeygate serves policyPath with metrics on (the default) and the
// decision log at "denied", and waits until it is ready.
func startKeygate(bin, dir, policyPath string, pin, pprof bool) (*target, error) {
	t := &target{name: keygateSrv}
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	adminAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	t.addr, t.admin = grpcAddr, "http://"+adminAddr
	argv := []string{bin, "serve", "--policy", policyPath, "--decision-log", "denied",
		"--grpc-addr", grpcAddr, "--http-addr", "", "--admin-addr", adminAddr}
	if pprof {
		argv, t.pprof = append(argv, "--admin-pprof"), t.admin
	}
	if t.proc, err = startProc(keygateSrv, pin, filepath.Join(dir, "keygate.log"), argv...); err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if err := t.proc.exited(); err != nil {
			return nil, err
		}
		if resp, err := http.Get(t.admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return t, nil
			}
		}
		if time.Now().After(deadline) {
			t.proc.stop()
			return nil, fmt.Errorf("keygate not ready within 60s\n%s", t.proc.logTail())
		}
	}
}

// buildKeygate builds ./cmd/keygate of the module this harness is in.
func buildKeygate(dir string) (string, error) {
	root, err := moduleRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "keygate")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/keygate")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/keygate: %w\n%s", err, out)
	}
	return bin, nil
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/keygate/keygate\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run the harness inside the keygate module (go run ./test/load)")
		}
		dir = parent
	}
}

// pinGenerator moves this process to CPU 1, leaving CPU 0 to the server,
// when taskset (which pins the servers) and two CPUs are there. It returns
// nil, nil when pinning is not possible, else a function that undoes it.
func pinGenerator() (restore func(), err error) {
	if _, err := exec.LookPath("taskset"); err != nil {
		return nil, nil
	}
	var orig unix.CPUSet
	if err := unix.SchedGetaffinity(0, &orig); err != nil || !orig.IsSet(0) || !orig.IsSet(1) {
		return nil, nil
	}
	var one unix.CPUSet
	one.Set(1)
	if err := pinSelf(one); err != nil {
		return nil, err
	}
	procs := runtime.GOMAXPROCS(1)
	return func() {
		runtime.GOMAXPROCS(procs)
		_ = pinSelf(orig)
	}, nil
}

// settle waits until p is idle (at most 2 ticks of CPU over 300ms), so that
// a reload or garbage collection left over from the previous run does not
// land in the next one's window.
func settle(p *proc) error {
	prev, err := p.cpuTicks()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err != nil {
			return errors.Join(err, p.exited())
		}
		time.Sleep(300 * time.Millisecond)
		var now int64
		if now, err = p.cpuTicks(); err == nil && now-prev <= 2 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s stays busy when idle", p.name)
		}
		prev = now
	}
}

// reloadStatus is the part of keygate's /readyz?verbose the harness reads.
type reloadStatus struct {
	ReloadsOK     int    `json:"reloads_ok"`
	ReloadsFailed int    `json:"reloads_failed"`
	LastError     string `json:"last_error"`
}

func readReload(admin string) (reloadStatus, error) {
	var st reloadStatus
	resp, err := http.Get(admin + "/readyz?verbose")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
