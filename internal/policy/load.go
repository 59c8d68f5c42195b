package policy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Input is the raw text of one policy source.
type Input struct {
	Name string
	Data []byte
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

// ReadPath reads a policy file, or every *.yaml, *.yml and *.json file in a
// directory in name order (hidden entries such as Kubernetes' ..data are
// skipped; the files that link through them are read).
func ReadPath(path string) ([]Input, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	if !st.IsDir() {
		data, err := readLimited(path)
		if err != nil {
			return nil, err
		}
		return []Input{{Name: path, Data: data}}, nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return nil, fmt.Errorf("read policy directory: %w", err)
	}
	var names []string
	for _, e := range entries {
		if IsPolicyFile(e.Name()) {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	var out []Input
	for _, n := range names {
		p := filepath.Join(path, n)
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			continue
		}
		data, err := readLimited(p)
		if err != nil {
			return nil, err
		}
		out = append(out, Input{Name: p, Data: data})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("read policy directory %s: no *.yaml, *.yml or *.json files", path)
	}
	return out, nil
}

// readLimited reads a policy file into a buffer of its size: growing the
// buffer as io.ReadAll does would cost twice a large file's size in memory.
func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read policy: %w", err)
	}
	defer f.Close()
	var size int64
	if st, err := f.Stat(); err == nil {
		size = st.Size()
	}
	buf := bytes.NewBuffer(make([]byte, 0, min(size, MaxFragmentSize)+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(f, MaxFragmentSize+1)); err != nil {
		return nil, fmt.Errorf("read policy %s: %w", path, err)
	}
	return buf.Bytes(), nil
}

// Load parses and compiles inputs as one policy. Errors from every input are
// reported together.
func Load(inputs []Input, opt Options) (*Snapshot, error) {
	s, err := load(inputs, opt, true)
	if errors.Is(err, errUndecodable) {
		// Only a broken policy gets here: decoding it up front, as Parse
		// does, says where and what is wrong.
		return load(inputs, opt, false)
	}
	return s, err
}

func load(inputs []Input, opt Options, deferCreds bool) (*Snapshot, error) {
	var errs Errors
	frags := make([]*Fragment, 0, len(inputs))
	for _, in := range inputs {
		f, err := parse(in.Name, in.Data, deferCreds, opt.Pace)
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
	inputs, err := ReadPath(path)
	if err != nil {
		return nil, err
	}
	if opt.Source == "" {
		opt.Source = path
	}
	return Load(inputs, opt)
}

// Fingerprint identifies the content of inputs, so a reload of unchanged
// content can be skipped. pace, if not nil, is called between chunks of
// the hashing, as Options.Pace is during a load.
func Fingerprint(inputs []Input, pace func()) [32]byte {
	const chunk = 256 << 10
	h := sha256.New()
	for _, in := range inputs {
		fmt.Fprintf(h, "%d:%s%d:", len(in.Name), in.Name, len(in.Data))
		for data := in.Data; len(data) > 0; {
			n := min(len(data), chunk)
			h.Write(data[:n])
			if data = data[n:]; pace != nil && len(data) > 0 {
				pace()
			}
		}
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}
