package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/test/internal/harness"
)

// demoKey is examples/policy.yaml's tenant-level demo key (README prints it).
const demoKey = "kg_demo0001_oyCLM0LiJKAiVDtUBnYfhL3xoAZvuqnj2lMjzW"

// TestRBACRoleFromManifests runs keygate as k8s/'s ServiceAccount, with a
// token the API server issued for it, bound only by k8s/'s Role: it serves
// the example policy ConfigMap with the Deployment's own arguments. Without
// the RoleBinding it exits with the API server's refusal on one line.
func TestRBACRoleFromManifests(t *testing.T) {
	c := needCluster(t)
	ns := c.namespace(t, "rbac")
	m := render(t, c, ns)
	ctx := context.Background()
	if _, err := c.admin.CoreV1().ServiceAccounts(ns).Create(ctx, m.sa, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.admin.RbacV1().Roles(ns).Create(ctx, m.role, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.admin.RbacV1().RoleBindings(ns).Create(ctx, m.binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.admin.CoreV1().ConfigMaps(ns).Create(ctx, m.cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expiry := int64(3600)
	tr, err := c.admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, m.sa.Name,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: &expiry}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, m.sa.Name, err)
	}
	kubeconfig, err := c.WriteKubeconfig("keygate-sa", tr.Status.Token)
	if err != nil {
		t.Fatal(err)
	}

	// What the token may do: read ConfigMaps in its namespace, nothing else.
	sa := clientFor(t, kubeconfig)
	for _, tc := range []struct {
		ns, verb, resource string
		want               bool
	}{
		{ns, "get", "configmaps", true},
		{ns, "list", "configmaps", true},
		{ns, "watch", "configmaps", true},
		{ns, "update", "configmaps", false},
		{ns, "create", "configmaps", false},
		{ns, "get", "secrets", false},
		{ns, "list", "pods", false},
		{"default", "list", "configmaps", false},
	} {
		if got := canI(t, sa, tc.ns, tc.verb, tc.resource); got != tc.want {
			t.Errorf("%s %s in %s: allowed %v, want %v", tc.verb, tc.resource, tc.ns, got, tc.want)
		}
	}

	// The Deployment's arguments, with the downward API's namespace.
	args := deploymentArgs(t, m, ns)
	harness.RegisterSecret(demoKey, "the example policy's demo key")
	kg := startKeygate(t, kubeconfig, args...)
	kg.waitReady(30 * time.Second)
	if got := kg.check(demoKey); got != codes.OK {
		t.Errorf("the example policy's demo key: %v, want OK", got)
	}

	// Without the RoleBinding: the API server's refusal, on one line.
	if err := c.admin.RbacV1().RoleBindings(ns).Delete(ctx, m.binding.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the RoleBinding's removal to take effect", 10*time.Second, func() bool {
		return !canI(t, sa, ns, "list", "configmaps")
	})
	denied := startKeygate(t, kubeconfig, args...)
	out := denied.waitExit(30 * time.Second)
	want := fmt.Sprintf(`keygate: load policy from kubernetes: configmaps is forbidden: User "system:serviceaccount:%s:%s" `+
		`cannot list resource "configmaps" in API group "" in the namespace "%s"`, ns, m.sa.Name, ns)
	if got := lastLine(out); got != want {
		t.Errorf("exit message:\n  %s\nwant\n  %s\noutput:\n%s", got, want, out)
	}
	if code := denied.ExitCode(); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
}

// deploymentArgs returns the keygate container's arguments after "serve",
// with $(POD_NAMESPACE) as the kubelet would expand it, and no shutdown
// delay.
func deploymentArgs(t *testing.T, m *manifests, ns string) []string {
	t.Helper()
	args := m.deploy.Spec.Template.Spec.Containers[0].Args
	if len(args) == 0 || args[0] != "serve" {
		t.Fatalf("Deployment args %q: want serve first", args)
	}
	var out []string
	for _, a := range args[1:] {
		out = append(out, strings.ReplaceAll(a, "$(POD_NAMESPACE)", ns))
	}
	// No load balancer to wait for here: stop at once.
	return append(out, "--shutdown-delay=0s")
}

func clientFor(t *testing.T, kubeconfig string) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// canI asks the API server whether the client may do verb on resource in ns.
func canI(t *testing.T, cs *kubernetes.Clientset, ns, verb, resource string) bool {
	t.Helper()
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(context.Background(), &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: verb, Resource: resource,
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectAccessReview: %v", err)
	}
	return r.Status.Allowed
}

func equalJSON(a, b any) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}
