package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/store"
)

// cliTimeout bounds a keys or sessions command that writes: waiting for
// another writer's lock, or for the Kubernetes API server.
const cliTimeout = time.Minute

// cliContext ends at cliTimeout or at Ctrl-C.
func cliContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, cliTimeout)
	return ctx, func() { cancel(); stop() }
}

// keyStore is where the keys commands write: the policy file or directory,
// or ConfigMaps.
type keyStore interface {
	store.Store
	Policy(ctx context.Context) (*policy.Snapshot, error)
	Target(store.Scope) string
}

// storeFlags choose the store: --policy FILE|DIR, or --kube-namespace with
// --kube-selector (the selector keygate serve uses: new keys ConfigMaps get
// its labels).
type storeFlags struct {
	policy string
	kube   kubeFlags
}

func (s *storeFlags) register(c *command, kube bool) {
	c.fs.StringVar(&s.policy, "policy", "", "policy file, or directory (keys go to its managed.yaml), to write to")
	if !kube {
		return
	}
	c.fs.StringVar(&s.kube.namespace, "kube-namespace", "", "write to keygate-keys-* ConfigMaps in this Kubernetes namespace instead of --policy")
	c.fs.StringVar(&s.kube.selector, "kube-selector", "", "with --kube-namespace: the label selector keygate serve reads, e.g. keygate.dev/policy=true; new ConfigMaps get its labels")
	c.fs.StringVar(&s.kube.kubeconfig, "kubeconfig", "", "with --kube-namespace: kubeconfig file (default: the in-cluster service account)")
}

// given reports whether a store was chosen.
func (s *storeFlags) given() bool {
	return s.policy != "" || s.kube.namespace != "" || s.kube.selector != ""
}

// check reports a usage mistake in the store flags.
func (s *storeFlags) check(c *command) error {
	switch {
	case !s.given():
		return c.fail("--policy is required (or --kube-namespace NS --kube-selector LABELS)")
	case s.policy != "" && (s.kube.namespace != "" || s.kube.selector != ""):
		return c.fail("--policy and --kube-namespace/--kube-selector are exclusive: write to a file or to Kubernetes")
	case s.policy == "" && s.kube.namespace == "":
		return c.fail("--kube-selector needs --kube-namespace")
	case s.policy == "" && s.kube.selector == "":
		return c.fail("--kube-namespace needs --kube-selector LABELS, the selector keygate serve reads: keys go to ConfigMaps it selects")
	}
	return nil
}

// where names the policy for messages that concern all of it.
func (s *storeFlags) where() string {
	if s.policy != "" {
		return s.policy
	}
	return "ConfigMaps in " + s.kube.namespace + " labelled " + s.kube.selector
}

func (s *storeFlags) open() (keyStore, error) {
	if s.policy != "" {
		return store.NewFile(s.policy)
	}
	lbls, err := store.LabelsFromSelector(s.kube.selector)
	if err != nil {
		return nil, fmt.Errorf("--kube-selector: %w", err)
	}
	cfg, err := s.kube.restConfig()
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 20, 40 // a write is a list and an update, maybe again
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return store.NewConfigMaps(client, s.kube.namespace, lbls)
}

// service opens the store and the keys service over it, as the operator:
// the policy must load as it is before anything is changed.
func (s *storeFlags) service(ctx context.Context) (*keys.Service, keyStore, error) {
	st, err := s.open()
	if err != nil {
		return nil, nil, err
	}
	snap, err := st.Policy(ctx)
	if err != nil {
		return nil, nil, invalidPolicy(s.where(), err)
	}
	return &keys.Service{Store: st, Policy: func() *policy.Snapshot { return snap }, Now: now}, st, nil
}

// keyScope finds the scope of the API key id in the policy svc serves.
func keyScope(svc *keys.Service, id string) (store.Scope, bool) {
	for _, p := range svc.Policy().APIKeys() {
		if p.ID == id {
			return store.Scope{Tenant: p.Tenant, Org: p.Org}, true
		}
	}
	return store.Scope{}, false
}
