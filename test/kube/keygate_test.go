package kube

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/test/internal/harness"
)

// keygate is a keygate process serving from the API server.
type keygate struct {
	*harness.Keygate
	t    *testing.T
	conn *grpc.ClientConn
	auth authv3.AuthorizationClient
}

// startKeygate runs `keygate serve` with the kube flags given and loopback
// listeners, and returns at once: a test waits for it to be ready
// (waitReady) or to exit (waitExit). It is stopped when the test ends.
func startKeygate(t *testing.T, kubeconfig string, args ...string) *keygate {
	t.Helper()
	k := &keygate{t: t, Keygate: harness.Serve(t, harness.Options{
		NoWait:      true,
		StopTimeout: 10 * time.Second,
		Args: append([]string{"--kubeconfig=" + kubeconfig,
			"--decision-log=off", "--drain-timeout=1s"}, args...),
	})}
	// Registered after Serve's: runs before keygate is stopped.
	t.Cleanup(func() {
		if k.conn != nil {
			k.conn.Close()
		}
	})
	return k
}

// waitExit waits for keygate to exit by itself and returns its output.
func (k *keygate) waitExit(timeout time.Duration) string {
	k.t.Helper()
	if err := k.WaitExit(timeout); err != nil {
		k.t.Fatal(err)
	}
	return k.Out.String()
}

// waitReady waits for /readyz, then connects the gRPC client.
func (k *keygate) waitReady(timeout time.Duration) time.Duration {
	k.t.Helper()
	took, err := k.WaitReady(timeout)
	if err != nil {
		k.t.Fatalf("keygate: %v", err)
	}
	conn, err := grpc.NewClient(k.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		k.t.Fatal(err)
	}
	k.conn, k.auth = conn, authv3.NewAuthorizationClient(conn)
	return took
}

// check asks keygate about GET /whoami with key, as Envoy would, and
// returns the answer's code (OK allows).
func (k *keygate) check(key string) codes.Code {
	k.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := k.auth.Check(ctx, &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "kube-test", Method: "GET", Path: "/whoami", Host: "api.example.com", Scheme: "https",
			Headers: map[string]string{"authorization": "Bearer " + key},
		}},
	}})
	if err != nil {
		k.t.Fatalf("Check: %v", err)
	}
	return codes.Code(resp.GetStatus().GetCode())
}

// waitCheck polls check until it answers want.
func (k *keygate) waitCheck(key string, want codes.Code, timeout time.Duration) time.Duration {
	k.t.Helper()
	start := time.Now()
	for {
		got := k.check(key)
		if got == want {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			k.t.Fatalf("Check answered %v for %s after %s, want %v; output:\n%s", got, key[:12], timeout, want, k.Out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLog waits for keygate to print a line containing all of parts.
func (k *keygate) waitLog(timeout time.Duration, parts ...string) string {
	k.t.Helper()
	line, err := k.Out.WaitLine(timeout, parts...)
	if err != nil {
		k.t.Fatal(err)
	}
	return line
}

// ---------------------------------------------------------------------------
// Policy text and ConfigMaps.

// key is an API key made in keygate's format; only its digest goes into
// policies.
type key struct{ id, raw string }

func newKey(t *testing.T) key {
	t.Helper()
	id, raw := harness.NewAPIKey(t)
	return key{id: id, raw: raw}
}

func (k key) entry(disabled bool) string {
	return fmt.Sprintf("  - {id: %s, hash: %q, tenant: acme, user: bot-%s, disabled: %v}\n",
		k.id, policy.FormatDigest(apikey.Digest(k.raw)), strings.ToLower(k.id[3:]), disabled)
}

// basePolicy is a whole policy (settings, tenants, the /whoami endpoint)
// with keys.
func basePolicy(keys ...key) string {
	var b strings.Builder
	b.WriteString("version: 1\nsettings: {realm: api.example.com}\n")
	b.WriteString("tenants: [{id: acme, orgs: [acme-eu]}]\n")
	b.WriteString("endpoints:\n  - {name: whoami, match: {path: /whoami}, require: [api_key]}\n")
	b.WriteString(keysOnly(keys...)[len("version: 1\n"):])
	return b.String()
}

// keysOnly is a fragment holding only API keys.
func keysOnly(keys ...key) string {
	var b strings.Builder
	b.WriteString("version: 1\napi_keys:\n")
	if len(keys) == 0 {
		return "version: 1\napi_keys: []\n"
	}
	for _, k := range keys {
		b.WriteString(k.entry(false))
	}
	return b.String()
}

const policyLabel = "keygate.dev/policy"

func policyConfigMap(ns, name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{policyLabel: "true"}},
		Data:       data,
	}
}

// putConfigMap creates or replaces a ConfigMap and returns when the API
// call has returned.
func (c *cluster) putConfigMap(t *testing.T, cm *corev1.ConfigMap) {
	t.Helper()
	ctx := context.Background()
	api := c.admin.CoreV1().ConfigMaps(cm.Namespace)
	cur, err := api.Get(ctx, cm.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		_, err = api.Create(ctx, cm, metav1.CreateOptions{})
	case err == nil:
		cm.ResourceVersion = cur.ResourceVersion
		_, err = api.Update(ctx, cm, metav1.UpdateOptions{})
	}
	if err != nil {
		t.Fatalf("put ConfigMap %s/%s: %v", cm.Namespace, cm.Name, err)
	}
}

func (c *cluster) deleteConfigMap(t *testing.T, ns, name string) {
	t.Helper()
	if err := c.admin.CoreV1().ConfigMaps(ns).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("delete ConfigMap %s/%s: %v", ns, name, err)
	}
}
