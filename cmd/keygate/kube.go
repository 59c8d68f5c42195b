package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"go.uber.org/zap"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keygate/keygate/internal/source"
)

// kubeFlags are serve's flags for the Kubernetes policy source.
type kubeFlags struct {
	namespace   string
	configMap   string
	selector    string
	kubeconfig  string
	syncTimeout time.Duration
}

func (k *kubeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.namespace, "kube-namespace", "", "serve the policy from ConfigMaps in this Kubernetes namespace (instead of --policy)")
	fs.StringVar(&k.configMap, "kube-configmap", "", "with --kube-namespace: the one ConfigMap holding the policy")
	fs.StringVar(&k.selector, "kube-selector", "", "with --kube-namespace: a label selector for the ConfigMaps holding policy fragments, e.g. keygate.dev/policy=true")
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file for the Kubernetes source when running outside a cluster (default: the in-cluster service account)")
	fs.DurationVar(&k.syncTimeout, "kube-sync-timeout", source.DefaultKubeSyncTimeout, "how long to wait at start for the Kubernetes API server to list the policy ConfigMaps")
}

// checkPolicySource says which source the flags choose: exactly one of
// --policy and --kube-namespace, and with the latter exactly one of
// --kube-configmap and --kube-selector.
func (k *kubeFlags) checkPolicySource(policyPath string) error {
	kubeOnly := k.configMap != "" || k.selector != ""
	switch {
	case policyPath != "" && (k.namespace != "" || kubeOnly):
		return errors.New("--policy and --kube-namespace/--kube-configmap/--kube-selector are exclusive: serve from a file or from Kubernetes")
	case policyPath == "" && k.namespace == "" && kubeOnly:
		return errors.New("--kube-configmap and --kube-selector need --kube-namespace")
	case policyPath == "" && k.namespace == "":
		return errors.New("a policy source is required: --policy FILE|DIR (or KEYGATE_POLICY), or --kube-namespace NS with --kube-configmap NAME or --kube-selector LABELS")
	case policyPath != "":
		return nil
	case (k.configMap == "") == (k.selector == ""):
		return errors.New("with --kube-namespace give exactly one of --kube-configmap NAME or --kube-selector LABELS")
	}
	if errs := validation.IsDNS1123Label(k.namespace); len(errs) > 0 {
		return fmt.Errorf("--kube-namespace %q: %s", k.namespace, errs[0])
	}
	if k.configMap != "" {
		if errs := validation.IsDNS1123Subdomain(k.configMap); len(errs) > 0 {
			return fmt.Errorf("--kube-configmap %q: %s", k.configMap, errs[0])
		}
	}
	if k.selector != "" {
		if _, err := labels.Parse(k.selector); err != nil {
			return fmt.Errorf("--kube-selector %q: %w", k.selector, err)
		}
	}
	return nil
}

// policySource is what serve runs after the first load: the file source or
// the Kubernetes source.
type policySource interface {
	Run(ctx context.Context) error
	Trigger()
}

// openPolicySource makes the source the flags choose and loads the first
// snapshot into store; an error is fatal.
func openPolicySource(policyPath string, k *kubeFlags, store *source.Store, log *zap.Logger) (policySource, error) {
	if k.namespace == "" {
		file := source.NewFile(policyPath, store, log)
		if err := file.Load(); err != nil {
			return nil, fmt.Errorf("load policy: %w", err)
		}
		return file, nil
	}
	cfg, err := k.restConfig()
	if err != nil {
		return nil, err
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kubernetes client: %w", err)
	}
	kube, err := source.NewKube(source.KubeConfig{
		Client:      client,
		Namespace:   k.namespace,
		ConfigMap:   k.configMap,
		Selector:    k.selector,
		SyncTimeout: k.syncTimeout,
		Server:      cfg.Host,
	}, store, log)
	if err != nil {
		return nil, err
	}
	log.Info("loading policy from kubernetes", zap.String("source", kube.Describe()), zap.String("server", cfg.Host))
	if err := kube.Load(context.Background()); err != nil {
		return nil, fmt.Errorf("load policy from kubernetes: %w", err)
	}
	return kube, nil
}

// restConfig is the in-cluster configuration (the pod's service account),
// or --kubeconfig's current context.
func (k *kubeFlags) restConfig() (*rest.Config, error) {
	var (
		cfg *rest.Config
		err error
	)
	if k.kubeconfig == "" {
		cfg, err = rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("kubernetes in-cluster config: %w (outside a cluster, pass --kubeconfig)", err)
		}
	} else {
		cfg, err = clientcmd.BuildConfigFromFlags("", k.kubeconfig)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", k.kubeconfig, err)
		}
	}
	cfg.UserAgent = "keygate/" + version
	return cfg, nil
}

// sourceKind is the source label of reload metrics: "file" or "kubernetes".
func (k *kubeFlags) sourceKind() string {
	if k.namespace != "" {
		return "kubernetes"
	}
	return "file"
}
