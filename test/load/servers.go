package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/test/internal/harness"
)

// target is a server the rounds drive.
type target struct {
	name  string
	proc  *harness.Process
	kg    *harness.Keygate // nil for the floor
	addr  string           // gRPC, or HTTP in -mode http
	pprof string           // base URL of /debug/pprof/profile, when profiling
	drive func(load) (*sample, error)
}

// pinned runs argv on CPU 0 when pin is set. taskset execs it, so the PID
// is the server's own, whose CPU time is read.
func pinned(pin bool, argv ...string) []string {
	if pin {
		return append([]string{"taskset", "-c", "0"}, argv...)
	}
	return argv
}

// startFloor re-executes this program as the floor server: role is
// floorFlag (gRPC) or floorHTTPFlag.
func startFloor(role string, pin, pprof bool) (*target, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	t := &target{name: floorName}
	if t.addr, err = harness.FreeAddr(); err != nil {
		return nil, err
	}
	argv := []string{exe, role, t.addr}
	if pprof {
		addr, err := harness.FreeAddr()
		if err != nil {
			return nil, err
		}
		argv, t.pprof = append(argv, addr), "http://"+addr
	}
	argv = pinned(pin, argv...)
	if t.proc, err = harness.StartProcess(floorName, exec.Command(argv[0], argv[1:]...)); err != nil {
		return nil, err
	}
	return t, nil
}

// startKeygate serves policyPath with metrics on (the default) and the
// decision log at "denied", and waits until it is ready. bin empty is the
// harness's build of ./cmd/keygate. With httpPort the target is keygate's
// ext_authz HTTP port, reading the original request as Envoy sends it.
// extra are further serve flags.
func startKeygate(bin, policyPath string, httpPort, pin, pprof bool, extra ...string) (*target, error) {
	o := harness.Options{
		Binary:       bin,
		HTTP:         httpPort,
		Args:         append([]string{"--policy", policyPath, "--decision-log", "denied"}, extra...),
		Wrap:         pinned(pin),
		ReadyTimeout: 60 * time.Second,
		StopTimeout:  10 * time.Second,
	}
	if pprof {
		o.Args = append(o.Args, "--admin-pprof")
	}
	if httpPort {
		o.Args = append(o.Args, "--http-original-request", "envoy")
	}
	kg, err := harness.Start(o)
	if err != nil {
		return nil, err
	}
	t := &target{name: keygateSrv, proc: kg.Process, kg: kg, addr: kg.GRPCAddr}
	if httpPort {
		t.addr = kg.HTTPAddr
	}
	if pprof {
		t.pprof = "http://" + kg.AdminAddr
	}
	return t, nil
}

// buildKeygate builds ./cmd/keygate (once per process) unless bin names a
// prebuilt one, while both CPUs are free to.
func buildKeygate(bin string, progress io.Writer) error {
	if bin != "" {
		return nil
	}
	fmt.Fprintln(progress, "building keygate")
	_, err := harness.Binary()
	return err
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
func settle(p *harness.Process) error {
	prev, err := cpuTicks(p)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if err != nil {
			return errors.Join(err, p.ExitError())
		}
		time.Sleep(300 * time.Millisecond)
		var now int64
		if now, err = cpuTicks(p); err == nil && now-prev <= 2 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s stays busy when idle", p.Name)
		}
		prev = now
	}
}
