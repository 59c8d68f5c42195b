package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/policyedit"
)

// ManagedFragment is the fragment of a policy directory that changes are
// written to; the rest of the directory is only read.
const ManagedFragment = "managed.yaml"

// LockFile is the file, in the directory of the policy file (or in the
// policy directory), that every keygate writing the policy holds an
// exclusive flock on while it reads, decides and writes: keygate serve's
// management API and the keygate keys and sessions commands alike. The
// policy file itself cannot carry the lock: every write replaces it by a
// rename. The name starts with a dot, so it is never read as a fragment.
const LockFile = ".keygate.lock"

// newManaged is what managed.yaml starts as.
const newManaged = "version: 1\n"

// File writes changes to a policy file, or to the fragment managed.yaml of a
// policy directory, as keygate keys does: comments and layout kept
// (policyedit), the whole policy validated, the file replaced atomically.
// Writers serialize on LockFile, in this process and across processes.
type File struct {
	path string
	dir  bool
	sem  chan struct{} // this process's writers queue here, not on the flock
}

// NewFile returns the store for the policy at path: a file, or a directory
// whose managed.yaml changes go to (created with "version: 1" on the first
// change).
func NewFile(path string) (*File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, pathError("policy "+path, err)
	}
	return &File{path: path, dir: st.IsDir(), sem: make(chan struct{}, 1)}, nil
}

// String says where changes go.
func (f *File) String() string {
	if f.dir {
		return "file " + f.Target(Scope{})
	}
	return "file " + f.path
}

// Target is the file a change of any scope is written to.
func (f *File) Target(Scope) string {
	if f.dir {
		return filepath.Join(f.path, ManagedFragment)
	}
	return f.path
}

// Policy loads the whole policy as it is now, for tools that need the rules
// before they change anything.
func (f *File) Policy(context.Context) (*policy.Snapshot, error) {
	return policy.LoadPath(f.path, policy.Options{Source: f.path})
}

// Update runs change on the current text under the lock and writes the
// result if change edited it and the whole policy still compiles.
func (f *File) Update(ctx context.Context, _ Scope, change func(tx *Tx) error) error {
	unlock, err := f.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if f.dir {
		return f.updateDir(change)
	}
	return f.updateFile(change)
}

func (f *File) updateFile(change func(tx *Tx) error) error {
	real, err := filepath.EvalSymlinks(f.path)
	if err != nil {
		return pathError("policy "+f.path, err)
	}
	orig, err := os.ReadFile(real)
	if err != nil {
		return pathError("policy "+f.path, err)
	}
	tx := &Tx{Doc: policyedit.New(f.path, orig)}
	if err := run(change, tx, f.path); err != nil {
		return err
	}
	out := tx.Doc.Bytes()
	if bytes.Equal(out, orig) {
		return nil
	}
	if err := policyedit.Validate(f.path, out); err != nil {
		return policyedit.Invalid(f.path, policyedit.Validate(f.path, orig) != nil, err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return err
	}
	return policyedit.Replace(real, out, orig, st.Mode().Perm())
}

func (f *File) updateDir(change func(tx *Tx) error) error {
	inputs, err := policy.ReadDir(f.path)
	if err != nil {
		return err
	}
	name := f.Target(Scope{})
	var (
		orig   []byte
		exists bool
		others []policy.APIKey
		perm   fs.FileMode = 0o644
	)
	for _, in := range inputs {
		if in.Name == name {
			orig, exists = in.Data, true
			continue
		}
		frag, err := policy.Parse(in.Name, in.Data)
		if err != nil {
			return policyedit.Invalid(in.Name, true, err)
		}
		others = append(others, frag.Doc.APIKeys...)
		if st, err := os.Stat(in.Name); err == nil {
			perm = st.Mode().Perm() // a new managed.yaml is as readable as the others
		}
	}
	if !exists {
		orig = []byte(newManaged)
	}
	tx := &Tx{Doc: policyedit.New(name, orig), Others: others}
	if err := run(change, tx, name); err != nil {
		return err
	}
	out := tx.Doc.Bytes()
	if bytes.Equal(out, orig) {
		return nil
	}
	edited := withFragment(inputs, policy.Input{Name: name, Data: out})
	if _, err := policy.Load(edited, policy.Options{Source: f.path}); err != nil {
		_, before := policy.Load(inputs, policy.Options{Source: f.path})
		return policyedit.Invalid(name, before != nil, err)
	}
	if !exists {
		return policyedit.Replace(name, out, nil, perm)
	}
	real, err := filepath.EvalSymlinks(name)
	if err != nil {
		return err
	}
	if st, err := os.Stat(real); err == nil {
		perm = st.Mode().Perm()
	}
	return policyedit.Replace(real, out, orig, perm)
}

// withFragment is inputs with frag in place of the input of its name, or
// added in name order.
func withFragment(inputs []policy.Input, frag policy.Input) []policy.Input {
	out := make([]policy.Input, 0, len(inputs)+1)
	for _, in := range inputs {
		if in.Name != frag.Name {
			out = append(out, in)
		}
	}
	out = append(out, frag)
	slices.SortStableFunc(out, func(a, b policy.Input) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// run runs change; a text that does not parse is a policy to fix first.
func run(change func(tx *Tx) error, tx *Tx, name string) error {
	err := change(tx)
	if errors.As(err, new(policy.Errors)) {
		return policyedit.Invalid(name, true, err)
	}
	return err
}

// lock takes this process's turn, then the exclusive flock on LockFile,
// waiting until ctx is done. The returned func releases both.
func (f *File) lock(ctx context.Context) (func(), error) {
	select {
	case f.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting to edit %s: %w", f.path, ctx.Err())
	}
	release := func() { <-f.sem }
	dir := f.path
	if !f.dir {
		real, err := filepath.EvalSymlinks(f.path)
		if err != nil {
			release()
			return nil, pathError("policy "+f.path, err)
		}
		dir = filepath.Dir(real)
	}
	path := filepath.Join(dir, LockFile)
	// Read-only is enough for flock, so a writer that may not write the
	// lock file (made by another user) can still take it.
	lf, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		release()
		return nil, pathError("lock "+path, err)
	}
	wait := time.Millisecond
	for {
		err := unix.Flock(int(lf.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			lf.Close()
			release()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// Another process holds it: poll, so that ctx can end the wait.
		t := time.NewTimer(wait/2 + rand.N(wait))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			lf.Close()
			release()
			return nil, fmt.Errorf("waiting for another keygate to finish editing %s (lock %s): %w", f.path, path, ctx.Err())
		}
		wait = min(2*wait, 50*time.Millisecond)
	}
	return func() {
		_ = unix.Flock(int(lf.Fd()), unix.LOCK_UN)
		lf.Close()
		release()
	}, nil
}

// pathError says what failed without repeating the path an fs error holds.
func pathError(what string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %w", what, pe.Err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
