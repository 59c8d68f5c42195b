package harness

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

// Result is a keygate command run to completion by Run.
type Result struct {
	Code           int     // exit status; -1 if a signal ended it
	Out            *Output // stdout and stderr interleaved, scanned for secrets
	Stdout, Stderr *Output // each on its own
	Took           time.Duration
}

// Run runs keygate with args to completion in the hermetic environment:
// a CLI command (`policy validate DIR`), or a `serve` that must refuse to
// start. Its output is scanned for registered secrets like a server's. The
// test fails if keygate cannot be run or is still running after timeout (it
// is killed then).
func Run(t testing.TB, timeout time.Duration, args ...string) Result {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatal(err)
	}
	r := Result{Stdout: &Output{name: t.Name() + " stdout"}, Stderr: &Output{name: t.Name() + " stderr"}}
	cmd := exec.Command(bin, args...)
	cmd.Env = hermeticEnv()
	cmd.Stdout, cmd.Stderr = r.Stdout, r.Stderr
	start := time.Now()
	p, err := StartProcess(t.Name(), cmd)
	if err != nil {
		t.Fatal(err)
	}
	r.Out = p.Out
	registerOutput(p.Out)
	if err := p.WaitExit(timeout); err != nil {
		_ = p.Stop(0)
		t.Fatalf("keygate %s: %v", strings.Join(args, " "), err)
	}
	r.Took, r.Code = time.Since(start), p.ExitCode()
	return r
}
