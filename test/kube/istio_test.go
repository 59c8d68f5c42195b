package kube

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	securityv1 "istio.io/api/security/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// Istio's CRDs are not installed on the test API server, so k8s/istio/ is
// decoded strictly with istio.io's own Go types instead: an unknown or
// misspelt field fails, as istiod would refuse it.

// identityHeaders are the headers keygate sets on an allowed request, with
// the default prefix (DESIGN.md, "Answers").
var identityHeaders = []string{
	"x-keygate-user", "x-keygate-tenant", "x-keygate-org", "x-keygate-key-id",
	"x-keygate-session-id", "x-keygate-groups", "x-keygate-auth", "x-keygate-endpoint",
}

// strictJSON turns YAML into JSON, refusing duplicate keys.
func strictJSON(t *testing.T, name string, data []byte) []byte {
	t.Helper()
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return js
}

// decodeMeshConfig reads k8s/istio/mesh-config.yaml (or text): a document
// whose only key is meshConfig, holding an Istio MeshConfig.
func decodeMeshConfig(t *testing.T, text []byte) (*meshv1alpha1.MeshConfig, error) {
	t.Helper()
	var top map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(strictJSON(t, "mesh-config.yaml", text)))
	if err := dec.Decode(&top); err != nil {
		return nil, err
	}
	for k := range top {
		if k != "meshConfig" {
			return nil, fmt.Errorf("unknown top-level field %q (want only meshConfig)", k)
		}
	}
	mc := &meshv1alpha1.MeshConfig{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(top["meshConfig"], mc); err != nil {
		return nil, err
	}
	return mc, nil
}

// decodeAuthorizationPolicy reads an AuthorizationPolicy resource: the
// envelope into ObjectMeta and the spec into Istio's proto type.
func decodeAuthorizationPolicy(t *testing.T, text []byte) (*metav1.ObjectMeta, *securityv1.AuthorizationPolicy, error) {
	t.Helper()
	var env struct {
		APIVersion string            `json:"apiVersion"`
		Kind       string            `json:"kind"`
		Metadata   metav1.ObjectMeta `json:"metadata"`
		Spec       json.RawMessage   `json:"spec"`
	}
	dec := json.NewDecoder(bytes.NewReader(strictJSON(t, "authorization-policy.yaml", text)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&env); err != nil {
		return nil, nil, err
	}
	if env.APIVersion != "security.istio.io/v1" || env.Kind != "AuthorizationPolicy" {
		return nil, nil, fmt.Errorf("%s %s, want security.istio.io/v1 AuthorizationPolicy", env.APIVersion, env.Kind)
	}
	ap := &securityv1.AuthorizationPolicy{}
	if err := protojson.Unmarshal(env.Spec, ap); err != nil {
		return nil, nil, err
	}
	return &env.Metadata, ap, nil
}

func readIstio(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "k8s", "istio", name))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestIstioMeshConfig(t *testing.T) {
	text := readIstio(t, "mesh-config.yaml")
	mc, err := decodeMeshConfig(t, text)
	if err != nil {
		t.Fatalf("mesh-config.yaml: %v", err)
	}
	providers := map[string]*meshv1alpha1.MeshConfig_ExtensionProvider{}
	for _, p := range mc.GetExtensionProviders() {
		providers[p.GetName()] = p
	}

	g := providers["keygate-grpc"].GetEnvoyExtAuthzGrpc()
	if g == nil || g.GetService() != "keygate.keygate.svc.cluster.local" || g.GetPort() != 9001 || g.GetFailOpen() {
		t.Errorf("keygate-grpc: %v, want envoyExtAuthzGrpc to keygate.keygate.svc.cluster.local:9001, failOpen false", g)
	}

	h := providers["keygate-http"].GetEnvoyExtAuthzHttp()
	if h == nil || h.GetService() != "keygate.keygate.svc.cluster.local" || h.GetPort() != 9002 || h.GetFailOpen() {
		t.Fatalf("keygate-http: %v, want envoyExtAuthzHttp to keygate.keygate.svc.cluster.local:9002, failOpen false", h)
	}
	// HTTP mode sends keygate only the listed headers: the credentials, the
	// decision id, the organization header an endpoint may read, and the
	// client's identity headers, so that keygate can have the spoofed ones
	// it does not set removed.
	for _, want := range []string{"authorization", "x-api-key", "session", "x-request-id", "x-org-id", "x-keygate-*"} {
		if !slices.Contains(h.GetIncludeRequestHeadersInCheck(), want) {
			t.Errorf("includeRequestHeadersInCheck %q lacks %s", h.GetIncludeRequestHeadersInCheck(), want)
		}
	}
	if got := h.GetHeadersToUpstreamOnAllow(); !slices.Equal(got, identityHeaders) {
		t.Errorf("headersToUpstreamOnAllow %q, want keygate's identity headers %q", got, identityHeaders)
	}
	for _, want := range []string{"www-authenticate", "content-type"} {
		if !slices.Contains(h.GetHeadersToDownstreamOnDeny(), want) {
			t.Errorf("headersToDownstreamOnDeny %q lacks %s", h.GetHeadersToDownstreamOnDeny(), want)
		}
	}

	// Strictness: a misspelt field is refused.
	bad := bytes.Replace(text, []byte("headersToUpstreamOnAllow:"), []byte("headersToUpstreamOnAlow:"), 1)
	if _, err := decodeMeshConfig(t, bad); err == nil || !strings.Contains(err.Error(), "headersToUpstreamOnAlow") {
		t.Errorf("a misspelt field was accepted (err %v)", err)
	}
}

func TestIstioAuthorizationPolicy(t *testing.T) {
	text := readIstio(t, "authorization-policy.yaml")
	meta, ap, err := decodeAuthorizationPolicy(t, text)
	if err != nil {
		t.Fatalf("authorization-policy.yaml: %v", err)
	}
	if meta.Name == "" {
		t.Error("no metadata.name")
	}
	if ap.GetAction() != securityv1.AuthorizationPolicy_CUSTOM || ap.GetProvider().GetName() != "keygate-grpc" {
		t.Errorf("action %v provider %q, want CUSTOM keygate-grpc", ap.GetAction(), ap.GetProvider().GetName())
	}
	if len(ap.GetRules()) == 0 {
		t.Error("a CUSTOM policy with no rules matches nothing")
	}
	// Its provider is one the mesh config defines.
	mc, err := decodeMeshConfig(t, readIstio(t, "mesh-config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(mc.GetExtensionProviders(), func(p *meshv1alpha1.MeshConfig_ExtensionProvider) bool {
		return p.GetName() == ap.GetProvider().GetName()
	}) {
		t.Errorf("provider %q is not in mesh-config.yaml", ap.GetProvider().GetName())
	}

	for _, bad := range []struct{ from, to, want string }{
		{"action: CUSTOM", "action: CUSTOM\n  actoin: CUSTOM", "actoin"},
		{"  name: keygate\n", "  name: keygate\n  nmae: x\n", "nmae"},
		{"action: CUSTOM", "action: CUSTUM", "CUSTUM"},
	} {
		broken := bytes.Replace(text, []byte(bad.from), []byte(bad.to), 1)
		if bytes.Equal(broken, text) {
			t.Fatalf("test edit %q not applied", bad.from)
		}
		if _, _, err := decodeAuthorizationPolicy(t, broken); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q accepted (err %v)", bad.want, err)
		}
	}
}
