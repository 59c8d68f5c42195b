package source

import (
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// besideNice is the load thread's nice value: a CFS weight of 110 against
// the request threads' 1024.
const besideNice = 10

var (
	besideMu    sync.Mutex    // one load at a time adds its processor
	besideLoads atomic.Uint64 // loads run beside the requests, for tests
)

// runBeside runs work on an OS thread of its own at a low priority (nice
// besideNice), with one more processor (GOMAXPROCS) than Go runs by default
// for the time it takes, and reports whether it could; if not, work has not
// run. The kernel then gives the load mostly the CPU time the threads
// serving requests leave, and takes it back when a request arrives: with
// one CPU, a reload no longer holds requests back for the slices of work the
// pacer allows it. A load still gets about a tenth of a CPU the requests
// keep busy, so a reload, and the revocation it may carry, is never starved:
// on a CPU the requests keep fully busy it takes about ten times its CPU
// time (SCHED_IDLE, a weight of 3, would be some three hundred times: a
// minute and more for a large policy).
//
// It declines when adding a processor could let keygate use more CPU than it
// may: when GOMAXPROCS is below the CPUs keygate may run on, which is how Go
// sizes it under a CPU quota (a Kubernetes CPU limit), or when the user chose
// it (the GOMAXPROCS variable). Loads then keep the pacer.
func runBeside(work func()) bool {
	if os.Getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) != runtime.NumCPU() {
		return false
	}
	besideMu.Lock()
	defer besideMu.Unlock()
	ran := make(chan bool)
	go func() {
		// Never unlocked: the thread ends with this goroutine, and so does
		// its priority, which an unprivileged thread may not raise again.
		runtime.LockOSThread()
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
		if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), besideNice); err != nil {
			ran <- false
			return
		}
		work()
		besideLoads.Add(1)
		ran <- true
	}()
	ok := <-ran
	// Back to Go's own choice, which follows later changes to the CPU limit
	// again.
	runtime.SetDefaultGOMAXPROCS()
	return ok
}
