package kubepolicy

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestInputs(t *testing.T) {
	cm := func(name string, data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Data: data}
	}
	in := Inputs([]*corev1.ConfigMap{
		cm("keygate-keys-acme-eu", map[string]string{"policy.yaml": "b", "README": "not policy"}),
		cm("keygate-base", map[string]string{"z.json": "2", "a.yml": "1", "notes.txt": "x"}),
	})
	var got [][2]string
	for _, i := range in {
		got = append(got, [2]string{i.Name, string(i.Data)})
	}
	want := [][2]string{{"ns/keygate-base/a.yml", "1"}, {"ns/keygate-base/z.json", "2"}, {"ns/keygate-keys-acme-eu/policy.yaml", "b"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Inputs = %v, want %v (ConfigMaps by name, keys by name, only policy files)", got, want)
	}
}
