package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"k8s.io/client-go/kubernetes"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/manage"
	"github.com/keygate/keygate/internal/manage/ui"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/session"
	"github.com/keygate/keygate/internal/source"
	"github.com/keygate/keygate/internal/store"
)

// apiFlags are serve's flags for the management API.
type apiFlags struct {
	addr string
}

func (f *apiFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.addr, "api-addr", "", "listen address for the management API (/v1) and the key page; empty disables it (make run serves it on :9004)")
}

// changeStore is where the API writes: the policy file or directory keygate
// serves, or one ConfigMap per organization labelled for the serving
// selector.
func changeStore(policyPath string, k *kubeFlags) (store.Store, error) {
	if k.namespace == "" {
		return store.NewFile(policyPath)
	}
	if k.selector == "" {
		return nil, errors.New("--api-addr with --kube-configmap: the management API writes one ConfigMap per organization, which only a --kube-selector can serve; use --kube-selector LABELS (the ConfigMaps it writes carry those labels)")
	}
	set, err := store.LabelsFromSelector(k.selector)
	if err != nil {
		return nil, fmt.Errorf("--api-addr with --kube-selector %q: %w", k.selector, err)
	}
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	// client-go's default of 5 requests a second would queue simultaneous
	// creates for seconds: each write is a list and an update, maybe again.
	cfg.QPS, cfg.Burst = 50, 100
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	return store.NewConfigMaps(client, k.namespace, set)
}

// apiHandler is the management API and the key page over the policy in
// force.
func apiHandler(cfg *serveConfig, snaps *source.Store, decider *authz.Authorizer, signer *session.Signer, reg prometheus.Registerer, log *zap.Logger) (http.Handler, store.Store, error) {
	st, err := changeStore(cfg.policy, &cfg.kube)
	if err != nil {
		return nil, nil, err
	}
	api, err := manage.New(manage.Config{
		Authorizer: decider,
		Keys:       &keys.Service{Store: st, Policy: func() *policy.Snapshot { return snaps.Current() }},
		Log:        log,
		Registerer: reg,
		Page:       ui.Handler(),
		Signer:     signer,
		Store:      st,
		Sessions:   cfg.sessionStore.manageStore(), // sessionstore.go
	})
	if err != nil {
		return nil, nil, fmt.Errorf("management API: %w", err)
	}
	return api, st, nil
}
