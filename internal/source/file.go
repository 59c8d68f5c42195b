package source

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/policy"
)

// DefaultDebounce is how long File waits after the last relevant change
// before it reloads, so that a burst of events (an editor's save, a
// Kubernetes ..data swap) makes one reload.
const DefaultDebounce = 100 * time.Millisecond

// DefaultSettle is how long a file written in place must then stay
// unchanged before it is published. A writer may pause part-way through an
// in-place write, and the part written so far can be a valid policy (one
// that lacks a revocation further down): keygate cannot tell that pause from
// the end of the write, so it waits this long for more. It is the longest
// pause covered, and what an in-place save costs in reload time; a file
// renamed into place (an editor's atomic save, the ..data swap) is complete
// when it appears and reloads after the debounce alone.
const DefaultSettle = 2 * time.Second

// DefaultReadTimeout bounds one read of the policy. A read that has not
// returned by then (a hung network filesystem) refuses the reload, and no
// new read starts until it returns, so one stuck read never holds up the
// watch, SIGHUP or shutdown.
const DefaultReadTimeout = 30 * time.Second

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
// fingerprint equals what was last published or refused is skipped. Content
// written in place is published only once it has stayed the same for
// DefaultSettle (see there).
type File struct {
	path     string // as given, used in logs and the snapshot's Source
	dir      string // the directory watched
	base     string // the file's name; "" when path is a directory
	store    *Store
	log      *zap.Logger
	debounce time.Duration
	settle   time.Duration // how long in-place writes must stay unchanged
	retry    time.Duration // how often to re-add a lost directory watch
	trigger  chan struct{}

	// read is policy.OpenFile or policy.OpenDir, chosen once by NewFile: a
	// path that changes kind later is refused, not read the other way.
	// What it returns is closed (policy.CloseInputs) once loaded or skipped.
	read        func() ([]policy.Input, error)
	readTimeout time.Duration
	reading     atomic.Bool // a read is in flight, perhaps stuck

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
		path:        path,
		dir:         filepath.Dir(clean),
		base:        filepath.Base(clean),
		store:       store,
		log:         log,
		pub:         &publisher{store: store, log: log},
		debounce:    DefaultDebounce,
		settle:      DefaultSettle,
		retry:       time.Second,
		trigger:     make(chan struct{}, 1),
		read:        func() ([]policy.Input, error) { return policy.OpenFile(path) },
		readTimeout: DefaultReadTimeout,
	}
	if st, err := os.Stat(clean); err == nil && st.IsDir() {
		f.dir, f.base = clean, ""
		f.read = func() ([]policy.Input, error) { return policy.OpenDir(path) }
	}
	for _, o := range opts {
		o(f)
	}
	return f
}

// Load reads, compiles and publishes the policy, whatever was loaded before.
// It is meant for start-up, where the caller treats an error as fatal; the
// error is returned as policy.OpenFile, OpenDir or Load gave it
// (policy.Errors name file and line) and is recorded in the store's status,
// not logged.
func (f *File) Load() error {
	inputs, sum, err := f.readBounded(context.Background())
	defer policy.CloseInputs(inputs)
	_, err = f.pub.publishSum(f.path, inputs, &sum, err, true)
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
// when ctx is done, even with a read stuck, or an error if the watch cannot
// be set up.
//
// A burst of changes that only renames, creates or removes files is loaded
// once it has been quiet for the debounce (at most about a second after it
// began, however long it goes on). A burst that writes a file in place (or
// whose events were lost) may have been read half-written: its content is
// read when the burst goes quiet and published only if a second read, after
// DefaultSettle with no change in between, finds the same content.
func (f *File) Run(ctx context.Context) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch policy: %w", err)
	}
	defer w.Close()
	if err := w.Add(f.dir); err != nil {
		return fmt.Errorf("watch policy directory %s: %w", f.dir, err)
	}
	debounce := time.NewTimer(f.debounce)
	debounce.Stop()
	confirm := time.NewTimer(f.settle)
	confirm.Stop()
	var (
		pending      bool // a burst is being debounced
		pendingSince time.Time
		inPlace      bool // the burst wrote in place: its content must settle
		settling     bool // confirm is armed to compare against sample
		sample       *[32]byte
		maxWait      = max(10*f.debounce, time.Second)
		retry        *time.Ticker
		retryC       <-chan time.Time
	)
	defer func() {
		debounce.Stop()
		confirm.Stop()
		if retry != nil {
			retry.Stop()
		}
	}()
	// look reads the content and, unless it is what is in force already,
	// keeps its fingerprint to compare with a read after f.settle.
	look := func() {
		inputs, sum, err := f.readBounded(ctx)
		defer policy.CloseInputs(inputs)
		if ctx.Err() != nil {
			return
		}
		sample = nil
		if err == nil {
			if f.pub.isLast(sum) {
				f.publish(inputs, &sum, nil) // logs "policy unchanged"
				return
			}
			sample = &sum
		}
		f.log.Debug("policy changed in place; waiting for it to settle",
			zap.String("source", f.path), zap.Duration("settle", f.settle))
		settling = true
		confirm.Reset(f.settle)
	}
	// schedule (re)arms the debounce timer for a change. A burst of atomic
	// changes is never deferred more than maxWait past its first change;
	// one that writes in place waits until it is quiet, and a change while
	// content is settling starts the wait over.
	schedule := func(writes bool) {
		if settling {
			confirm.Stop()
			settling, sample, writes = false, nil, true
		}
		inPlace = inPlace || writes
		now := time.Now()
		if !pending {
			pending, pendingSince = true, now
		} else if !inPlace && now.Sub(pendingSince) >= maxWait {
			return
		}
		debounce.Reset(f.debounce)
	}
	reloadNow := func() {
		debounce.Stop()
		confirm.Stop()
		pending, inPlace, settling, sample = false, false, false, nil
		f.reload(ctx)
	}

	// Catch a change made between Load and the watch being in place: it was
	// not seen happening, so it settles like an in-place write.
	look()
	f.log.Info("watching policy", zap.String("source", f.path), zap.String("dir", f.dir))

	for {
		select {
		case <-ctx.Done():
			return nil

		case <-f.trigger:
			// SIGHUP or an admin: reload what is there now.
			reloadNow()

		case <-debounce.C:
			pending = false
			if inPlace {
				inPlace = false
				look()
				continue
			}
			f.reload(ctx)

		case <-confirm.C:
			settling = false
			inputs, sum, err := f.readBounded(ctx)
			if ctx.Err() != nil {
				policy.CloseInputs(inputs)
				return nil
			}
			if err != nil {
				sample = nil
				f.publish(nil, nil, err)
				continue
			}
			if sample == nil || sum != *sample {
				// Changed with no event seen (or unreadable before): settle again.
				policy.CloseInputs(inputs)
				sample, settling = &sum, true
				confirm.Reset(f.settle)
				continue
			}
			sample = nil
			f.publish(inputs, &sum, nil)
			policy.CloseInputs(inputs)

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
				schedule(ev.Has(fsnotify.Write))
			}

		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("watch policy: watcher closed")
			}
			f.log.Warn("policy watch error", zap.String("dir", f.dir), zap.Error(err))
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				schedule(true) // events were lost; look at the content again
			}

		case <-retryC:
			if err := w.Add(f.dir); err != nil {
				f.log.Debug("policy directory still missing", zap.String("dir", f.dir), zap.Error(err))
				continue
			}
			retry.Stop()
			retry, retryC = nil, nil
			f.log.Info("watching policy directory again", zap.String("dir", f.dir))
			// What was written while unwatched settles like an in-place write.
			schedule(true)
		}
	}
}

// isDirGone reports whether ev says the watched directory itself was removed
// or moved away.
func (f *File) isDirGone(ev fsnotify.Event) bool {
	return filepath.Clean(ev.Name) == f.dir && ev.Has(fsnotify.Remove|fsnotify.Rename)
}

// relevant reports whether ev can change what f.read reads: the
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
// content. The current snapshot stays in force on failure; nothing is
// recorded when ctx ended the read.
func (f *File) reload(ctx context.Context) {
	inputs, sum, err := f.readBounded(ctx)
	defer policy.CloseInputs(inputs)
	if ctx.Err() != nil {
		return
	}
	f.publish(inputs, &sum, err)
}

// publish hands what was read (and its fingerprint sum) to the publisher
// and logs a refusal.
func (f *File) publish(inputs []policy.Input, sum *[32]byte, readErr error) {
	_, err := f.pub.publishSum(f.path, inputs, sum, readErr, false)
	if err == nil {
		return
	}
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

// readBounded reads the policy on a goroutine of its own and waits for it at
// most f.readTimeout, or until ctx is done. A read that outlives the wait is
// left to finish, and what it read is closed; until it does, later reads
// are refused at once rather than piling up behind it. The caller closes
// the inputs returned. The fingerprint of what was read is taken on that
// goroutine too: a large file left open (policy.OpenFile) is only read as
// it is hashed, so a filesystem that hangs there holds up no more than a
// read, and the load that follows finds the file in the page cache.
func (f *File) readBounded(ctx context.Context) ([]policy.Input, [32]byte, error) {
	if !f.reading.CompareAndSwap(false, true) {
		return nil, [32]byte{}, fmt.Errorf("read policy %s: an earlier read has not returned (a hung filesystem?); not reading again until it does", f.path)
	}
	type result struct {
		inputs []policy.Input
		sum    [32]byte
		err    error
	}
	done := make(chan result)
	gaveUp := make(chan struct{})
	read := f.read
	go func() {
		var r result
		if r.inputs, r.err = read(); r.err == nil {
			r.sum = f.pub.fingerprint(r.inputs)
		}
		f.reading.Store(false)
		select {
		case done <- r:
		case <-gaveUp:
			policy.CloseInputs(r.inputs)
		}
	}()
	timeout := time.NewTimer(f.readTimeout)
	defer timeout.Stop()
	select {
	case r := <-done:
		return r.inputs, r.sum, r.err
	case <-timeout.C:
		close(gaveUp)
		return nil, [32]byte{}, fmt.Errorf("read policy %s: no answer within %v (a hung filesystem?)", f.path, f.readTimeout)
	case <-ctx.Done():
		close(gaveUp)
		return nil, [32]byte{}, ctx.Err()
	}
}
