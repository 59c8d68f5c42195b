package policy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
)

// Input is the raw text of one policy source.
type Input struct {
	Name string
	Data []byte

	// file, when set, holds the text instead of Data: a large JSON file
	// that OpenFile or OpenDir left open.
	file *streamFile
}

// IsPolicyFile reports whether a file name is read as a policy fragment.
func IsPolicyFile(name string) bool {
	if strings.HasPrefix(filepath.Base(name), ".") {
		return false
	}
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", ".json":
		return true
	}
	return false
}

// ReadPath reads path as ReadFile or ReadDir, whichever it is now. It is for
// tools that read once; a source that reads again on every change decides
// once and calls ReadFile or ReadDir, so that a path that changes kind is a
// refused reload, not a different policy.
func ReadPath(path string) ([]Input, error) {
	return readPath(path, false)
}

// readPath is ReadPath, leaving large JSON files open with stream (see
// OpenFile).
func readPath(path string, stream bool) ([]Input, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return readDir(path, nil, stream)
	}
	// Anything else, a dangling symlink or a loop included, is read as a
	// file, which says what is wrong with it.
	return readFile(path, stream)
}

// ReadFile reads the policy file at path, whatever its name: a regular file
// or a symlink to one. Anything else (a directory, a FIFO, a socket, a
// device) is refused without blocking, as is a file over MaxFragmentSize.
func ReadFile(path string) ([]Input, error) {
	return readFile(path, false)
}

// readFile is ReadFile, or OpenFile when stream is set.
func readFile(path string, stream bool) ([]Input, error) {
	in, err := readRegular(path, stream)
	var pe *Error
	switch {
	case err == nil:
		return []Input{in}, nil
	case errors.As(err, &pe):
		return nil, Errors{pe}
	}
	return nil, fmt.Errorf("read policy: %w", err)
}

// ReadDir reads every fragment of the directory at path: each entry that
// IsPolicyFile accepts, in name order (hidden entries such as Kubernetes'
// ..data are not fragments; the files that link through them are). A
// fragment that cannot be read as a regular file refuses the whole
// directory, naming every such fragment and why: publishing the others
// without it could open what it protects.
func ReadDir(path string) ([]Input, error) {
	return readDir(path, nil, false)
}

// readDir is ReadDir, or OpenDir when stream is set; listed, if not nil, is
// called between the listing and the reads (tests change the directory
// there).
func readDir(path string, listed func(names []string), stream bool) ([]Input, error) {
	d, st, err := openNonblocking(path)
	if err != nil {
		return nil, fmt.Errorf("read policy directory: %w", err)
	}
	defer d.Close()
	if !st.IsDir() {
		return nil, fmt.Errorf("read policy directory: %s: not a directory", path)
	}
	all, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("read policy directory %s: %w", path, err)
	}
	var names []string
	for _, n := range all {
		if IsPolicyFile(n) {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	if listed != nil {
		listed(names)
	}
	var (
		out  []Input
		errs Errors
	)
	for _, n := range names {
		p := filepath.Join(path, n)
		in, err := readRegular(p, stream)
		var pe *Error
		switch {
		case err == nil:
			out = append(out, in)
		case errors.Is(err, fs.ErrNotExist) && !isSymlink(p):
			// Removed since the listing: no longer a fragment, as a
			// listing taken now would say.
		case errors.As(err, &pe):
			errs = append(errs, pe)
		default:
			errs = append(errs, &Error{File: p, Msg: "cannot read: " + err.Error()})
		}
	}
	if len(errs) > 0 {
		CloseInputs(out)
		return nil, errs
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read policy directory %s: no *.yaml, *.yml or *.json files", path)
	}
	return out, nil
}

// openNonblocking opens path for reading without ever waiting: opening a
// FIFO that has no writer would block forever, a device might. What was
// opened is then judged by the descriptor's own mode (fstat), so nothing
// can be swapped in between a check and the open.
func openNonblocking(path string) (*os.File, fs.FileInfo, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return f, st, nil
}

// readRegular reads a regular file (following symlinks) into a buffer of
// its size: growing the buffer as io.ReadAll does would cost twice a large
// file's size in memory. With stream, a large JSON file is left open
// instead (see OpenFile). Anything else is refused with a policy.Error
// that says what it is; a file that does not exist gives the fs error.
func readRegular(path string, stream bool) (Input, error) {
	f, st, err := openNonblocking(path)
	if err != nil {
		return Input{}, describeOpenError(path, err)
	}
	keep := false
	defer func() {
		if !keep {
			f.Close()
		}
	}()
	if !st.Mode().IsRegular() {
		return Input{}, &Error{File: path, Msg: "cannot read: " + describeMode(st.Mode()) + ", not a regular file"}
	}
	if st.Size() > MaxFragmentSize {
		return Input{}, &Error{File: path, Msg: fmt.Sprintf("policy is %d bytes; the limit is %d", st.Size(), MaxFragmentSize)}
	}
	if stream && streamed(path, st.Size()) {
		keep = true
		return Input{Name: path, file: newStreamFile(f, path, st)}, nil
	}
	// The limit holds if the file grows while it is read; Parse refuses the
	// extra byte.
	buf := bytes.NewBuffer(make([]byte, 0, st.Size()+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxFragmentSize+1)); err != nil {
		return Input{}, &Error{File: path, Msg: "cannot read: " + unwrapPath(err).Error()}
	}
	return Input{Name: path, Data: buf.Bytes()}, nil
}

// describeOpenError says why path could not be opened: a dangling symlink
// or a symlink loop by name, a FIFO or socket that refused the open by its
// kind. A path that does not exist at all keeps its fs error.
func describeOpenError(path string, err error) error {
	switch {
	case errors.Is(err, syscall.ELOOP):
		return &Error{File: path, Msg: "cannot read: symlink loop"}
	case errors.Is(err, fs.ErrNotExist):
		if target, lerr := os.Readlink(path); lerr == nil {
			return &Error{File: path, Msg: fmt.Sprintf("cannot read: dangling symlink (its target %q does not exist)", target)}
		}
		return err
	}
	if st, serr := os.Stat(path); serr == nil && !st.Mode().IsRegular() {
		// A socket cannot be opened at all (ENXIO).
		return &Error{File: path, Msg: "cannot read: " + describeMode(st.Mode()) + ", not a regular file"}
	}
	return &Error{File: path, Msg: "cannot read: " + unwrapPath(err).Error()}
}

// describeMode names a file type that is not a regular file.
func describeMode(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

func isSymlink(path string) bool {
	st, err := os.Lstat(path)
	return err == nil && st.Mode()&fs.ModeSymlink != 0
}

// unwrapPath drops an fs.PathError's operation and path: the policy.Error
// around it names the file already.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Load parses and compiles inputs as one policy. Errors from every input are
// reported together. A file OpenFile left open that changed in place while
// it loaded is refused, whatever else was found.
func Load(inputs []Input, opt Options) (*Snapshot, error) {
	s, err := load(inputs, opt, true)
	if errors.Is(err, errUndecodable) {
		// Only a broken policy gets here: decoding it up front, as Parse
		// does, says where and what is wrong.
		s, err = load(inputs, opt, false)
	}
	for _, in := range inputs {
		if in.file != nil {
			if cerr := in.file.check(); cerr != nil {
				return nil, cerr
			}
		}
	}
	return s, err
}

func load(inputs []Input, opt Options, deferCreds bool) (*Snapshot, error) {
	var errs Errors
	frags := make([]*Fragment, 0, len(inputs))
	var skim *skimmer
	if deferCreds {
		skim = newSkimmer(opt.Previous)
	}
	for _, in := range inputs {
		var f *Fragment
		var err error
		switch data := in.Data; {
		case in.file != nil && deferCreds:
			f, err = parseFile(in.file, opt.Pace, skim)
		case in.file != nil:
			if data, err = in.file.readAll(); err == nil {
				f, err = parse(in.Name, data, false, opt.Pace, nil)
			}
		default:
			f, err = parse(in.Name, data, deferCreds, opt.Pace, skim)
		}
		if err != nil {
			var pe Errors
			if errors.As(err, &pe) {
				errs = append(errs, pe...)
			} else {
				errs = append(errs, &Error{File: in.Name, Msg: err.Error()})
			}
			continue
		}
		frags = append(frags, f)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return Compile(frags, opt)
}

// LoadPath reads and compiles the policy at path (a file or directory).
func LoadPath(path string, opt Options) (*Snapshot, error) {
	inputs, err := readPath(path, true)
	if err != nil {
		return nil, err
	}
	defer CloseInputs(inputs)
	if opt.Source == "" {
		opt.Source = path
	}
	return Load(inputs, opt)
}

// Fingerprint identifies the content of inputs, so a reload of unchanged
// content can be skipped: SHA-256 over each input's name and size and the
// blockSum of each of its blocks. pace, if not nil, is called between blocks,
// as Options.Pace is during a load.
func Fingerprint(inputs []Input, pace func()) [32]byte {
	h := sha256.New()
	for _, in := range inputs {
		if in.file != nil {
			in.file.hash(h, pace)
			continue
		}
		fmt.Fprintf(h, "%d:%s%d:", len(in.Name), in.Name, len(in.Data))
		for data := in.Data; len(data) > 0; {
			n := min(len(data), streamBlock)
			blockSum(data[:n]).writeTo(h)
			if data = data[n:]; pace != nil && len(data) > 0 {
				pace()
			}
		}
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}
