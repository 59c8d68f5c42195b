package source

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRunBeside: a load beside the requests runs on a thread at idle
// priority with one processor more than Go's default, and leaves GOMAXPROCS
// as it found it; it declines where an extra processor could exceed what
// keygate may use.
func TestRunBeside(t *testing.T) {
	want := runtime.GOMAXPROCS(0)
	var policy uint32
	procs := 0
	ran := runBeside(func() {
		attr, err := unix.SchedGetAttr(0, 0)
		if err != nil {
			t.Error(err)
			return
		}
		policy, procs = attr.Policy, runtime.GOMAXPROCS(0)
	})
	if !ran {
		t.Fatal("runBeside declined with GOMAXPROCS at its default")
	}
	if policy != unix.SCHED_IDLE || procs != want+1 {
		t.Errorf("work ran with policy %d and GOMAXPROCS %d; want SCHED_IDLE (%d) and %d", policy, procs, unix.SCHED_IDLE, want+1)
	}
	if got := runtime.GOMAXPROCS(0); got != want {
		t.Errorf("GOMAXPROCS after the load: %d, want %d", got, want)
	}

	t.Run("declines", func(t *testing.T) {
		t.Setenv("GOMAXPROCS", "1")
		if runBeside(func() { t.Error("work ran although GOMAXPROCS was set by the user") }) {
			t.Error("runBeside ran with the GOMAXPROCS variable set")
		}
		if runtime.NumCPU() < 2 {
			return
		}
		// What Go chooses under a CPU quota below the CPUs it may run on.
		runtime.GOMAXPROCS(runtime.NumCPU() - 1)
		defer runtime.SetDefaultGOMAXPROCS()
		if runBeside(func() { t.Error("work ran with GOMAXPROCS below the CPUs") }) {
			t.Error("runBeside ran with GOMAXPROCS below the CPUs keygate may use")
		}
	})
}
