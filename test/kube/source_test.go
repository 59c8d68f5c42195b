package kube

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/test/internal/harness"
)

const selectorArg = "--kube-selector=" + policyLabel + "=true"

// revocationBudget is the bound: a key removed or disabled in a
// ConfigMap is denied within 2 s on a warm cache.
const revocationBudget = 2 * time.Second

// TestConfigMapLifecycle follows one policy through the API: one ConfigMap,
// a second by label, an update, revocations (measured), a conflicting
// fragment, and every ConfigMap deleted.
func TestConfigMapLifecycle(t *testing.T) {
	c := needCluster(t)
	ns := c.namespace(t, "lifecycle")
	alice, bob, carol := newKey(t), newKey(t), newKey(t)

	// One ConfigMap.
	c.putConfigMap(t, policyConfigMap(ns, "keygate-base", map[string]string{"policy.yaml": basePolicy(alice)}))
	kg := startKeygate(t, c.AdminKubeconfig, "--kube-namespace="+ns, selectorArg)
	kg.waitReady(30 * time.Second)
	if got := kg.check(alice.raw); got != codes.OK {
		t.Fatalf("alice: %v, want OK", got)
	}
	if got := kg.check(bob.raw); got != codes.Unauthenticated {
		t.Fatalf("bob before his ConfigMap: %v, want Unauthenticated", got)
	}

	// A second ConfigMap, chosen by its label; an unlabelled one is not read.
	unlabelled := policyConfigMap(ns, "not-policy", map[string]string{"keys.yaml": keysOnly(carol)})
	unlabelled.Labels = nil
	c.putConfigMap(t, unlabelled)
	c.putConfigMap(t, policyConfigMap(ns, "keygate-extra", map[string]string{
		"keys.yaml": keysOnly(bob), "revoke-me.yaml": keysOnly(carol),
	}))
	kg.waitCheck(bob.raw, codes.OK, 10*time.Second)
	kg.waitCheck(carol.raw, codes.OK, 2*time.Second)
	kg.waitLog(5*time.Second, `"policy loaded"`, `"configmaps":["keygate-base","keygate-extra"]`, `"fragments":3`)

	// Revocations, measured from the API call returning to the first denied
	// Check, with the key's resolution cached (warm). Each way a key goes:
	// its fragment (data key) deleted, its entry removed, disabled: true.
	var samples []time.Duration
	revoke := func(how string, data map[string]string) {
		t.Helper()
		for range 3 {
			if got := kg.check(carol.raw); got != codes.OK {
				t.Fatalf("before revocation (%s): carol %v, want OK", how, got)
			}
		}
		c.putConfigMap(t, policyConfigMap(ns, "keygate-extra", data))
		start := time.Now()
		for kg.check(carol.raw) == codes.OK {
			if time.Since(start) > 10*time.Second {
				t.Fatalf("revocation (%s): carol still allowed after 10s", how)
			}
		}
		took := time.Since(start)
		samples = append(samples, took)
		t.Logf("revocation by %s: denied %v after the ConfigMap update returned", how, took.Round(time.Millisecond))
		if got := kg.check(bob.raw); got != codes.OK {
			t.Fatalf("after revoking carol (%s): bob %v, want OK", how, got)
		}
	}
	restore := func() {
		t.Helper()
		c.putConfigMap(t, policyConfigMap(ns, "keygate-extra", map[string]string{"keys.yaml": keysOnly(bob, carol)}))
		kg.waitCheck(carol.raw, codes.OK, 10*time.Second)
	}
	revoke("deleting its data key", map[string]string{"keys.yaml": keysOnly(bob)})
	for range 2 {
		restore()
		revoke("removing its entry", map[string]string{"keys.yaml": keysOnly(bob)})
		restore()
		revoke("disabled: true", map[string]string{"keys.yaml": keysOnly(bob) + carol.entry(true)})
	}
	worst := slices.Max(samples)
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	var ms []string
	for _, s := range samples {
		ms = append(ms, fmt.Sprint(s.Round(time.Millisecond)))
	}
	record(t, "revocation_latency", "median %v, max %v over %d revocations [%s] "+
		"(ConfigMap update returned -> first denied gRPC Check, warm cache; budget %v)",
		sorted[len(sorted)/2].Round(time.Millisecond), worst.Round(time.Millisecond), len(samples), strings.Join(ms, " "), revocationBudget)
	if worst >= revocationBudget {
		t.Errorf("revocation took %v at worst, want < %v", worst, revocationBudget)
	}

	// A conflicting fragment (alice's key id again, in another ConfigMap) is
	// refused; the policy in force keeps serving.
	gen := readyz(t, kg).Generation
	c.putConfigMap(t, policyConfigMap(ns, "keygate-conflict", map[string]string{"more-keys.yaml": keysOnly(alice)}))
	line := kg.waitLog(10*time.Second, `"policy reload refused; keeping the current policy"`)
	for _, want := range []string{`"level":"error"`, ns + "/keygate-base/policy.yaml:", ns + "/keygate-conflict/more-keys.yaml:", alice.id} {
		if !strings.Contains(line, want) {
			t.Errorf("refusal log line does not contain %q:\n%s", want, line)
		}
	}
	st := readyz(t, kg)
	if st.Generation != gen || st.LastReloadOK || !strings.Contains(st.LastError, "duplicate") {
		t.Errorf("/readyz?verbose after the conflict: %+v, want generation %d and the duplicate error", st, gen)
	}
	for _, k := range []key{alice, bob} {
		if got := kg.check(k.raw); got != codes.OK {
			t.Errorf("during the conflict %s: %v, want OK (the last good policy)", k.id, got)
		}
	}
	c.deleteConfigMap(t, ns, "keygate-conflict")
	waitFor(t, "a good reload after the conflict is gone", 10*time.Second, func() bool {
		st := readyz(t, kg)
		return st.Generation > gen && st.LastReloadOK
	})

	// Every ConfigMap deleted: refused, the last good policy serves on and
	// keygate stays ready.
	for _, name := range []string{"keygate-base", "keygate-extra"} {
		c.deleteConfigMap(t, ns, name)
	}
	kg.waitLog(10*time.Second, `"policy reload refused; keeping the current policy"`,
		"no policy ConfigMaps match label selector keygate.dev/policy=true in namespace "+ns)
	if !kg.Ready() {
		t.Error("not ready after every ConfigMap was deleted")
	}
	for _, k := range []key{alice, bob} {
		if got := kg.check(k.raw); got != codes.OK {
			t.Errorf("with no ConfigMaps left %s: %v, want OK (the last good policy)", k.id, got)
		}
	}

	// And back.
	c.putConfigMap(t, policyConfigMap(ns, "keygate-base", map[string]string{"policy.yaml": basePolicy(carol)}))
	kg.waitCheck(carol.raw, codes.OK, 10*time.Second)
	kg.waitCheck(alice.raw, codes.Unauthenticated, 2*time.Second)
}

// TestConfigMapByName serves from one ConfigMap named by --kube-configmap;
// others in the namespace, labelled or not, are not read.
func TestConfigMapByName(t *testing.T) {
	c := needCluster(t)
	ns := c.namespace(t, "byname")
	alice, bob := newKey(t), newKey(t)
	c.putConfigMap(t, policyConfigMap(ns, "chosen", map[string]string{"policy.yaml": basePolicy(alice)}))
	c.putConfigMap(t, policyConfigMap(ns, "other", map[string]string{"policy.yaml": basePolicy(alice)}))
	kg := startKeygate(t, c.AdminKubeconfig, "--kube-namespace="+ns, "--kube-configmap=chosen")
	kg.waitReady(30 * time.Second)
	kg.waitLog(time.Second, `"source":"configmap `+ns+`/chosen"`)
	c.putConfigMap(t, policyConfigMap(ns, "chosen", map[string]string{"policy.yaml": basePolicy(alice, bob)}))
	kg.waitCheck(bob.raw, codes.OK, 5*time.Second)
	if got := kg.check(alice.raw); got != codes.OK {
		t.Errorf("alice: %v, want OK", got)
	}
}

// readyz is /readyz?verbose.
func readyz(t *testing.T, kg *keygate) harness.ReadyStatus {
	t.Helper()
	_, st, err := kg.Status()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// waitFor polls cond every 20ms until it holds or timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
