// Package kubepolicy is how a set of ConfigMaps reads as policy fragments:
// the one rule that the Kubernetes source (which serves them) and the
// ConfigMap store (which writes them and validates the whole before it
// does) must share, or a write could pass validation and fail to serve.
package kubepolicy

import (
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/keygate/keygate/internal/policy"
)

// Inputs returns the policy keys (*.yaml, *.yml, *.json) of the ConfigMaps,
// ConfigMaps in name order and keys in key order, as fragments named
// NAMESPACE/CONFIGMAP/KEY. It sorts cms by name.
func Inputs(cms []*corev1.ConfigMap) []policy.Input {
	slices.SortFunc(cms, func(a, b *corev1.ConfigMap) int { return strings.Compare(a.Name, b.Name) })
	var inputs []policy.Input
	for _, cm := range cms {
		keys := make([]string, 0, len(cm.Data))
		for key := range cm.Data {
			if policy.IsPolicyFile(key) {
				keys = append(keys, key)
			}
		}
		slices.Sort(keys)
		for _, key := range keys {
			inputs = append(inputs, policy.Input{Name: FragmentName(cm.Namespace, cm.Name, key), Data: []byte(cm.Data[key])})
		}
	}
	return inputs
}

// FragmentName names the fragment of a ConfigMap's key in errors and logs.
func FragmentName(namespace, configMap, key string) string {
	return namespace + "/" + configMap + "/" + key
}
