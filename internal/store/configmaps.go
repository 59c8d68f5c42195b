package store

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"

	"github.com/keygate/keygate/internal/kubepolicy"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/policyedit"
)

// DataKey is the data key of a keys ConfigMap that holds its fragment.
const DataKey = "policy.yaml"

// Annotations on the ConfigMaps the store creates: whose keys they hold.
// A ConfigMap whose annotations name another scope is never written (two
// scopes whose names map to one ConfigMap name).
const (
	AnnotationTenant = "keygate.dev/tenant"
	AnnotationOrg    = "keygate.dev/org"
)

// maxAttempts bounds how often one change is tried again after another
// writer changed the ConfigMap first.
const maxAttempts = 50

// ConfigMaps writes each scope's keys to its own ConfigMap in one namespace:
// keygate-keys-ORG for an organization's keys, keygate-keys-tenant-TENANT
// for a tenant's tenant-level keys (ConfigMapName), under DataKey. It
// creates a missing ConfigMap with the labels the serving selector matches,
// so every replica's Kubernetes source reads it, and updates it with the
// resourceVersion it read: of two writers, one wins and the other runs its
// change again on the new state. The rest of the policy is every other
// ConfigMap the labels select, read in the same list. What a change decides
// holds against every writer of the scope's ConfigMap; a person adding keys
// of the organization to another ConfigMap at the same moment is not
// serialized with it (the serving compiler would then refuse the merged
// policy, and the last good one keeps serving).
type ConfigMaps struct {
	client    kubernetes.Interface
	namespace string
	labels    map[string]string
	selector  labels.Selector
}

// NewConfigMaps returns the store for namespace; labels are stamped on the
// ConfigMaps it creates and select the ConfigMaps of the policy, as the
// serving --kube-selector does (LabelsFromSelector). Give it a client whose
// rate limit allows bursts (client-go's default of 5 requests a second
// queues 20 simultaneous creates for seconds). Without labels keygate
// serves one ConfigMap by name (--kube-configmap), which the keys of other
// ConfigMaps would never reach: that is refused.
func NewConfigMaps(client kubernetes.Interface, namespace string, lbls map[string]string) (*ConfigMaps, error) {
	switch {
	case client == nil:
		return nil, errors.New("ConfigMap store: no Kubernetes client")
	case namespace == "":
		return nil, errors.New("ConfigMap store: a namespace is required")
	case len(lbls) == 0:
		return nil, errors.New("ConfigMap store: keys are written to one ConfigMap per organization, which only a label selector serves: " +
			"serve with --kube-selector LABELS, not --kube-configmap NAME")
	}
	for k, v := range lbls {
		if errs := validation.IsQualifiedName(k); len(errs) > 0 {
			return nil, fmt.Errorf("ConfigMap store: label %q: %s", k, errs[0])
		}
		if errs := validation.IsValidLabelValue(v); len(errs) > 0 {
			return nil, fmt.Errorf("ConfigMap store: label %s=%q: %s", k, v, errs[0])
		}
	}
	return &ConfigMaps{client: client, namespace: namespace, labels: lbls, selector: labels.SelectorFromSet(lbls)}, nil
}

// LabelsFromSelector reads the labels of an equality selector such as
// keygate.dev/policy=true: the labels a new keys ConfigMap must carry to be
// selected. A set-based selector (in, notin, !key) names no such labels.
func LabelsFromSelector(selector string) (map[string]string, error) {
	sel, err := labels.Parse(selector)
	if err != nil {
		return nil, fmt.Errorf("label selector %q: %w", selector, err)
	}
	reqs, _ := sel.Requirements()
	out := map[string]string{}
	for _, r := range reqs {
		vals := r.Values().UnsortedList()
		switch {
		case (r.Operator() == selection.Equals || r.Operator() == selection.DoubleEquals || r.Operator() == selection.In) && len(vals) == 1:
			out[r.Key()] = vals[0]
		default:
			return nil, fmt.Errorf("label selector %q: keygate writes keys to ConfigMaps it labels to match the selector, "+
				"so the selector must be labels that equal values, such as keygate.dev/policy=true (not %q)", selector, r.String())
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("label selector %q selects no labels", selector)
	}
	return out, nil
}

// ConfigMapName is the ConfigMap of a scope's keys. Names the Kubernetes
// rules refuse (upper case, '_', too long) are made lower case, '_' becomes
// '-', and a digest of the original is appended so two scopes stay apart.
func ConfigMapName(scope Scope) string {
	name, base := scope.Org, "keygate-keys-"
	if name == "" {
		name, base = scope.Tenant, "keygate-keys-tenant-"
	}
	full := base + name
	if len(validation.IsDNS1123Subdomain(full)) == 0 {
		return full
	}
	sum := sha256.Sum256([]byte(name))
	clean := strings.Trim(strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '.':
			return r
		case r >= 'A' && r <= 'Z':
			return r + 'a' - 'A'
		}
		return '-'
	}, name), "-.")
	suffix := "-" + hex.EncodeToString(sum[:5])
	clean = strings.TrimRight(clean[:min(len(clean), validation.DNS1123SubdomainMaxLength-len(base)-len(suffix))], "-.")
	return base + clean + suffix
}

// String says where changes go.
func (c *ConfigMaps) String() string {
	return fmt.Sprintf("ConfigMaps keygate-keys-* in namespace %s labelled %s", c.namespace, c.selector)
}

// Target is the ConfigMap of the scope, namespace/name.
func (c *ConfigMaps) Target(scope Scope) string {
	return "ConfigMap " + c.namespace + "/" + ConfigMapName(scope)
}

// Policy loads the whole policy the selected ConfigMaps hold now.
func (c *ConfigMaps) Policy(ctx context.Context) (*policy.Snapshot, error) {
	cms, err := c.list(ctx)
	if err != nil {
		return nil, err
	}
	inputs := fragments(cms)
	if len(inputs) == 0 {
		return nil, fmt.Errorf("no policy ConfigMaps match label selector %s in namespace %s", c.selector, c.namespace)
	}
	return policy.Load(inputs, policy.Options{Source: c.String()})
}

func (c *ConfigMaps) list(ctx context.Context) ([]corev1.ConfigMap, error) {
	l, err := c.client.CoreV1().ConfigMaps(c.namespace).List(ctx, metav1.ListOptions{LabelSelector: c.selector.String()})
	if err != nil {
		return nil, fmt.Errorf("list ConfigMaps in %s labelled %s: %w", c.namespace, c.selector, err)
	}
	slices.SortFunc(l.Items, func(a, b corev1.ConfigMap) int { return strings.Compare(a.Name, b.Name) })
	return l.Items, nil
}

// fragments are the ConfigMaps read as the Kubernetes source reads them.
func fragments(cms []corev1.ConfigMap) []policy.Input {
	ptrs := make([]*corev1.ConfigMap, len(cms))
	for i := range cms {
		ptrs[i] = &cms[i]
	}
	return kubepolicy.Inputs(ptrs)
}

// errRetry asks Update to read again: another writer got there first.
var errRetry = errors.New("the ConfigMap changed")

// Update runs change on the scope's ConfigMap as it is now and writes the
// result with the resourceVersion it read, running change again if another
// writer changed the ConfigMap first.
func (c *ConfigMaps) Update(ctx context.Context, scope Scope, change func(tx *Tx) error) error {
	name := ConfigMapName(scope)
	wait := 5 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := c.try(ctx, scope, name, change)
		if !errors.Is(err, errRetry) {
			return err
		}
		if attempt == maxAttempts {
			return fmt.Errorf("ConfigMap %s/%s: gave up after %d writers in a row changed it first", c.namespace, name, attempt)
		}
		// Spread the writers that lost this round over the next ones.
		t := time.NewTimer(rand.N(wait) + time.Millisecond)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("ConfigMap %s/%s: %w", c.namespace, name, ctx.Err())
		}
		wait = min(2*wait, 200*time.Millisecond)
	}
}

func (c *ConfigMaps) try(ctx context.Context, scope Scope, name string, change func(tx *Tx) error) error {
	cms, err := c.list(ctx)
	if err != nil {
		return err
	}
	var cur *corev1.ConfigMap
	for i := range cms {
		if cms[i].Name == name {
			cur = &cms[i]
		}
	}
	api := c.client.CoreV1().ConfigMaps(c.namespace)
	if cur != nil {
		if t, o := cur.Annotations[AnnotationTenant], cur.Annotations[AnnotationOrg]; (t != "" || o != "") && (t != scope.Tenant || o != scope.Org) {
			return fmt.Errorf("ConfigMap %s/%s holds the keys of tenant %q organization %q, not of tenant %q organization %q",
				c.namespace, name, t, o, scope.Tenant, scope.Org)
		}
	}

	fragName := kubepolicy.FragmentName(c.namespace, name, DataKey)
	orig := []byte(newManaged)
	if cur != nil {
		if d, ok := cur.Data[DataKey]; ok {
			orig = []byte(d)
		}
	}
	tx := &Tx{Doc: policyedit.New(fragName, orig)}
	inputs := fragments(cms)
	for _, in := range inputs {
		if in.Name == fragName {
			continue
		}
		f, err := policy.Parse(in.Name, in.Data)
		if err != nil {
			return policyedit.Invalid(in.Name, true, err)
		}
		tx.Others = append(tx.Others, f.Doc.APIKeys...)
	}
	if err := run(change, tx, fragName); err != nil {
		return err
	}
	out := tx.Doc.Bytes()
	if bytes.Equal(out, orig) {
		return nil
	}
	// The fragment goes where the source will read it: in ConfigMap name
	// order, then key order.
	edited := withFragment(inputs, policy.Input{Name: fragName, Data: out})
	if _, err := policy.Load(edited, policy.Options{Source: c.String()}); err != nil {
		before := len(inputs) == 0
		if !before {
			_, err := policy.Load(inputs, policy.Options{Source: c.String()})
			before = err != nil
		}
		return policyedit.Invalid(fragName, before, err)
	}

	if cur == nil {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{
				Name: name, Namespace: c.namespace, Labels: c.labels,
				Annotations: map[string]string{AnnotationTenant: scope.Tenant, AnnotationOrg: scope.Org},
			},
			Data: map[string]string{DataKey: string(out)},
		}
		_, err := api.Create(ctx, cm, metav1.CreateOptions{FieldManager: "keygate"})
		switch {
		case apierrors.IsAlreadyExists(err):
			// Another writer made it since the list, or it exists without
			// the labels, and then no replica would read what is written
			// to it.
			if got, err := api.Get(ctx, name, metav1.GetOptions{}); err == nil && !c.selector.Matches(labels.Set(got.Labels)) {
				return fmt.Errorf("ConfigMap %s/%s exists but is not labelled %s, so keygate does not serve it: label it, or delete it", c.namespace, name, c.selector)
			}
			return errRetry
		case err != nil:
			return fmt.Errorf("create ConfigMap %s/%s: %w", c.namespace, name, err)
		}
		return nil
	}
	cm := cur.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	cm.Data[DataKey] = string(out)
	_, err = api.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "keygate"})
	switch {
	case apierrors.IsConflict(err), apierrors.IsNotFound(err): // changed or deleted since the list
		return errRetry
	case err != nil:
		return fmt.Errorf("update ConfigMap %s/%s: %w", c.namespace, name, err)
	}
	return nil
}
