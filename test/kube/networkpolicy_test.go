package kube

import (
	"testing"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestManifestsNetworkPolicy: k8s/'s NetworkPolicy selects keygate's pods,
// lets only namespaces labelled keygate.dev/ext-authz-client=true reach the
// ext_authz ports (grpc, http), keeps the admin port open to the cluster for
// scraping, and leaves egress alone (keygate calls the API server). The
// server-side dry run of TestManifestsServerDryRun applies it.
func TestManifestsNetworkPolicy(t *testing.T) {
	c := needCluster(t)
	m := render(t, c, "keygate-system")
	np := m.netpol
	if !equalJSON(np.Spec.PodSelector.MatchLabels, m.deploy.Spec.Selector.MatchLabels) || len(np.Spec.PodSelector.MatchExpressions) > 0 {
		t.Errorf("podSelector %+v, want the Deployment's pods", np.Spec.PodSelector)
	}
	if len(np.Spec.PolicyTypes) != 1 || np.Spec.PolicyTypes[0] != networkingv1.PolicyTypeIngress {
		t.Errorf("policyTypes %v, want [Ingress] only: egress must stay open for the API server", np.Spec.PolicyTypes)
	}
	clients := metav1.LabelSelector{MatchLabels: map[string]string{"keygate.dev/ext-authz-client": "true"}}
	anyNamespace := metav1.LabelSelector{}
	want := map[string][]networkingv1.NetworkPolicyPeer{
		"grpc":  {{NamespaceSelector: &clients}},
		"http":  {{NamespaceSelector: &clients}},
		"admin": {{NamespaceSelector: &anyNamespace}},
	}
	got := map[string][]networkingv1.NetworkPolicyPeer{}
	for i, rule := range np.Spec.Ingress {
		if len(rule.From) == 0 || len(rule.Ports) == 0 {
			t.Errorf("ingress[%d] %+v: an empty from or ports lets any source or any port in", i, rule)
		}
		for _, p := range rule.Ports {
			if p.Port == nil {
				t.Errorf("ingress[%d]: a rule without a port opens every port", i)
				continue
			}
			got[p.Port.String()] = append(got[p.Port.String()], rule.From...)
		}
	}
	for port, peers := range want {
		if !equalJSON(got[port], peers) {
			t.Errorf("port %s reachable from %+v, want %+v", port, got[port], peers)
		}
	}
	for port := range got {
		if _, ok := want[port]; !ok {
			t.Errorf("port %s opened, but keygate's ports are grpc, http and admin", port)
		}
	}
}
