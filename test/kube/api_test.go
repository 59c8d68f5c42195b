package kube

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/test/internal/harness"
)

// apiBasePolicy is the operator's policy: a tenant admin (tenant-level key
// in org-admin) and one acme-eu key made by hand.
func apiBasePolicy(admin, existing key, maxOrgKeys int) string {
	return fmt.Sprintf(`version: 1
settings: {realm: api.example.com, max_org_keys: %d}
groups: [{name: org-admin}, {name: sales}]
tenants: [{id: acme, orgs: [acme-eu]}]
management: {key_admin_groups: [org-admin], assignable_groups: [sales]}
endpoints:
  - {name: whoami, match: {path: /whoami}, require: [api_key]}
api_keys:
  - {id: %s, hash: %q, tenant: acme, user: tina, groups: [org-admin]}
  - {id: %s, hash: %q, tenant: acme, org: acme-eu, user: svc}
`, maxOrgKeys, admin.id, policy.FormatDigest(apikey.Digest(admin.raw)), existing.id, policy.FormatDigest(apikey.Digest(existing.raw)))
}

// apiCall makes one management API call as the tenant admin.
func apiCall(t *testing.T, addr, method, path, adminKey string, body any) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://"+addr+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+adminKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, path, err)
		return 0, nil
	}
	defer resp.Body.Close()
	var m map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// TestAPIOnConfigMaps runs the management API as two keygate processes on
// one real kube-apiserver, writing keygate-keys-acme-eu, and a third,
// read-only replica serving ext_authz: 20 simultaneous creates for one
// organization make exactly the free slots, every replica sees a new key,
// and a revoked one is refused within the 2 s budget.
func TestAPIOnConfigMaps(t *testing.T) {
	c := needCluster(t)
	ns := c.namespace(t, "api")
	const maxKeys, creates = 5, 20
	admin, existing := newKey(t), newKey(t)
	c.putConfigMap(t, policyConfigMap(ns, "keygate-base", map[string]string{"policy.yaml": apiBasePolicy(admin, existing, maxKeys)}))

	kubeArgs := []string{"--kubeconfig=" + c.AdminKubeconfig, "--kube-namespace=" + ns, "--kube-selector=" + policyLabel + "=true", "--decision-log=off", "--drain-timeout=1s"}
	var apis []*harness.Keygate
	for i := 0; i < 2; i++ {
		apis = append(apis, harness.Serve(t, harness.Options{Args: kubeArgs, API: true, Name: fmt.Sprintf("keygate-api-%d", i), StopTimeout: 10 * time.Second}))
	}

	replica := startKeygate(t, c.AdminKubeconfig, kubeArgs[1:]...)
	replica.waitReady(30 * time.Second)

	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		counts = map[int]int{}
		made   = map[string]string{} // id -> secret
	)
	start := make(chan struct{})
	for i := 0; i < creates; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			status, body := apiCall(t, apis[i%2].APIAddr, "POST", "/v1/orgs/acme-eu/keys", admin.raw, map[string]any{"name": fmt.Sprintf("parallel %d", i)})
			mu.Lock()
			defer mu.Unlock()
			counts[status]++
			switch {
			case status == 201:
				id, secret := fmt.Sprint(body["id"]), fmt.Sprint(body["key"])
				harness.RegisterSecret(secret, "API key "+id+" made through the management API")
				made[id] = secret
			case status != 409 || body["error"] != "limit_reached":
				t.Errorf("create = %d %v, want 201 or 409 limit_reached", status, body)
			}
		}()
	}
	close(start)
	wg.Wait()
	free := maxKeys - 1
	if counts[201] != free || counts[409] != creates-free {
		t.Fatalf("answers %v, want %d created and %d limit_reached", counts, free, creates-free)
	}
	record(t, "api_concurrency_configmaps", "%d parallel creates over two API processes with %d free slots: %d created, %d limit_reached", creates, free, counts[201], counts[409])

	// The organization's ConfigMap, labelled for the selector; the merged
	// policy compiles on the read-only replica, which serves every new key.
	cm, err := c.admin.CoreV1().ConfigMaps(ns).Get(context.Background(), "keygate-keys-acme-eu", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("the API's ConfigMap: %v", err)
	}
	if cm.Labels[policyLabel] != "true" {
		t.Errorf("keygate-keys-acme-eu labels %v, want %s=true", cm.Labels, policyLabel)
	}
	var ids []string
	for id, secret := range made {
		ids = append(ids, id)
		replica.waitCheck(secret, codes.OK, 2*time.Second)
		if !strings.Contains(strings.Join(mapValues(cm.Data), "\n"), id) {
			t.Errorf("key %s answered 201 but is not in keygate-keys-acme-eu (a lost update)", id)
		}
	}
	slices.Sort(ids)

	// Revoke through one API process; the replica refuses within 2 s.
	victim := ids[0]
	before := time.Now()
	status, body := apiCall(t, apis[1].APIAddr, "DELETE", "/v1/orgs/acme-eu/keys/"+victim, admin.raw, nil)
	returned := time.Since(before)
	if status != 200 || body["state"] != "disabled" {
		t.Fatalf("revoke = %d %v", status, body)
	}
	took := replica.waitCheck(made[victim], codes.Unauthenticated, 2*time.Second)
	record(t, "api_revocation_latency_configmaps", "%v from the revoke call returning to the first refused Check on another replica (the call took %v; budget 2s)", took.Round(time.Millisecond), returned.Round(time.Millisecond))

	// A named ConfigMap cannot hold per-organization keys: refused at start.
	named := harness.Serve(t, harness.Options{Args: []string{"--kubeconfig=" + c.AdminKubeconfig, "--kube-namespace=" + ns, "--kube-configmap=keygate-base"},
		API: true, NoWait: true, Name: "keygate-api-named"})
	if err := named.WaitExit(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if out := named.Out.String(); !strings.Contains(out, "--kube-selector") || named.ExitCode() == 0 {
		t.Errorf("--api-addr with --kube-configmap: exit %d, output %q; want a refusal naming --kube-selector", named.ExitCode(), lastLine(out))
	}
}

func mapValues(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for _, v := range m {
		out = append(out, v)
	}
	return out
}
