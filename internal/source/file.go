package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/policy"
)

// DefaultDebounce is how long File waits after the last relevant change
// before it reloads, so that a burst of events (an editor's save, a
// Kubernetes ..data swap) makes one reload.
const DefaultDebounce = 100 * time.Millisecond

// k8sDataLink is the symlink a Kubernetes ConfigMap volume swaps atomically
// on every update; the files the pod sees link through it.
const k8sDataLink = "..data"

// File is the policy source for --policy: one file, or a directory whose
// *.yaml, *.yml and *.json files are fragments of one policy.
//
// It watches the directory (the file's, or the directory itself) rather than
// the file, so that editors' rename-over saves and the ..data symlink swap of
// a mounted ConfigMap are seen. Every reload, whether from a change, Trigger
// or the start of Run, happens on the goroutine that runs Run; content whose
// fingerprint equals what was last published or refused is skipped.
type File struct {
	path     string // as given, used in logs and the snapshot's Source
	dir      string // the directory watched
	base     string // the file's name; "" when path is a directory
	store    *Store
	log      *zap.Logger
	debounce time.Duration
	retry    time.Duration // how often to re-add a lost directory watch
	trigger  chan struct{}

	pub *publisher
}

// FileOption configures a File.
type FileOption func(*File)

// WithDebounce sets how long to wait for a burst of changes to settle
// (default 100ms).
func WithDebounce(d time.Duration) FileOption {
	return func(f *File) {
		if d >= 0 {
			f.debounce = d
		}
	}
}

// NewFile returns a source for path, a policy file or a directory of
// fragments, publishing to store. Whether path is a directory is decided
// here, once.
func NewFile(path string, store *Store, log *zap.Logger, opts ...FileOption) *File {
	if log == nil {
		log = zap.NewNop()
	}
	clean := filepath.Clean(path)
	f := &File{
		path:     path,
		dir:      filepath.Dir(clean),
		base:     filepath.Base(clean),
		store:    store,
		log:      log,
		pub:      &publisher{store: store, log: log},
		debounce: DefaultDebounce,
		retry:    time.Second,
		trigger:  make(chan struct{}, 1),
	}
	if st, err := os.Stat(clean); err == nil && st.IsDir() {
		f.dir, f.base = clean, ""
	}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Load reads, compiles and publishes the policy, whatever was loaded before.
// It is meant for start-up, where the caller treats an error as fatal; the
// error is returned as policy.ReadPath or policy.Load gave it (policy.Errors
// name file and line) and is recorded in the store's status, not logged.
func (f *File) Load() error {
	_, err := f.load(true)
	return err
}

// Trigger asks Run to reload (SIGHUP, an admin request). It never blocks;
// triggers that arrive before Run gets to them are coalesced into one.
func (f *File) Trigger() {
	select {
	case f.trigger <- struct{}{}:
	default:
	}
}

// Run watches the policy until ctx is done and reloads it on relevant
// changes and on Trigger. A reload that fails is refused, counted in the
// store and logged once; the current snapshot keeps serving. Run returns nil
// when ctx is done, or an error if the watch cannot be set up.
func (f *File) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch policy: %w", err)
	}
	defer w.Close()
	if err := w.Add(f.dir); err != nil {
		return fmt.Errorf("watch policy directory %s: %w", f.dir, err)
	}
	// Catch a change made between Load and the watch being in place.
	f.reload()
	f.log.Info("watching policy", zap.String("source", f.path), zap.String("dir", f.dir))

	settle := time.NewTimer(f.debounce)
	settle.Stop()
	var (
		pending      bool
		pendingSince time.Time
		maxWait      = max(10*f.debounce, time.Second)
		retry        *time.Ticker
		retryC       <-chan time.Time
	)
	defer func() {
		settle.Stop()
		if retry != nil {
			retry.Stop()
		}
	}()
	// schedule (re)arms the debounce timer, but never defers a reload more
	// than maxWait past the first change of a burst.
	schedule := func() {
		now := time.Now()
		if !pending {
			pending, pendingSince = true, now
		} else if now.Sub(pendingSince) >= maxWait {
			return
		}
		settle.Reset(f.debounce)
	}
	reloadNow := func() {
		settle.Stop()
		pending = false
		f.reload()
	}

	for {
		select {
		case <-ctx.Done():
			return nil

		case <-f.trigger:
			reloadNow()

		case <-settle.C:
			pending = false
			f.reload()

		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("watch policy: watcher closed")
			}
			if f.isDirGone(ev) {
				// inotify has dropped the watch with the directory.
				_ = w.Remove(f.dir)
				if retry == nil {
					f.log.Warn("policy directory removed; serving the current policy and retrying the watch",
						zap.String("dir", f.dir), zap.String("op", ev.Op.String()), zap.Duration("retry_every", f.retry))
					retry = time.NewTicker(f.retry)
					retryC = retry.C
				}
				continue
			}
			if f.relevant(ev) {
				schedule()
			}

		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watch policy: watcher closed")
			}
			f.log.Warn("policy watch error", zap.String("dir", f.dir), zap.Error(err))
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				schedule() // events were lost; look at the content again
			}

		case <-retryC:
			if err := w.Add(f.dir); err != nil {
				f.log.Debug("policy directory still missing", zap.String("dir", f.dir), zap.Error(err))
				continue
			}
			retry.Stop()
			retry, retryC = nil, nil
			f.log.Info("watching policy directory again", zap.String("dir", f.dir))
			reloadNow()
		}
	}
}

// isDirGone reports whether ev says the watched directory itself was removed
// or moved away.
func (f *File) isDirGone(ev fsnotify.Event) bool {
	return filepath.Clean(ev.Name) == f.dir && ev.Has(fsnotify.Remove|fsnotify.Rename)
}

// relevant reports whether ev can change what policy.ReadPath reads: the
// file itself, a fragment in directory mode, or the ..data link a ConfigMap
// volume swaps. Attribute-only changes are ignored.
func (f *File) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod || ev.Op == 0 {
		return false
	}
	name := filepath.Base(ev.Name)
	switch {
	case name == k8sDataLink:
		return true
	case f.base == "":
		return policy.IsPolicyFile(name)
	default:
		return name == f.base
	}
}

// reload loads changed content and logs a failure, once per distinct
// content. The current snapshot stays in force on failure.
func (f *File) reload() {
	if _, err := f.load(false); err != nil {
		fields := []zap.Field{zap.String("source", f.path)}
		if cur := f.store.Current(); cur != nil {
			fields = append(fields, zap.Uint64("serving_generation", cur.Generation))
		}
		var pe policy.Errors
		if errors.As(err, &pe) {
			fields = append(fields, zap.Int("problems", len(pe)))
		}
		fields = append(fields, zap.Error(err))
		f.log.Error("policy reload refused; keeping the current policy", fields...)
	}
}

// load reads the policy and hands it to the publisher.
func (f *File) load(force bool) (bool, error) {
	inputs, err := policy.ReadPath(f.path)
	return f.pub.publish(f.path, inputs, err, force)
}
