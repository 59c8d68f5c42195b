package main

import (
	"io"
	"strings"
	"testing"
)

// TestServePolicySourceFlags checks how serve's flags choose the policy
// source, and the one-line error for each mistake.
func TestServePolicySourceFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string // "" means accepted
	}{
		{[]string{"--policy=p.yaml"}, ""},
		{[]string{"--kube-namespace=ns", "--kube-configmap=keygate-policy"}, ""},
		{[]string{"--kube-namespace=ns", "--kube-selector=keygate.dev/policy=true"}, ""},
		{nil, "a policy source is required: --policy FILE|DIR (or KEYGATE_POLICY), or --kube-namespace NS with --kube-configmap NAME or --kube-selector LABELS"},
		{[]string{"--policy=p.yaml", "--kube-namespace=ns"}, "--policy and --kube-namespace/--kube-configmap/--kube-selector are exclusive"},
		{[]string{"--policy=p.yaml", "--kube-selector=a=b"}, "--policy and --kube-namespace/--kube-configmap/--kube-selector are exclusive"},
		{[]string{"--kube-selector=a=b"}, "--kube-configmap and --kube-selector need --kube-namespace"},
		{[]string{"--kube-namespace=ns"}, "with --kube-namespace give exactly one of --kube-configmap NAME or --kube-selector LABELS"},
		{[]string{"--kube-namespace=ns", "--kube-configmap=a", "--kube-selector=a=b"}, "with --kube-namespace give exactly one of"},
		{[]string{"--kube-namespace=Bad_NS", "--kube-configmap=a"}, `--kube-namespace "Bad_NS": a lowercase RFC 1123 label`},
		{[]string{"--kube-namespace=ns", "--kube-configmap=a/b"}, `--kube-configmap "a/b": a lowercase RFC 1123 subdomain`},
		{[]string{"--kube-namespace=ns", "--kube-selector=a in ("}, `--kube-selector "a in ("`},
	} {
		fs, cfg := serveFlags(io.Discard)
		if err := fs.Parse(tc.args); err != nil {
			t.Fatal(err)
		}
		err := cfg.kube.checkPolicySource(cfg.policy)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v, want accepted", tc.args, err)
		case tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)):
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("%q: error spans lines: %q", tc.args, err)
		}
	}
}

func TestKubeSourceKind(t *testing.T) {
	if got := (&kubeFlags{}).sourceKind(); got != "file" {
		t.Errorf("no namespace: %q, want file", got)
	}
	if got := (&kubeFlags{namespace: "ns"}).sourceKind(); got != "kubernetes" {
		t.Errorf("namespace: %q, want kubernetes", got)
	}
}
