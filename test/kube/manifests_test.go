package kube

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/keygate/keygate/internal/policy"
)

// manifests is k8s/ rendered by kubectl's kustomize into a namespace, each
// object decoded strictly (an unknown or duplicate field fails) into its
// client-go type.
type manifests struct {
	yaml    []byte
	objects []runtime.Object
	sa      *corev1.ServiceAccount
	role    *rbacv1.Role
	binding *rbacv1.RoleBinding
	cm      *corev1.ConfigMap
	deploy  *appsv1.Deployment
	svc     *corev1.Service
	pdb     *policyv1.PodDisruptionBudget
	netpol  *networkingv1.NetworkPolicy

	// The management API's own objects (k8s/api.yaml), named keygate-api
	// (its Role keygate-keys-writer).
	api struct {
		sa      *corev1.ServiceAccount
		role    *rbacv1.Role
		binding *rbacv1.RoleBinding
		deploy  *appsv1.Deployment
		svc     *corev1.Service
		netpol  *networkingv1.NetworkPolicy
	}
}

// overlay writes a kustomization that installs k8s/ into ns, as the docs
// tell users to, and returns its folder.
func overlay(t *testing.T, ns string) string {
	t.Helper()
	dir := t.TempDir()
	base, err := filepath.Rel(dir, filepath.Join(repoRoot, "k8s"))
	if err != nil {
		t.Fatal(err)
	}
	text := "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: " + ns + "\nresources:\n  - " + base + "\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func render(t *testing.T, c *cluster, ns string) *manifests {
	t.Helper()
	out, err := c.kubectl("kustomize", overlay(t, ns))
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	m := &manifests{yaml: []byte(out)}
	strict := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	for _, doc := range regexp.MustCompile(`(?m)^---$`).Split(out, -1) {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		obj, gvk, err := strict.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("decode %s: %v\n%s", gvk, err, doc)
		}
		m.objects = append(m.objects, obj)
		if meta, ok := obj.(metav1.Object); ok && (meta.GetName() == "keygate-api" || meta.GetName() == "keygate-keys-writer") {
			switch o := obj.(type) {
			case *corev1.ServiceAccount:
				m.api.sa = o
			case *rbacv1.Role:
				m.api.role = o
			case *rbacv1.RoleBinding:
				m.api.binding = o
			case *appsv1.Deployment:
				m.api.deploy = o
			case *corev1.Service:
				m.api.svc = o
			case *networkingv1.NetworkPolicy:
				m.api.netpol = o
			default:
				t.Errorf("unexpected %T in k8s/api.yaml", obj)
			}
			continue
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			m.sa = o
		case *rbacv1.Role:
			m.role = o
		case *rbacv1.RoleBinding:
			m.binding = o
		case *corev1.ConfigMap:
			m.cm = o
		case *appsv1.Deployment:
			m.deploy = o
		case *corev1.Service:
			m.svc = o
		case *policyv1.PodDisruptionBudget:
			m.pdb = o
		case *networkingv1.NetworkPolicy:
			m.netpol = o
		default:
			t.Errorf("unexpected %T in k8s/", obj)
		}
	}
	if m.sa == nil || m.role == nil || m.binding == nil || m.cm == nil || m.deploy == nil || m.svc == nil || m.pdb == nil || m.netpol == nil {
		t.Fatalf("k8s/ is missing objects: got %d\n%s", len(m.objects), out)
	}
	if a := m.api; a.sa == nil || a.role == nil || a.binding == nil || a.deploy == nil || a.svc == nil || a.netpol == nil {
		t.Fatalf("k8s/api.yaml is missing objects: %+v", a)
	}
	return m
}

// TestManifestsServerDryRun applies every object of k8s/ with server-side
// dry-run to the real API server, in a namespace that enforces the
// "restricted" Pod Security Standard and warns on it, so the Deployment's
// pod template is checked against it too.
func TestManifestsServerDryRun(t *testing.T) {
	c := needCluster(t)
	ns := c.namespace(t, "dryrun")
	nsObj, err := c.admin.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	nsObj.Labels = map[string]string{
		"pod-security.kubernetes.io/enforce": "restricted",
		"pod-security.kubernetes.io/warn":    "restricted",
	}
	if _, err := c.admin.CoreV1().Namespaces().Update(context.Background(), nsObj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	out, err := c.kubectl("apply", "--dry-run=server", "--server-side", "--field-manager=keygate-test", "-k", overlay(t, ns))
	if err != nil {
		t.Fatalf("kubectl apply --dry-run=server: %v\n%s", err, out)
	}
	t.Logf("kubectl apply --dry-run=server --server-side -k (namespace %s):\n%s", ns, out)
	for _, want := range []string{
		"serviceaccount/keygate", "role.rbac.authorization.k8s.io/keygate-policy-reader",
		"rolebinding.rbac.authorization.k8s.io/keygate-policy-reader", "configmap/keygate-policy",
		"service/keygate", "deployment.apps/keygate", "poddisruptionbudget.policy/keygate",
		"networkpolicy.networking.k8s.io/keygate",
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + ` serverside-applied \(server dry run\)$`).MatchString(out) {
			t.Errorf("no %q applied (server dry run) in the output", want)
		}
	}
	if strings.Contains(strings.ToLower(out), "warning") {
		t.Errorf("the API server warned:\n%s", out)
	}
	// Nothing was made.
	if _, err := c.admin.AppsV1().Deployments(ns).Get(context.Background(), "keygate", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry run created the Deployment (get: %v)", err)
	}
}

// TestManifestsContent checks what the manifests promise: least-privilege
// RBAC bound to keygate's ServiceAccount in the install namespace, a
// hardened two-replica Deployment that reads its namespace from the downward
// API, the Service's ports, the PDB, and an example policy ConfigMap that is
// examples/policy.yaml and compiles.
func TestManifestsContent(t *testing.T) {
	c := needCluster(t)
	const ns = "keygate-system"
	m := render(t, c, ns)

	for _, obj := range m.objects {
		meta, _ := obj.(metav1.Object)
		if meta.GetNamespace() != ns {
			t.Errorf("%T %s: namespace %q, want %q (set by the overlay)", obj, meta.GetName(), meta.GetNamespace(), ns)
		}
	}

	wantRules := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch"}}}
	if !equalJSON(m.role.Rules, wantRules) {
		t.Errorf("Role rules %+v, want only get/list/watch on configmaps", m.role.Rules)
	}
	wantSubject := rbacv1.Subject{Kind: "ServiceAccount", Name: m.sa.Name, Namespace: ns}
	if len(m.binding.Subjects) != 1 || m.binding.Subjects[0] != wantSubject || m.binding.RoleRef.Kind != "Role" || m.binding.RoleRef.Name != m.role.Name {
		t.Errorf("RoleBinding %+v %+v, want the Role bound to %+v", m.binding.RoleRef, m.binding.Subjects, wantSubject)
	}

	d := m.deploy
	pod := d.Spec.Template.Spec
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", d.Spec.Replicas)
	}
	if pod.ServiceAccountName != m.sa.Name {
		t.Errorf("serviceAccountName %q, want %q", pod.ServiceAccountName, m.sa.Name)
	}
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Errorf("pod securityContext %+v: want runAsNonRoot and seccomp RuntimeDefault", psc)
	}
	if aff := pod.Affinity; aff == nil || aff.PodAntiAffinity == nil || len(aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) == 0 ||
		aff.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm.TopologyKey != "kubernetes.io/hostname" {
		t.Errorf("want a preferred pod anti-affinity on kubernetes.io/hostname, got %+v", aff)
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(pod.Containers))
	}
	ctr := pod.Containers[0]
	sc := ctr.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("container securityContext %+v: want read-only root, no privilege escalation, drop ALL", sc)
	}
	for probe, want := range map[*corev1.Probe]string{ctr.ReadinessProbe: "/readyz", ctr.LivenessProbe: "/healthz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || probe.HTTPGet.Port.String() != "admin" {
			t.Errorf("probe %+v, want GET %s on the admin port", probe, want)
		}
	}
	if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v: want cpu and memory requests and a memory limit", ctr.Resources)
	}
	if !slices.Contains(ctr.Args, "--kube-namespace=$(POD_NAMESPACE)") || !slices.Contains(ctr.Args, "--kube-selector=keygate.dev/policy=true") {
		t.Errorf("args %q: want --kube-namespace=$(POD_NAMESPACE) and --kube-selector=keygate.dev/policy=true", ctr.Args)
	}
	if i := slices.IndexFunc(ctr.Env, func(e corev1.EnvVar) bool { return e.Name == "POD_NAMESPACE" }); i < 0 ||
		ctr.Env[i].ValueFrom == nil || ctr.Env[i].ValueFrom.FieldRef == nil || ctr.Env[i].ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Error("POD_NAMESPACE must come from the downward API (metadata.namespace)")
	}

	ports := map[string]corev1.ServicePort{}
	for _, p := range m.svc.Spec.Ports {
		ports[p.Name] = p
	}
	for name, want := range map[string]int32{"grpc": 9001, "http": 9002, "admin": 9003} {
		if ports[name].Port != want {
			t.Errorf("Service port %s: %d, want %d", name, ports[name].Port, want)
		}
	}
	if ap := ports["grpc"].AppProtocol; ap == nil || *ap != "grpc" {
		t.Error("Service port grpc needs appProtocol: grpc")
	}
	if !equalJSON(m.svc.Spec.Selector, d.Spec.Selector.MatchLabels) || !equalJSON(m.pdb.Spec.Selector.MatchLabels, d.Spec.Selector.MatchLabels) {
		t.Error("the Service and the PDB must select the Deployment's pods")
	}
	if m.pdb.Spec.MinAvailable == nil || m.pdb.Spec.MinAvailable.IntValue() != 1 {
		t.Errorf("PDB minAvailable %v, want 1", m.pdb.Spec.MinAvailable)
	}

	// The management API: its own ServiceAccount, the only Role that may
	// write ConfigMaps, serving --api-addr on the same selector.
	api := m.api
	wantWriter := []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get", "list", "watch", "create", "update"}}}
	if !equalJSON(api.role.Rules, wantWriter) {
		t.Errorf("API Role rules %+v, want get/list/watch/create/update on configmaps", api.role.Rules)
	}
	apiSubject := rbacv1.Subject{Kind: "ServiceAccount", Name: api.sa.Name, Namespace: ns}
	if len(api.binding.Subjects) != 1 || api.binding.Subjects[0] != apiSubject || api.binding.RoleRef.Name != api.role.Name {
		t.Errorf("API RoleBinding %+v %+v, want the writer Role bound to %+v only", api.binding.RoleRef, api.binding.Subjects, apiSubject)
	}
	if api.sa.Name == m.sa.Name || api.deploy.Spec.Template.Spec.ServiceAccountName != api.sa.Name {
		t.Errorf("the API Deployment must run as its own ServiceAccount (%q), not the ext_authz one (%q)", api.deploy.Spec.Template.Spec.ServiceAccountName, m.sa.Name)
	}
	apiArgs := api.deploy.Spec.Template.Spec.Containers[0].Args
	for _, want := range []string{"--api-addr=:9004", "--kube-namespace=$(POD_NAMESPACE)", "--kube-selector=keygate.dev/policy=true"} {
		if !slices.Contains(apiArgs, want) {
			t.Errorf("API args %q lack %s", apiArgs, want)
		}
	}
	if !equalJSON(api.svc.Spec.Selector, api.deploy.Spec.Selector.MatchLabels) || equalJSON(api.svc.Spec.Selector, d.Spec.Selector.MatchLabels) {
		t.Error("Service keygate-api must select the API pods only")
	}

	// The example policy: examples/policy.yaml, labelled for the selector,
	// and it compiles.
	example, err := os.ReadFile(filepath.Join(repoRoot, "examples", "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cp, err := os.ReadFile(filepath.Join(repoRoot, "k8s", "policy.yaml")); err != nil || !bytes.Equal(cp, example) {
		t.Errorf("k8s/policy.yaml differs from examples/policy.yaml (%v): copy it again (cp examples/policy.yaml k8s/policy.yaml)", err)
	}
	if m.cm.Labels[policyLabel] != "true" || m.cm.Data["policy.yaml"] != string(example) {
		t.Errorf("ConfigMap %s: labels %v, policy.yaml equal to examples/policy.yaml: %v", m.cm.Name, m.cm.Labels, m.cm.Data["policy.yaml"] == string(example))
	}
	if _, err := policy.Load([]policy.Input{{Name: ns + "/" + m.cm.Name + "/policy.yaml", Data: []byte(m.cm.Data["policy.yaml"])}}, policy.Options{}); err != nil {
		t.Errorf("the example ConfigMap does not compile: %v", err)
	}
}

// TestManifestsSessionKeys renders k8s/ with the session-keys component:
// the API Deployment mounts the signing key's Secret and signs with it; the
// ext_authz replicas mount only the public key's ConfigMap and verify with
// it, never the Secret; the result passes a server-side dry run.
func TestManifestsSessionKeys(t *testing.T) {
	c := needCluster(t)
	ns := c.namespace(t, "session-keys")
	dir := overlay(t, ns)
	comp, err := filepath.Rel(dir, filepath.Join(repoRoot, "k8s", "components", "session-keys"))
	if err != nil {
		t.Fatal(err)
	}
	kust := filepath.Join(dir, "kustomization.yaml")
	text, err := os.ReadFile(kust)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kust, append(text, []byte("components:\n  - "+comp+"\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := c.kubectl("kustomize", dir)
	if err != nil {
		t.Fatalf("kubectl kustomize: %v\n%s", err, out)
	}
	strict := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	deploys := map[string]*appsv1.Deployment{}
	for _, doc := range regexp.MustCompile(`(?m)^---$`).Split(out, -1) {
		obj, _, err := strict.Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("decode: %v\n%s", err, doc)
		}
		if d, ok := obj.(*appsv1.Deployment); ok {
			deploys[d.Name] = d
		}
	}
	mounts := func(d *appsv1.Deployment) (secrets, configMaps []string, args []string) {
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Secret != nil {
				secrets = append(secrets, v.Secret.SecretName)
			}
			if v.ConfigMap != nil {
				configMaps = append(configMaps, v.ConfigMap.Name)
			}
		}
		return secrets, configMaps, d.Spec.Template.Spec.Containers[0].Args
	}
	api, authz := deploys["keygate-api"], deploys["keygate"]
	if api == nil || authz == nil {
		t.Fatalf("deployments %v", deploys)
	}
	s, _, args := mounts(api)
	if !slices.Equal(s, []string{"keygate-session-signing-key"}) || !slices.Contains(args, "--session-signing-key=/etc/keygate/session/signing-key.pem") {
		t.Errorf("the API: secrets %v, args %q; want the signing key mounted and used", s, args)
	}
	if sc := api.Spec.Template.Spec.SecurityContext; sc == nil || sc.FSGroup == nil || *sc.FSGroup != *sc.RunAsGroup {
		t.Errorf("the API's fsGroup must be keygate's group, so that it can read the 0440 key: %+v", sc)
	}
	s, cms, args := mounts(authz)
	if len(s) != 0 || !slices.Equal(cms, []string{"keygate-session-verify-key"}) || !slices.Contains(args, "--session-verify-key=/etc/keygate/session/verify-key.pem") {
		t.Errorf("ext_authz: secrets %v, configmaps %v, args %q; want the public key only", s, cms, args)
	}
	if out, err := c.kubectl("apply", "--dry-run=server", "-k", dir); err != nil {
		t.Fatalf("server-side dry run: %v\n%s", err, out)
	}
}
