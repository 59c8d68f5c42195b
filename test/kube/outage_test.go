package kube

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// TestAPIServerOutage kills kube-apiserver (etcd keeps the data) and shows:
// a running keygate serves on through the outage and its watch recovers
// afterwards; a keygate started during the outage waits, not ready, and comes
// up once the API server is back; one that cannot reach it within
// --kube-sync-timeout exits with a one-line error saying so.
func TestAPIServerOutage(t *testing.T) {
	c := needCluster(t)
	ns := c.namespace(t, "outage")
	alice, bob := newKey(t), newKey(t)
	c.putConfigMap(t, policyConfigMap(ns, "keygate-policy", map[string]string{"policy.yaml": basePolicy(alice)}))
	running := startKeygate(t, c.AdminKubeconfig, "--kube-namespace="+ns, selectorArg)
	running.waitReady(30 * time.Second)

	c.KillAPIServer()
	t.Cleanup(func() {
		if err := c.EnsureAPIServer(); err != nil {
			t.Errorf("restart kube-apiserver: %v", err)
		}
	})
	// client-go retries a watch it cannot re-establish (connection refused)
	// with backoff and no error to report; keygate serves on meanwhile.
	time.Sleep(time.Second)
	if got := running.check(alice.raw); got != codes.OK || !running.Ready() {
		t.Fatalf("during the outage the running keygate answers %v (ready %v), want OK and ready", got, running.Ready())
	}

	// Started while the API server is away, with a short sync timeout: a
	// clear one-line error, and exit status 1.
	gaveUp := startKeygate(t, c.AdminKubeconfig, "--kube-namespace="+ns, selectorArg, "--kube-sync-timeout=2s")
	out := gaveUp.waitExit(20 * time.Second)
	last := lastLine(out)
	want := "keygate: load policy from kubernetes: no list of configmaps in " + ns +
		" with labels keygate.dev/policy=true from the Kubernetes API server at " + c.Server +
		" within 2s: cannot reach the Kubernetes API server at " + c.Server + ": dial tcp 127.0.0.1:"
	if !strings.HasPrefix(last, want) || !strings.HasSuffix(last, "connect: connection refused") {
		t.Errorf("exit message:\n  %s\nwant it to start\n  %s\nand end \"connect: connection refused\"", last, want)
	}
	if code := gaveUp.ExitCode(); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}

	// Restarted while the API server is away, with the default timeout: it
	// waits, not listening (so not ready), and comes up when it is back.
	restarted := startKeygate(t, c.AdminKubeconfig, "--kube-namespace="+ns, selectorArg)
	time.Sleep(2 * time.Second)
	if restarted.Ready() {
		t.Fatal("a keygate with no policy yet reports ready")
	}
	down := time.Now()
	if err := c.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	back := time.Now()
	took := restarted.waitReady(40 * time.Second)
	record(t, "outage_restarted_ready", "%v after kube-apiserver was ready again (it took %v to start)",
		took.Round(time.Millisecond), back.Sub(down).Round(time.Millisecond))
	if got := restarted.check(alice.raw); got != codes.OK {
		t.Errorf("restarted keygate: alice %v, want OK", got)
	}

	// A change after the outage reaches both: the running keygate's watch
	// recovered.
	c.putConfigMap(t, policyConfigMap(ns, "keygate-policy", map[string]string{"policy.yaml": basePolicy(bob)}))
	start := time.Now()
	running.waitCheck(alice.raw, codes.Unauthenticated, 60*time.Second)
	record(t, "outage_watch_recovery", "a change made once kube-apiserver was back reached the keygate that ran through the outage in %v",
		time.Since(start).Round(time.Millisecond))
	restarted.waitCheck(alice.raw, codes.Unauthenticated, 5*time.Second)
	for _, kg := range []*keygate{running, restarted} {
		if got := kg.check(bob.raw); got != codes.OK {
			t.Errorf("after the outage: bob %v, want OK", got)
		}
	}
}

// lastLine is the last non-empty line of s.
func lastLine(s string) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return ls[len(ls)-1]
}
