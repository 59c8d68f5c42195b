package policyedit

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keygate/keygate/internal/policy"
)

// InvalidError refuses an edit whose result is not a valid policy. Problems
// are located in the edited text, which was not written.
type InvalidError struct {
	File     string
	Before   bool // the file was not valid before the edit either
	Problems policy.Errors
	Err      error // when the problem is not a list of policy errors
}

func (e *InvalidError) Error() string {
	var b strings.Builder
	if e.Before {
		fmt.Fprintf(&b, "%s is not a valid policy; fix it first", e.File)
	} else {
		fmt.Fprintf(&b, "refusing to edit %s: the result would not be a valid policy (nothing was written; lines are those of the edited text)", e.File)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	for _, l := range e.Problems.Lines() {
		b.WriteString("\n  ")
		b.WriteString(l)
	}
	return b.String()
}

// Validate compiles data as a policy on its own, as keygate serve would.
func Validate(name string, data []byte) error {
	_, err := policy.Load([]policy.Input{{Name: name, Data: data}}, policy.Options{Source: name})
	return err
}

// EditFile reads the policy file at path, applies edit to its text and, if
// the text changed and is a valid policy (policy.Load, the file on its own),
// writes it atomically: a temporary file in the same directory, renamed over
// the original with its permissions, so a running keygate's watcher sees one
// complete change. It refuses when the file changed while being edited. It
// reports whether it wrote.
func EditFile(path string, edit func(*Doc) error) (bool, error) {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false, err
	}
	orig, err := os.ReadFile(real)
	if err != nil {
		return false, err
	}
	d := New(path, orig)
	if err := edit(d); err != nil {
		if errors.As(err, new(policy.Errors)) {
			return false, Invalid(path, true, err)
		}
		return false, err
	}
	out := d.Bytes()
	if bytes.Equal(out, orig) {
		return false, nil
	}
	if err := Validate(path, out); err != nil {
		return false, Invalid(path, Validate(path, orig) != nil, err)
	}
	return true, writeAtomic(real, out, orig)
}

// Invalid makes the *InvalidError that refuses an edit of file whose
// result failed to load with err; before says the policy was not valid
// before the edit either.
func Invalid(file string, before bool, err error) *InvalidError {
	e := &InvalidError{File: file, Before: before}
	if !errors.As(err, &e.Problems) {
		e.Err = err
	}
	return e
}

func writeAtomic(path string, data, orig []byte) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	return Replace(path, data, orig, st.Mode().Perm())
}

// Replace writes data to the file at path atomically: a temporary file in
// the same directory with mode perm, renamed over path, so a watcher sees
// one complete change. orig is what the caller read and edited: if path no
// longer holds exactly that, nothing is written. A nil orig means the file
// did not exist: it is created, and nothing is written if it exists by then.
// path must not be a symlink (resolve it first).
func Replace(path string, data, orig []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".keygate-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	done := false
	defer func() {
		if !done {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	changed := fmt.Errorf("%s changed while keygate was editing it; nothing was written, run the command again", path)
	if orig == nil {
		// A hard link, unlike a rename, never replaces a file that another
		// writer created meanwhile.
		if err := os.Link(tmp.Name(), path); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return changed
			}
			return fmt.Errorf("write %s: %w", path, err)
		}
	} else {
		if cur, err := os.ReadFile(path); err != nil || !bytes.Equal(cur, orig) {
			return changed
		}
		if err := os.Rename(tmp.Name(), path); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
		}
		done = true
	}
	if dir, err := os.Open(filepath.Dir(path)); err == nil {
		_ = dir.Sync() // make the rename durable; best effort
		dir.Close()
	}
	return nil
}
