package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/keygate/keygate/internal/kubepolicy"
	"github.com/keygate/keygate/internal/policy"
)

// Defaults for KubeConfig fields left zero.
const (
	DefaultKubeDebounce    = 50 * time.Millisecond
	DefaultKubeSyncTimeout = 30 * time.Second
)

// KubeConfig says which ConfigMaps hold the policy. Exactly one of ConfigMap
// and Selector is set.
type KubeConfig struct {
	Client    kubernetes.Interface
	Namespace string
	ConfigMap string // one ConfigMap, by name
	Selector  string // every ConfigMap whose labels match, e.g. keygate.dev/policy=true
	// Resync replays the informer's cache as updates this often (0: never).
	// Unchanged content is skipped, so it only costs a fingerprint.
	Resync time.Duration
	// SyncTimeout bounds how long Load waits for the first list from the API
	// server (default 30s). Failures to reach it are retried until then.
	SyncTimeout time.Duration
	// Debounce is how long a burst of changes may settle before one reload
	// (default 50ms).
	Debounce time.Duration
	// Server names the API server in error messages (optional).
	Server string
}

// Kube is the policy source for --kube-namespace: the ConfigMaps chosen by
// name or label selector in one namespace, watched through the API with a
// client-go informer (nothing polls) and merged into one policy.
//
// Every data key ending in .yaml, .yml or .json is a fragment named
// NAMESPACE/CONFIGMAP/KEY; fragments merge in ConfigMap name order, then key
// order, so a duplicate across fragments is reported naming both. Every
// reload happens on the goroutine that runs Run; content whose fingerprint
// equals what was last published or refused is skipped. A state that does not
// compile, and a state with no ConfigMap left, is refused: the last good
// snapshot keeps serving.
type Kube struct {
	cfg      KubeConfig
	sel      labels.Selector // matches what the informer lists; Everything for a name
	desc     string
	store    *Store
	log      *zap.Logger
	factory  informers.SharedInformerFactory
	informer cache.SharedIndexInformer
	lister   corelisters.ConfigMapLister

	changed chan struct{} // informer events, debounced by Run
	trigger chan struct{} // Trigger: reload now
	denied  chan error    // the API server refused us (RBAC, credentials)
	stop    chan struct{} // stops the informer
	stopped sync.Once

	errMu   sync.Mutex
	lastErr error // the last list/watch error, for Load's timeout message

	pub *publisher
}

// NewKube returns a source for cfg publishing to store. Nothing talks to the
// API server before Load.
func NewKube(cfg KubeConfig, store *Store, log *zap.Logger) (*Kube, error) {
	if log == nil {
		log = zap.NewNop()
	}
	switch {
	case cfg.Client == nil:
		return nil, errors.New("kubernetes source: no client")
	case cfg.Namespace == "":
		return nil, errors.New("kubernetes source: a namespace is required")
	case (cfg.ConfigMap == "") == (cfg.Selector == ""):
		return nil, errors.New("kubernetes source: give exactly one of a ConfigMap name or a label selector")
	}
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = DefaultKubeSyncTimeout
	}
	if cfg.Debounce <= 0 {
		cfg.Debounce = DefaultKubeDebounce
	}
	k := &Kube{
		cfg:     cfg,
		sel:     labels.Everything(),
		store:   store,
		log:     log,
		pub:     &publisher{store: store, log: log},
		changed: make(chan struct{}, 1),
		trigger: make(chan struct{}, 1),
		denied:  make(chan error, 1),
		stop:    make(chan struct{}),
	}
	var tweak func(*metav1.ListOptions)
	if cfg.ConfigMap != "" {
		name := fields.OneTermEqualSelector("metadata.name", cfg.ConfigMap).String()
		tweak = func(o *metav1.ListOptions) { o.FieldSelector = name }
		k.desc = fmt.Sprintf("configmap %s/%s", cfg.Namespace, cfg.ConfigMap)
	} else {
		sel, err := labels.Parse(cfg.Selector)
		if err != nil {
			return nil, fmt.Errorf("label selector %q: %w", cfg.Selector, err)
		}
		k.sel = sel
		tweak = func(o *metav1.ListOptions) { o.LabelSelector = sel.String() }
		k.desc = fmt.Sprintf("configmaps in %s with labels %s", cfg.Namespace, sel)
	}
	k.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Client, cfg.Resync,
		informers.WithNamespace(cfg.Namespace), informers.WithTweakListOptions(tweak))
	cms := k.factory.Core().V1().ConfigMaps()
	k.informer, k.lister = cms.Informer(), cms.Lister()
	if err := k.informer.SetWatchErrorHandler(k.watchError); err != nil {
		return nil, err
	}
	_, err := k.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(any) { k.notify() },
		UpdateFunc: func(oldObj, newObj any) {
			o, ok1 := oldObj.(*corev1.ConfigMap)
			n, ok2 := newObj.(*corev1.ConfigMap)
			if ok1 && ok2 && o.ResourceVersion == n.ResourceVersion {
				return // a resync: nothing changed
			}
			k.notify()
		},
		DeleteFunc: func(any) { k.notify() },
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// Describe names what the source reads, as in logs and the snapshot's Source.
func (k *Kube) Describe() string { return k.desc }

// Load starts the informer, waits for its first list (retrying an API server
// it cannot reach for up to SyncTimeout) and publishes the first snapshot.
// An error is for the caller to treat as fatal: the API server could not be
// reached, refused us (the message is the server's, e.g. "configmaps is
// forbidden: User ... cannot list ..."), no ConfigMap matched, or the policy
// does not compile. After an error the informer is stopped.
func (k *Kube) Load(ctx context.Context) error {
	if err := k.sync(ctx); err != nil {
		k.shutdown()
		return err
	}
	if _, err := k.load(true); err != nil {
		k.shutdown()
		return err
	}
	return nil
}

func (k *Kube) sync(ctx context.Context) error {
	k.factory.Start(k.stop)
	ctx, cancel := context.WithTimeout(ctx, k.cfg.SyncTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !k.informer.HasSynced() {
		select {
		case err := <-k.denied:
			return err
		case <-ctx.Done():
			where := "the Kubernetes API server"
			if k.cfg.Server != "" {
				where += " at " + k.cfg.Server
			}
			if err := k.lastError(); err != nil {
				return fmt.Errorf("no list of %s from %s within %s: %w", k.desc, where, k.cfg.SyncTimeout, err)
			}
			return fmt.Errorf("no list of %s from %s within %s", k.desc, where, k.cfg.SyncTimeout)
		case <-tick.C:
		}
	}
	return nil
}

// Trigger asks Run to reload now (SIGHUP, an admin request). It never blocks.
func (k *Kube) Trigger() { poke(k.trigger) }

func (k *Kube) notify() { poke(k.changed) }

func poke(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Run reloads the policy on every change the informer sees, and on Trigger,
// until ctx is done; then it stops the informer and returns nil. Call it
// after a successful Load. A reload that fails is refused, counted in the
// store and logged once; the current snapshot keeps serving.
func (k *Kube) Run(ctx context.Context) error {
	defer k.shutdown()
	k.log.Info("watching policy", zap.String("source", k.desc))
	k.reload() // a change between Load and now

	settle := time.NewTimer(k.cfg.Debounce)
	settle.Stop()
	defer settle.Stop()
	var (
		pending      bool
		pendingSince time.Time
		maxWait      = max(10*k.cfg.Debounce, time.Second)
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-k.trigger:
			settle.Stop()
			pending = false
			k.reload()
		case <-k.changed:
			// Wait for the burst to settle, but never more than maxWait past
			// its first change.
			now := time.Now()
			if !pending {
				pending, pendingSince = true, now
			} else if now.Sub(pendingSince) >= maxWait {
				continue
			}
			settle.Reset(k.cfg.Debounce)
		case <-settle.C:
			pending = false
			k.reload()
		}
	}
}

func (k *Kube) shutdown() {
	k.stopped.Do(func() {
		close(k.stop)
		k.factory.Shutdown()
	})
}

// watchError records a failed list or watch; the informer backs off and
// retries. Before the first sync a refusal (RBAC, credentials) ends Load.
func (k *Kube) watchError(_ *cache.Reflector, err error) {
	if errors.Is(err, io.EOF) || apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
		return // the watch ended normally; the informer resumes it
	}
	err = explainAPIError(err, k.cfg.Server)
	k.errMu.Lock()
	k.lastErr = err
	k.errMu.Unlock()
	if apierrors.IsForbidden(err) || apierrors.IsUnauthorized(err) {
		select {
		case k.denied <- err:
		default:
		}
		if k.informer.HasSynced() {
			k.log.Error("kubernetes API refused the ConfigMap watch; serving the current policy and retrying",
				zap.String("source", k.desc), zap.Error(err))
		}
		return
	}
	k.log.Warn("kubernetes ConfigMap watch failed; serving the current policy and retrying",
		zap.String("source", k.desc), zap.Error(err))
}

func (k *Kube) lastError() error {
	k.errMu.Lock()
	defer k.errMu.Unlock()
	return k.lastErr
}

// explainAPIError turns client-go's list and watch errors into one line that
// says what went wrong: the API server's own message when it answered (as
// "configmaps is forbidden: User ... cannot list ..."), or that it could not
// be reached.
func explainAPIError(err error, server string) error {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		if se, ok := status.(error); ok {
			return se
		}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		if server == "" {
			if u, perr := url.Parse(ue.URL); perr == nil {
				server = u.Scheme + "://" + u.Host
			}
		}
		return fmt.Errorf("cannot reach the Kubernetes API server at %s: %w", server, ue.Err)
	}
	return err
}

// reload loads changed content and logs a refusal once per distinct content.
func (k *Kube) reload() {
	if _, err := k.load(false); err != nil {
		fields := []zap.Field{zap.String("source", k.desc)}
		if cur := k.store.Current(); cur != nil {
			fields = append(fields, zap.Uint64("serving_generation", cur.Generation))
		}
		var pe policy.Errors
		if errors.As(err, &pe) {
			fields = append(fields, zap.Int("problems", len(pe)))
		}
		fields = append(fields, zap.Error(err))
		k.log.Error("policy reload refused; keeping the current policy", fields...)
	}
}

// load merges the ConfigMaps in the informer's cache and hands them to the
// publisher.
func (k *Kube) load(force bool) (bool, error) {
	inputs, names, err := k.inputs()
	return k.pub.publish(k.desc, inputs, err, force,
		zap.Strings("configmaps", names), zap.Int("fragments", len(inputs)))
}

// inputs lists the selected ConfigMaps from the informer's cache, in name
// order, and returns their policy keys, in key order, as fragments named
// NAMESPACE/CONFIGMAP/KEY, with the ConfigMaps' names.
func (k *Kube) inputs() ([]policy.Input, []string, error) {
	all, err := k.lister.ConfigMaps(k.cfg.Namespace).List(k.sel)
	if err != nil {
		return nil, nil, fmt.Errorf("list %s: %w", k.desc, err)
	}
	cms := all[:0:0]
	for _, cm := range all {
		if k.cfg.ConfigMap == "" || cm.Name == k.cfg.ConfigMap {
			cms = append(cms, cm)
		}
	}
	if len(cms) == 0 {
		if k.cfg.ConfigMap != "" {
			return nil, nil, fmt.Errorf("no policy ConfigMaps match: configmap %s/%s not found", k.cfg.Namespace, k.cfg.ConfigMap)
		}
		return nil, nil, fmt.Errorf("no policy ConfigMaps match label selector %s in namespace %s", k.sel, k.cfg.Namespace)
	}
	inputs := kubepolicy.Inputs(cms)
	names := make([]string, 0, len(cms))
	for _, cm := range cms {
		names = append(names, cm.Name)
	}
	if len(inputs) == 0 {
		return nil, nil, fmt.Errorf("no policy keys (*.yaml, *.yml, *.json) in %s: ConfigMaps %s",
			k.desc, strings.Join(names, ", "))
	}
	return inputs, names, nil
}
