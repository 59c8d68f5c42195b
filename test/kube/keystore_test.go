package kube

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/store"
	"github.com/keygate/keygate/test/internal/harness"
)

// keysBasePolicy: acme-eu may have 5 active keys and has one (the other is
// disabled), so 4 slots are free; olivia's session is its key admin.
func keysBasePolicy(first, gone, olivia key) string {
	return fmt.Sprintf(`version: 1
settings: {realm: api.example.com, max_org_keys: 5}
groups: [{name: sales}, {name: org-admin}]
tenants: [{id: acme, orgs: [acme-eu, acme-us]}]
endpoints:
  - {name: whoami, match: {path: /whoami}, require: [api_key]}
management: {key_admin_groups: [org-admin], assignable_groups: [sales]}
api_keys:
  - {id: %s, hash: %q, tenant: acme, org: acme-eu, user: bot}
  - {id: %s, hash: %q, tenant: acme, org: acme-eu, user: bot, disabled: true}
sessions:
  - {id: s_olivia, hash: %q, user: olivia, tenant: acme, org: acme-eu, groups: [org-admin]}
`, first.id, policy.FormatDigest(apikey.Digest(first.raw)), gone.id, policy.FormatDigest(apikey.Digest(gone.raw)),
		policy.FormatDigest(apikey.Digest(olivia.raw)))
}

// keysService is a keys.Service writing through its own client to the
// ConfigMaps of ns, as one replica of the management API would.
func keysService(t *testing.T, c *cluster, ns string) (*keys.Service, *store.ConfigMaps) {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", c.AdminKubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	// As serve's API client: client-go's default of 5 requests a second
	// would queue the burst below for seconds.
	cfg.QPS, cfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.NewConfigMaps(client, ns, map[string]string{policyLabel: "true"})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := st.Policy(context.Background())
	if err != nil {
		t.Fatalf("policy: %v", err)
	}
	return &keys.Service{Store: st, Policy: func() *policy.Snapshot { return snap }}, st
}

// TestConfigMapStoreLimitUnderConcurrency: 20 creates for one organization
// at once, half through each of two stores with their own clients (two API
// replicas), against the real kube-apiserver: exactly the free slots are
// taken, the rest get limit_reached, and the merged policy compiles with
// every created key in keygate-keys-acme-eu. A keygate serving the selector
// then sees a created key, and a revoked one refused (measured).
func TestConfigMapStoreLimitUnderConcurrency(t *testing.T) {
	c := needCluster(t)
	ns := c.namespace(t, "keystore")
	first, gone, olivia := newKey(t), newKey(t), newKey(t)
	c.putConfigMap(t, policyConfigMap(ns, "keygate-base", map[string]string{"policy.yaml": keysBasePolicy(first, gone, olivia)}))
	svcA, stA := keysService(t, c, ns)
	svcB, _ := keysService(t, c, ns)
	admin := keys.Actor{Principals: []*policy.Principal{svcA.Policy().Lookup(policy.KindSession, apikey.Digest(olivia.raw))}}
	if admin.Principals[0] == nil {
		t.Fatal("olivia's session is not in the policy")
	}
	eu := store.Scope{Org: "acme-eu"}

	const creates, free = 20, 4
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		created []keys.Created
		refused int
	)
	start := time.Now()
	for i := range creates {
		svc := svcA
		if i%2 == 1 {
			svc = svcB
		}
		wg.Go(func() {
			k, err := svc.Create(context.Background(), admin, eu, keys.NewKey{Name: fmt.Sprintf("concurrent %d", i), Groups: []string{"sales"}})
			mu.Lock()
			defer mu.Unlock()
			var ke *keys.Error
			switch {
			case err == nil:
				harness.RegisterSecret(k.Secret, "API key "+k.ID+" made by the ConfigMap store")
				created = append(created, k)
			case errors.As(err, &ke) && ke.Code == "limit_reached":
				refused++
			default:
				t.Errorf("create %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	record(t, "configmap-store-concurrent-creates", "%d creates for one org from 2 stores (own clients), %d free slots: %d created, %d refused with 409 limit_reached, in %v",
		creates, free, len(created), refused, time.Since(start).Round(time.Millisecond))
	if len(created) != free || refused != creates-free {
		t.Fatalf("%d created and %d refused, want %d and %d", len(created), refused, free, creates-free)
	}

	snap, err := stA.Policy(context.Background())
	if err != nil {
		t.Fatalf("the merged policy does not compile: %v", err)
	}
	for _, k := range created {
		if p := snap.Lookup(policy.KindAPIKey, apikey.Digest(k.Secret)); p == nil || p.ID != k.ID || p.Org != "acme-eu" || p.User != "olivia" {
			t.Errorf("created key %s does not resolve as made: %+v", k.ID, p)
		}
	}
	cm, err := c.admin.CoreV1().ConfigMaps(ns).Get(context.Background(), "keygate-keys-acme-eu", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Labels[policyLabel] != "true" || cm.Annotations[store.AnnotationOrg] != "acme-eu" || cm.Annotations[store.AnnotationTenant] != "acme" {
		t.Errorf("ConfigMap labels %v annotations %v", cm.Labels, cm.Annotations)
	}
	for _, k := range created {
		if !strings.Contains(cm.Data[store.DataKey], "id: "+k.ID) || strings.Contains(cm.Data[store.DataKey], k.Secret) {
			t.Errorf("ConfigMap's %s lacks %s or holds its secret", store.DataKey, k.ID)
		}
	}

	// Listing reads through the same write path but writes nothing.
	l, err := svcB.List(context.Background(), admin, eu)
	if err != nil || l.Active != 5 || l.Limit != 5 || len(l.Keys) != 6 {
		t.Errorf("listing %+v, %v: want 5 of 5 active among 6 keys", l, err)
	}
	again, _ := c.admin.CoreV1().ConfigMaps(ns).Get(context.Background(), "keygate-keys-acme-eu", metav1.GetOptions{})
	if again.ResourceVersion != cm.ResourceVersion {
		t.Error("listing wrote the ConfigMap")
	}

	// A keygate serving the selector sees the keys; a revocation through
	// the store is refused within the budget.
	kg := startKeygate(t, c.AdminKubeconfig, "--kube-namespace="+ns, selectorArg)
	kg.waitReady(30 * time.Second)
	victim := created[0]
	for range 3 {
		if got := kg.check(victim.Secret); got != codes.OK {
			t.Fatalf("created key: %v, want OK", got)
		}
	}
	k, err := svcB.Revoke(context.Background(), admin, eu, victim.ID)
	if err != nil || k.State != keys.StateDisabled {
		t.Fatalf("revoke: %+v, %v", k, err)
	}
	took := kg.waitCheck(victim.Secret, codes.Unauthenticated, 10*time.Second)
	record(t, "configmap-store-revocation", "a key revoked through the ConfigMap store was refused %v after Revoke returned (budget %v)",
		took.Round(time.Millisecond), revocationBudget)
	if took > revocationBudget {
		t.Errorf("revocation took %v, over the %v budget", took, revocationBudget)
	}
	if got := kg.check(created[1].Secret); got != codes.OK {
		t.Errorf("another created key after the revocation: %v, want OK", got)
	}
}

// The store refuses what would make the served policy wrong: a keys
// ConfigMap that exists but is not selected, and one that holds another
// scope's keys.
func TestConfigMapStoreRefusals(t *testing.T) {
	c := needCluster(t)
	ns := c.namespace(t, "keystore-refusals")
	first, gone, olivia := newKey(t), newKey(t), newKey(t)
	c.putConfigMap(t, policyConfigMap(ns, "keygate-base", map[string]string{"policy.yaml": keysBasePolicy(first, gone, olivia)}))
	svc, _ := keysService(t, c, ns)
	ctx := context.Background()

	unlabelled := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "keygate-keys-acme-eu", Namespace: ns}, Data: map[string]string{}}
	if _, err := c.admin.CoreV1().ConfigMaps(ns).Create(ctx, unlabelled, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err := svc.Create(ctx, keys.Actor{}, store.Scope{Org: "acme-eu"}, keys.NewKey{Name: "x"})
	if err == nil || !strings.Contains(err.Error(), "is not labelled keygate.dev/policy=true") {
		t.Errorf("create into an unlabelled ConfigMap: %v", err)
	}

	other := policyConfigMap(ns, "keygate-keys-acme-us", map[string]string{store.DataKey: "version: 1\n"})
	other.Annotations = map[string]string{store.AnnotationTenant: "acme", store.AnnotationOrg: "someone-else"}
	c.putConfigMap(t, other)
	_, err = svc.Create(ctx, keys.Actor{}, store.Scope{Org: "acme-us"}, keys.NewKey{Name: "x"})
	if err == nil || !strings.Contains(err.Error(), `holds the keys of tenant "acme" organization "someone-else"`) {
		t.Errorf("create into another scope's ConfigMap: %v", err)
	}

	// A tenant-level key goes to its own ConfigMap.
	k, err := svc.Create(ctx, keys.Actor{}, store.Scope{Tenant: "acme"}, keys.NewKey{Name: "tenant key"})
	if err != nil {
		t.Fatal(err)
	}
	harness.RegisterSecret(k.Secret, "API key "+k.ID)
	if cm, err := c.admin.CoreV1().ConfigMaps(ns).Get(ctx, "keygate-keys-tenant-acme", metav1.GetOptions{}); err != nil ||
		!strings.Contains(cm.Data[store.DataKey], k.ID) {
		t.Errorf("tenant-level key's ConfigMap: %v", err)
	}
}

// keygate keys create|rotate|revoke with --kube-namespace/--kube-selector,
// as separate processes at once: exactly the free slots are taken, the
// rest refused with the limit; a rotation and a revocation go to the
// organization's ConfigMap, and a key of another ConfigMap is left alone.
func TestKeysCLIConfigMaps(t *testing.T) {
	c := needCluster(t)
	ns := c.namespace(t, "keys-cli")
	first, gone, olivia := newKey(t), newKey(t), newKey(t)
	c.putConfigMap(t, policyConfigMap(ns, "keygate-base", map[string]string{"policy.yaml": keysBasePolicy(first, gone, olivia)}))
	bin, err := harness.Binary()
	if err != nil {
		t.Fatal(err)
	}
	kube := []string{"--kube-namespace", ns, "--kube-selector", policyLabel + "=true", "--kubeconfig", c.AdminKubeconfig}
	// The processes print the keys they make: that is their job, so those
	// keys are not registered as secrets (the scan would flag this output).
	keygateCLI := func(args ...string) (code int, stdout, stderr string) {
		cmd := exec.Command(bin, append(args, kube...)...)
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		var ee *exec.ExitError
		switch {
		case errors.As(err, &ee):
			code = ee.ExitCode()
		case err != nil:
			code = -1
			errOut.WriteString(err.Error())
		}
		return code, out.String(), errOut.String()
	}

	const procs, free = 8, 4
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		made []string
	)
	for i := range procs {
		wg.Go(func() {
			code, out, errOut := keygateCLI("keys", "create", "--tenant", "acme", "--org", "acme-eu", "--groups", "sales", "--name", fmt.Sprintf("cli %d", i))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case code == 0:
				made = append(made, strings.TrimSpace(out))
			case code != 1 || !strings.Contains(errOut, `organization "acme-eu" has 5 of 5 active organization-level keys`):
				t.Errorf("keys create %d: exit %d\n%s", i, code, errOut)
			}
		})
	}
	wg.Wait()
	record(t, "configmap-cli-concurrent-creates", "%d keygate keys create processes for one org, %d free slots: %d created, the rest refused", procs, free, len(made))
	if len(made) != free {
		t.Fatalf("%d keys made, want %d", len(made), free)
	}

	st, err := store.NewConfigMaps(clientFor(t, c.AdminKubeconfig), ns, map[string]string{policyLabel: "true"})
	if err != nil {
		t.Fatal(err)
	}
	id, _, _ := apikey.Check(made[0])
	if code, _, errOut := keygateCLI("keys", "rotate", id, "--overlap", "1h"); code != 1 || !strings.Contains(errOut, "rotate with overlap 0s") {
		t.Errorf("rotate with an overlap in a full org: exit %d\n%s", code, errOut)
	}
	code, out, errOut := keygateCLI("keys", "rotate", id, "--overlap", "0s")
	succ := strings.TrimSpace(out)
	if code != 0 || !strings.Contains(errOut, "to ConfigMap "+ns+"/keygate-keys-acme-eu") {
		t.Fatalf("rotate: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := keygateCLI("keys", "revoke", id, "--note", "rotated"); code != 0 || !strings.Contains(errOut, "Revoked "+id) {
		t.Errorf("revoke: exit %d\n%s", code, errOut)
	}
	if code, _, errOut := keygateCLI("keys", "revoke", first.id); code != 1 || !strings.Contains(errOut, "defined outside the keys keygate manages") {
		t.Errorf("revoke of keygate-base's key: exit %d\n%s", code, errOut)
	}
	snap, err := st.Policy(context.Background())
	if err != nil {
		t.Fatalf("the merged policy does not compile: %v", err)
	}
	now := time.Now().UnixNano()
	if p := snap.Lookup(policy.KindAPIKey, apikey.Digest(made[0])); p == nil || !p.Disabled {
		t.Errorf("the rotated and revoked key: %+v", p)
	}
	if p := snap.Lookup(policy.KindAPIKey, apikey.Digest(succ)); p == nil || p.Disabled || p.ExpiredAt(now) || p.Org != "acme-eu" {
		t.Errorf("the successor: %+v", p)
	}
	if p := snap.Lookup(policy.KindAPIKey, apikey.Digest(first.raw)); p == nil || p.Disabled {
		t.Errorf("keygate-base's key was changed: %+v", p)
	}
}
