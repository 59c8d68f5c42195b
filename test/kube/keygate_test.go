package kube

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"syscall"
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
)

// keygate is a keygate process serving from the API server.
type keygate struct {
	t         *testing.T
	cmd       *exec.Cmd
	out       *syncBuffer
	grpcAddr  string
	adminAddr string
	done      chan struct{}
	err       error
	conn      *grpc.ClientConn
	auth      authv3.AuthorizationClient
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startKeygate runs `keygate serve` with the kube flags given and loopback
// listeners; it stops when the test ends.
func startKeygate(t *testing.T, kubeconfig string, args ...string) *keygate {
	t.Helper()
	ports, err := freePorts(2)
	if err != nil {
		t.Fatal(err)
	}
	k := &keygate{
		t:         t,
		out:       &syncBuffer{},
		grpcAddr:  fmt.Sprintf("127.0.0.1:%d", ports[0]),
		adminAddr: fmt.Sprintf("127.0.0.1:%d", ports[1]),
		done:      make(chan struct{}),
	}
	all := append([]string{"serve", "--kubeconfig=" + kubeconfig,
		"--grpc-addr=" + k.grpcAddr, "--http-addr=", "--admin-addr=" + k.adminAddr,
		"--decision-log=off", "--drain-timeout=1s"}, args...)
	k.cmd = exec.Command(keygateBin, all...)
	k.cmd.Stdout, k.cmd.Stderr = k.out, k.out
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := k.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { k.err = k.cmd.Wait(); close(k.done) }()
	t.Cleanup(func() {
		k.stop()
		if t.Failed() {
			t.Logf("keygate output:\n%s", k.out.String())
		}
	})
	return k
}

func (k *keygate) stop() {
	if k.conn != nil {
		k.conn.Close()
		k.conn = nil
	}
	select {
	case <-k.done:
		return
	default:
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(10 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
	}
}

// waitExit waits for keygate to exit by itself and returns its output.
func (k *keygate) waitExit(timeout time.Duration) string {
	k.t.Helper()
	select {
	case <-k.done:
	case <-time.After(timeout):
		k.t.Fatalf("keygate still running after %s; output:\n%s", timeout, k.out.String())
	}
	return k.out.String()
}

// ready reports whether /readyz answers 200.
func (k *keygate) ready() bool {
	c := http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + k.adminAddr + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitReady waits for /readyz, then connects the gRPC client.
func (k *keygate) waitReady(timeout time.Duration) time.Duration {
	k.t.Helper()
	start := time.Now()
	for !k.ready() {
		select {
		case <-k.done:
			k.t.Fatalf("keygate exited (%v) before it was ready; output:\n%s", k.err, k.out.String())
		default:
		}
		if time.Since(start) > timeout {
			k.t.Fatalf("keygate not ready within %s; output:\n%s", timeout, k.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	took := time.Since(start)
	conn, err := grpc.NewClient(k.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
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
			k.t.Fatalf("Check answered %v for %s after %s, want %v; output:\n%s", got, timeout, key[:12], want, k.out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitLog waits for keygate to print a line containing all of parts.
func (k *keygate) waitLog(timeout time.Duration, parts ...string) string {
	k.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range strings.Split(k.out.String(), "\n") {
			if containsAll(l, parts...) {
				return l
			}
		}
		if time.Now().After(deadline) {
			k.t.Fatalf("keygate printed no line with %q within %s; output:\n%s", parts, timeout, k.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containsAll(s string, parts ...string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// Policy text and ConfigMaps.

// key is an API key made in keygate's format; only its digest goes into
// policies.
type key struct{ id, raw string }

func newKey(t *testing.T) key {
	t.Helper()
	id, err := apikey.NewID()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := apikey.New(id)
	if err != nil {
		t.Fatal(err)
	}
	return key{id: id, raw: raw}
}

func (k key) entry(disabled bool) string {
	d := apikey.Digest(k.raw)
	return fmt.Sprintf("  - {id: %s, hash: \"sha256:%s\", tenant: acme, user: bot-%s, disabled: %v}\n",
		k.id, hex.EncodeToString(d[:]), strings.ToLower(k.id[3:]), disabled)
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
