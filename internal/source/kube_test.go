package source

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// These tests drive the kubernetes source through client-go's fake
// clientset: the informer, lister and event handlers are client-go's own; the
// API server is not. test/kube runs the same source against a real one.

const (
	testNS    = "policy-ns"
	testLabel = "keygate.dev/policy"
)

// keysFragment is a fragment holding only API keys (of tenant acme, which
// policyText declares).
func keysFragment(ids ...string) string {
	var b strings.Builder
	b.WriteString("version: 1\napi_keys:\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "  - {id: %s, hash: \"sha256:%s\", tenant: acme, user: bot}\n", id, keyHash(id))
	}
	return b.String()
}

func configMap(name string, labelled bool, data map[string]string) *corev1.ConfigMap {
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, ResourceVersion: "1"},
		Data:       data,
	}
	if labelled {
		cm.Labels = map[string]string{testLabel: "true"}
	}
	return cm
}

// kubeEnv is a fake clientset with a source on it.
type kubeEnv struct {
	client       *fake.Clientset
	store        *Store
	src          *Kube
	logs         *observer.ObservedLogs
	watchStarted chan struct{}
	rv           int
}

// newKubeEnv makes a fake clientset holding objs and a source for cfg
// (Client and Namespace filled in).
func newKubeEnv(t *testing.T, cfg KubeConfig, objs ...runtime.Object) *kubeEnv {
	t.Helper()
	e := &kubeEnv{client: fake.NewClientset(objs...), store: NewStore(), watchStarted: make(chan struct{}), rv: 100}
	// The fake's watch does not resume from a resource version: an object
	// created between the informer's list and its watch would be lost. Tests
	// change objects only once the watch is in place.
	var once bool
	e.client.PrependWatchReactor("configmaps", func(a k8stesting.Action) (bool, watch.Interface, error) {
		w, err := e.client.Tracker().Watch(a.GetResource(), a.GetNamespace())
		if err == nil && !once {
			once = true
			close(e.watchStarted)
		}
		return true, w, err
	})
	cfg.Client, cfg.Namespace = e.client, testNS
	if cfg.SyncTimeout == 0 {
		cfg.SyncTimeout = 3 * time.Second
	}
	core, logs := observer.New(zapcore.DebugLevel)
	src, err := NewKube(cfg, e.store, zap.New(core))
	if err != nil {
		t.Fatal(err)
	}
	e.src, e.logs = src, logs
	t.Cleanup(src.shutdown)
	return e
}

func bySelector() KubeConfig {
	return KubeConfig{Selector: testLabel + "=true", Debounce: 10 * time.Millisecond}
}

// loadAndRun loads the first snapshot and runs the source until the test
// ends; it returns once the informer's watch is in place.
func (e *kubeEnv) loadAndRun(t *testing.T) {
	t.Helper()
	if err := e.src.Load(context.Background()); err != nil {
		t.Fatalf("Load: %v", err)
	}
	runUntilCleanup(t, e.src.Run)
	select {
	case <-e.watchStarted:
	case <-time.After(3 * time.Second):
		t.Fatal("the informer's watch did not start")
	}
}

func (e *kubeEnv) cms() interface {
	Create(context.Context, *corev1.ConfigMap, metav1.CreateOptions) (*corev1.ConfigMap, error)
	Update(context.Context, *corev1.ConfigMap, metav1.UpdateOptions) (*corev1.ConfigMap, error)
	Delete(context.Context, string, metav1.DeleteOptions) error
} {
	return e.client.CoreV1().ConfigMaps(testNS)
}

// put creates or updates cm (the fake keeps no resource versions: bump it).
func (e *kubeEnv) put(t *testing.T, cm *corev1.ConfigMap) {
	t.Helper()
	e.rv++
	cm.ResourceVersion = fmt.Sprint(e.rv)
	_, err := e.cms().Update(context.Background(), cm, metav1.UpdateOptions{})
	if apierrors.IsNotFound(err) {
		_, err = e.cms().Create(context.Background(), cm, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (e *kubeEnv) del(t *testing.T, name string) {
	t.Helper()
	if err := e.cms().Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitRefused waits for a refused reload whose error contains want.
func (e *kubeEnv) waitRefused(t *testing.T, failedBefore uint64, want string) Status {
	t.Helper()
	waitFor(t, "a refused reload", func() bool { return e.store.Status().ReloadsFailed > failedBefore })
	st := e.store.Status()
	if st.LastReloadOK || !strings.Contains(st.LastError, want) {
		t.Fatalf("status after refusal: ok=%v error %q, want it to contain %q", st.LastReloadOK, st.LastError, want)
	}
	return st
}

func TestKubeSelectorMergesFragments(t *testing.T) {
	e := newKubeEnv(t, bySelector(),
		configMap("base", true, map[string]string{"policy.yaml": policyText("kg_a"), "README": "not policy"}),
		configMap("other", false, map[string]string{"policy.yaml": policyText("kg_x")}),
	)
	e.loadAndRun(t)
	snap := e.store.Current()
	if !hasKey(snap, "kg_a") || hasKey(snap, "kg_x") {
		t.Fatalf("first snapshot: kg_a %v (want true), kg_x %v (want false)", hasKey(snap, "kg_a"), hasKey(snap, "kg_x"))
	}
	if want := "configmaps in policy-ns with labels keygate.dev/policy=true"; snap.Source != want {
		t.Errorf("Source = %q, want %q", snap.Source, want)
	}

	// A second ConfigMap by label, with two fragments.
	e.put(t, configMap("keys", true, map[string]string{
		"b.yml": keysFragment("kg_b"), "c.json": `{"version": 1, "api_keys": [{"id": "kg_c", "hash": "sha256:` + keyHash("kg_c") + `", "tenant": "acme", "user": "bot"}]}`,
	}))
	snap = waitNewGeneration(t, e.store, snap.Generation)
	for _, id := range []string{"kg_a", "kg_b", "kg_c"} {
		if !hasKey(snap, id) {
			t.Errorf("after adding ConfigMap keys: %s missing", id)
		}
	}

	// Update a key: kg_b is revoked, kg_d added.
	e.put(t, configMap("keys", true, map[string]string{"b.yml": keysFragment("kg_d"), "c.json": `{"version": 1}`}))
	snap = waitNewGeneration(t, e.store, snap.Generation)
	if hasKey(snap, "kg_b") || hasKey(snap, "kg_c") || !hasKey(snap, "kg_d") {
		t.Errorf("after update: kg_b %v kg_c %v kg_d %v, want false false true",
			hasKey(snap, "kg_b"), hasKey(snap, "kg_c"), hasKey(snap, "kg_d"))
	}

	// Delete a key from the ConfigMap.
	e.put(t, configMap("keys", true, map[string]string{"b.yml": keysFragment("kg_d")}))
	snap = waitNewGeneration(t, e.store, snap.Generation)
	if !hasKey(snap, "kg_d") || !hasKey(snap, "kg_a") {
		t.Error("after deleting c.json: kg_a and kg_d should remain")
	}

	// Losing the label takes the ConfigMap out of the policy.
	e.put(t, configMap("keys", false, map[string]string{"b.yml": keysFragment("kg_d")}))
	snap = waitNewGeneration(t, e.store, snap.Generation)
	if hasKey(snap, "kg_d") {
		t.Error("kg_d still valid after its ConfigMap lost the label")
	}
	if n := countMsg(e.logs, "policy reload refused; keeping the current policy"); n != 0 {
		t.Errorf("%d refusals logged, want 0", n)
	}
}

func TestKubeConflictRefusedNamingBothPlaces(t *testing.T) {
	e := newKubeEnv(t, bySelector(), configMap("z-base", true, map[string]string{"policy.yaml": policyText("kg_a")}))
	e.loadAndRun(t)
	good := e.store.Current()

	// a-extra sorts first, so z-base's key is the duplicate, whatever the
	// order the ConfigMaps were made in.
	failed := e.store.Status().ReloadsFailed
	e.put(t, configMap("a-extra", true, map[string]string{"keys.yaml": keysFragment("kg_a")}))
	st := e.waitRefused(t, failed, `duplicate`)
	for _, want := range []string{"policy-ns/z-base/policy.yaml:", "policy-ns/a-extra/keys.yaml:", `"kg_a"`} {
		if !strings.Contains(st.LastError, want) {
			t.Errorf("error %q does not contain %q", st.LastError, want)
		}
	}
	if !strings.HasPrefix(st.LastError, "policy-ns/z-base/policy.yaml:") {
		t.Errorf("error %q should be located at z-base (the later fragment)", st.LastError)
	}
	if cur := e.store.Current(); cur != good {
		t.Fatalf("snapshot changed after a refused reload: generation %d, want %d", cur.Generation, good.Generation)
	}
	entries := e.logs.FilterMessage("policy reload refused; keeping the current policy").All()
	if len(entries) != 1 || entries[0].Level != zapcore.ErrorLevel {
		t.Fatalf("want one Error entry for the refusal, got %d", len(entries))
	}
	if got := entries[0].ContextMap()["error"]; got != st.LastError {
		t.Errorf("logged error %q, want %q", got, st.LastError)
	}

	// A broken fragment is refused with its ConfigMap, key and line.
	failed = e.store.Status().ReloadsFailed
	e.put(t, configMap("a-extra", true, map[string]string{"keys.yaml": brokenText}))
	e.waitRefused(t, failed, "policy-ns/a-extra/keys.yaml:3: ")

	// Fixing it loads.
	e.put(t, configMap("a-extra", true, map[string]string{"keys.yaml": keysFragment("kg_e")}))
	snap := waitNewGeneration(t, e.store, good.Generation)
	if !hasKey(snap, "kg_a") || !hasKey(snap, "kg_e") {
		t.Error("after the fix: kg_a and kg_e should be valid")
	}
	if !e.store.Status().LastReloadOK {
		t.Error("status still shows the refusal")
	}
}

func TestKubeAllDeletedKeepsServing(t *testing.T) {
	e := newKubeEnv(t, bySelector(),
		configMap("a", true, map[string]string{"policy.yaml": policyText("kg_a")}),
		configMap("b", true, map[string]string{"keys.yaml": keysFragment("kg_b")}),
	)
	e.loadAndRun(t)
	good := e.store.Current()
	failed := e.store.Status().ReloadsFailed
	e.del(t, "b")
	e.del(t, "a")
	e.waitRefused(t, failed, "no policy ConfigMaps match label selector keygate.dev/policy=true in namespace policy-ns")
	if e.store.Current() != good || !hasKey(good, "kg_b") {
		t.Fatal("the last good snapshot should keep serving")
	}

	// The same content coming back is loaded again, clearing the error.
	e.put(t, configMap("a", true, map[string]string{"policy.yaml": policyText("kg_a")}))
	snap := waitNewGeneration(t, e.store, good.Generation)
	if !hasKey(snap, "kg_a") || hasKey(snap, "kg_b") || !e.store.Status().LastReloadOK {
		t.Error("after recreating a: want kg_a only and a clean status")
	}

	// A ConfigMap with no policy keys is refused too.
	failed = e.store.Status().ReloadsFailed
	e.put(t, configMap("a", true, map[string]string{"notes.txt": "x"}))
	e.waitRefused(t, failed, "no policy keys (*.yaml, *.yml, *.json) in configmaps in policy-ns with labels keygate.dev/policy=true: ConfigMaps a")
}

func TestKubeByName(t *testing.T) {
	cfg := KubeConfig{ConfigMap: "chosen", Debounce: 10 * time.Millisecond}
	e := newKubeEnv(t, cfg,
		configMap("chosen", false, map[string]string{"policy.yaml": policyText("kg_a")}),
		// Would conflict if it were read.
		configMap("another", true, map[string]string{"policy.yaml": policyText("kg_a")}),
	)
	e.loadAndRun(t)
	snap := e.store.Current()
	if !hasKey(snap, "kg_a") || snap.Source != "configmap policy-ns/chosen" {
		t.Fatalf("first snapshot: kg_a %v, source %q", hasKey(snap, "kg_a"), snap.Source)
	}
	e.put(t, configMap("chosen", false, map[string]string{"policy.yaml": policyText("kg_b")}))
	snap = waitNewGeneration(t, e.store, snap.Generation)
	if hasKey(snap, "kg_a") || !hasKey(snap, "kg_b") {
		t.Error("after update: want kg_b only")
	}
	failed := e.store.Status().ReloadsFailed
	e.del(t, "chosen")
	e.waitRefused(t, failed, "no policy ConfigMaps match: configmap policy-ns/chosen not found")
}

func TestKubeUnchangedContentIsSkipped(t *testing.T) {
	e := newKubeEnv(t, bySelector(), configMap("a", true, map[string]string{"policy.yaml": policyText("kg_a")}))
	e.loadAndRun(t)
	gen := e.store.Current().Generation

	// A change that leaves the data alone (an annotation), a Trigger and a
	// change that does load: only the last makes a snapshot.
	cm := configMap("a", true, map[string]string{"policy.yaml": policyText("kg_a")})
	cm.Annotations = map[string]string{"note": "touched"}
	e.put(t, cm)
	e.src.Trigger()
	e.put(t, configMap("a", true, map[string]string{"policy.yaml": policyText("kg_a", "kg_b")}))
	snap := waitNewGeneration(t, e.store, gen)
	time.Sleep(100 * time.Millisecond)
	if got := e.store.Current().Generation; got != snap.Generation {
		t.Errorf("generation moved on to %d after the change; unchanged content should be skipped", got)
	}
	if n := countMsg(e.logs, "policy loaded"); n != 2 {
		t.Errorf("%d policy loads logged, want 2 (start and the one change)", n)
	}
	if n := countMsg(e.logs, "policy unchanged"); n == 0 {
		t.Error("no skipped reload logged")
	}
}

func TestKubeLoadFailures(t *testing.T) {
	t.Run("no ConfigMaps", func(t *testing.T) {
		e := newKubeEnv(t, bySelector(), configMap("x", false, map[string]string{"policy.yaml": policyText("kg_a")}))
		err := e.src.Load(context.Background())
		if err == nil || !strings.Contains(err.Error(), "no policy ConfigMaps match label selector keygate.dev/policy=true in namespace policy-ns") {
			t.Fatalf("Load: %v", err)
		}
		if e.store.Current() != nil {
			t.Error("a snapshot was published")
		}
	})
	t.Run("broken", func(t *testing.T) {
		e := newKubeEnv(t, bySelector(), configMap("x", true, map[string]string{"policy.yaml": brokenText}))
		err := e.src.Load(context.Background())
		if err == nil || !strings.HasPrefix(err.Error(), "policy-ns/x/policy.yaml:3: ") {
			t.Fatalf("Load: %v", err)
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		e := newKubeEnv(t, KubeConfig{ConfigMap: "p", SyncTimeout: 10 * time.Second})
		e.client.PrependReactor("list", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "configmaps"}, "",
				errors.New(`User "system:serviceaccount:policy-ns:keygate" cannot list resource "configmaps" in API group "" in the namespace "policy-ns"`))
		})
		start := time.Now()
		err := e.src.Load(context.Background())
		want := `configmaps is forbidden: User "system:serviceaccount:policy-ns:keygate" cannot list resource "configmaps"`
		if err == nil || !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("Load: %v, want it to start %q", err, want)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("Load took %v; a refusal should end it at once", d)
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		e := newKubeEnv(t, KubeConfig{ConfigMap: "p", SyncTimeout: 500 * time.Millisecond})
		e.client.PrependReactor("list", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, &url.Error{Op: "Get", URL: "https://127.0.0.1:1/api/v1/namespaces/policy-ns/configmaps",
				Err: errors.New("dial tcp 127.0.0.1:1: connect: connection refused")}
		})
		err := e.src.Load(context.Background())
		want := "no list of configmap policy-ns/p from the Kubernetes API server within 500ms: " +
			"cannot reach the Kubernetes API server at https://127.0.0.1:1: dial tcp 127.0.0.1:1: connect: connection refused"
		if err == nil || err.Error() != want {
			t.Fatalf("Load: %v\nwant: %s", err, want)
		}
	})
}

func TestNewKubeValidates(t *testing.T) {
	client := fake.NewClientset()
	for _, tc := range []struct {
		cfg  KubeConfig
		want string
	}{
		{KubeConfig{Namespace: "ns"}, "exactly one of"},
		{KubeConfig{Namespace: "ns", ConfigMap: "a", Selector: "x=y"}, "exactly one of"},
		{KubeConfig{ConfigMap: "a"}, "namespace is required"},
		{KubeConfig{Namespace: "ns", Selector: "x in ("}, `label selector "x in ("`},
	} {
		tc.cfg.Client = client
		if _, err := NewKube(tc.cfg, NewStore(), nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewKube(%+v): %v, want %q", tc.cfg, err, tc.want)
		}
	}
}
