package source

import (
	"runtime"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRunBeside: a load beside the requests runs on a thread at a low
// priority (nice 10) with one processor more than Go's default, and leaves GOMAXPROCS
// as it found it; it declines where an extra processor could exceed what
// keygate may use.
func TestRunBeside(t *testing.T) {
	want := runtime.GOMAXPROCS(0)
	var nice int32
	procs := 0
	ran := runBeside(func() {
		attr, err := unix.SchedGetAttr(0, 0)
		if err != nil {
			t.Error(err)
			return
		}
		nice, procs = attr.Nice, runtime.GOMAXPROCS(0)
	})
	if !ran {
		t.Fatal("runBeside declined with GOMAXPROCS at its default")
	}
	if nice != besideNice || procs != want+1 {
		t.Errorf("work ran at nice %d with GOMAXPROCS %d; want nice %d and GOMAXPROCS %d", nice, procs, besideNice, want+1)
	}
	if attr, err := unix.SchedGetAttr(0, 0); err == nil && attr.Nice != 0 {
		t.Errorf("the caller's thread is at nice %d after the load", attr.Nice)
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
