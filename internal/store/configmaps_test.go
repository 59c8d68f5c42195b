package store

// The ConfigMap store's writes are tested against a real kube-apiserver in
// test/kube (keystore_test.go); these are its pure parts.

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes/fake"
)

func TestConfigMapName(t *testing.T) {
	tests := []struct {
		scope Scope
		want  string
	}{
		{Scope{Tenant: "acme", Org: "acme-eu"}, "keygate-keys-acme-eu"},
		{Scope{Tenant: "acme"}, "keygate-keys-tenant-acme"},
		{Scope{Tenant: "acme", Org: "eu.west"}, "keygate-keys-eu.west"},
		// Names Kubernetes refuses get a digest of the original, so
		// "Acme_EU" and "acme-eu" stay apart.
		{Scope{Tenant: "acme", Org: "Acme_EU"}, "keygate-keys-acme-eu-"},
		{Scope{Tenant: "Big_Co"}, "keygate-keys-tenant-big-co-"},
		{Scope{Tenant: "acme", Org: "_x_"}, "keygate-keys-x-"},
	}
	for _, tt := range tests {
		got := ConfigMapName(tt.scope)
		if !strings.HasPrefix(got, tt.want) || (strings.HasSuffix(tt.want, "-") && len(got) != len(tt.want)+10) || (!strings.HasSuffix(tt.want, "-") && got != tt.want) {
			t.Errorf("ConfigMapName(%+v) = %q, want %q (plus a digest if it ends in -)", tt.scope, got, tt.want)
		}
		if errs := validation.IsDNS1123Subdomain(got); len(errs) > 0 {
			t.Errorf("ConfigMapName(%+v) = %q: %v", tt.scope, got, errs)
		}
	}
	if a, b := ConfigMapName(Scope{Org: "Acme_EU"}), ConfigMapName(Scope{Org: "acme_EU"}); a == b {
		t.Errorf("two organizations map to one ConfigMap %q", a)
	}
	long := ConfigMapName(Scope{Org: strings.Repeat("A.", 200)})
	if errs := validation.IsDNS1123Subdomain(long); len(errs) > 0 {
		t.Errorf("a long organization: %q: %v", long, errs)
	}
}

func TestLabelsFromSelector(t *testing.T) {
	tests := []struct {
		selector string
		want     map[string]string
		err      string
	}{
		{"keygate.dev/policy=true", map[string]string{"keygate.dev/policy": "true"}, ""},
		{"app==keygate, tier in (policy)", map[string]string{"app": "keygate", "tier": "policy"}, ""},
		{"keygate.dev/policy", nil, "must be labels that equal values"},
		{"tier in (a,b)", nil, "must be labels that equal values"},
		{"app!=x", nil, "must be labels that equal values"},
		{"a=(", nil, "label selector"},
	}
	for _, tt := range tests {
		got, err := LabelsFromSelector(tt.selector)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("LabelsFromSelector(%q) = %v, %v; want an error with %q", tt.selector, got, err, tt.err)
			}
			continue
		}
		if err != nil || len(got) != len(tt.want) {
			t.Errorf("LabelsFromSelector(%q) = %v, %v; want %v", tt.selector, got, err, tt.want)
		}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("LabelsFromSelector(%q)[%q] = %q, want %q", tt.selector, k, got[k], v)
			}
		}
	}
}

// A client is needed only to construct the store; fake's is enough to see
// that construction refuses what cannot work.
func TestNewConfigMapsRefuses(t *testing.T) {
	client := fake.NewClientset()
	for _, tt := range []struct {
		ns     string
		labels map[string]string
		want   string
	}{
		{"keygate", nil, "serve with --kube-selector LABELS, not --kube-configmap NAME"},
		{"", map[string]string{"a": "b"}, "namespace is required"},
		{"keygate", map[string]string{"a b": "c"}, `label "a b"`},
		{"keygate", map[string]string{"a": "b c"}, `label a="b c"`},
	} {
		if _, err := NewConfigMaps(client, tt.ns, tt.labels); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("NewConfigMaps(%q, %v) = %v, want %q", tt.ns, tt.labels, err, tt.want)
		}
	}
	if _, err := NewConfigMaps(nil, "keygate", map[string]string{"a": "b"}); err == nil {
		t.Error("NewConfigMaps without a client succeeded")
	}
	if _, err := NewConfigMaps(client, "keygate", map[string]string{"keygate.dev/policy": "true"}); err != nil {
		t.Error(err)
	}
}
