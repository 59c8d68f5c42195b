package policy

import (
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strings"
	"time"
)

// streamMin is the size from which OpenFile and OpenDir leave a JSON policy
// file open instead of reading it into memory: a file of a million keys is
// some 300 MB, which a load would otherwise hold beside everything it
// compiles. Smaller files and YAML files are read whole, as ReadFile reads
// them. A variable so that tests can stream small files.
var streamMin int64 = 16 << 20

// streamBlock is how much of a streamed file is read, and checked, at once.
const streamBlock = 256 << 10

// msgChanged is the error of a load that found a streamed file changed.
const msgChanged = "changed while it was being read, so it was not loaded (replace a large policy by renaming a complete file over it)"

// OpenFile is ReadFile for a caller that loads what it reads: a JSON file
// over streamMin is not read but left open, and Fingerprint and Load read
// it from the descriptor, which keeps the file read the same one even if
// another is renamed over its name meanwhile. The caller must CloseInputs
// the inputs when it is done with them, whatever happened.
func OpenFile(path string) ([]Input, error) {
	return readFile(path, true)
}

// OpenDir is ReadDir as OpenFile is ReadFile.
func OpenDir(path string) ([]Input, error) {
	return readDir(path, nil, true)
}

// CloseInputs closes the files OpenFile or OpenDir left open; inputs read
// whole need no closing.
func CloseInputs(inputs []Input) {
	for _, in := range inputs {
		if in.file != nil {
			in.file.f.Close()
		}
	}
}

// ReadWhole reports whether every input was read whole by whatever read it
// (Fingerprint, Load): false when an open file could not be read to the
// end or changed in place meanwhile. Then nothing was loaded from it, and
// the same content read again must be loaded, not skipped as seen.
func ReadWhole(inputs []Input) bool {
	for _, in := range inputs {
		if in.file != nil && in.file.err != nil {
			return false
		}
	}
	return true
}

// streamed tells whether a file of this name and size is left open.
func streamed(name string, size int64) bool {
	return size > streamMin && strings.HasSuffix(strings.ToLower(name), ".json")
}

// streamFile is the text of a policy file read from its open descriptor as
// a load needs it, a block at a time. Every pass reads the same version or
// fails: the first read of each block keeps its hash and later reads must
// match it, and the size and modification time must be those the file had
// when opened until the load ends. It is not for concurrent use.
type streamFile struct {
	f    *os.File
	name string
	size int64
	mod  time.Time
	sums []textSum // per block, the blockSum its first read saw (zero: unread)
	err  error     // the first failure, returned by every read after it
}

func newStreamFile(f *os.File, name string, st os.FileInfo) *streamFile {
	return &streamFile{
		f: f, name: name, size: st.Size(), mod: st.ModTime(),
		sums: make([]textSum, (st.Size()+streamBlock-1)/streamBlock),
	}
}

func (s *streamFile) fail(msg string) error {
	if s.err == nil {
		s.err = Errors{{File: s.name, Msg: msg}}
	}
	return s.err
}

// block reads block i into buf (room for streamBlock bytes) and returns it.
func (s *streamFile) block(i int, buf []byte) ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	off := int64(i) * streamBlock
	buf = buf[:min(streamBlock, s.size-off)]
	if _, err := s.f.ReadAt(buf, off); errors.Is(err, io.EOF) {
		return nil, s.fail(msgChanged) // shorter than when it was opened
	} else if err != nil {
		return nil, s.fail("cannot read: " + unwrapPath(err).Error())
	}
	sum := blockSum(buf)
	switch s.sums[i] {
	case textSum{}:
		s.sums[i] = sum
	case sum:
	default:
		return nil, s.fail(msgChanged)
	}
	return buf, nil
}

// check fails the load if the file is no longer the size or age it had
// when opened: a change the blocks' hashes cannot see (one in a block read
// only once, or one that made it longer).
func (s *streamFile) check() error {
	if s.err != nil {
		return s.err
	}
	st, err := s.f.Stat()
	if err != nil {
		return s.fail("cannot read: " + unwrapPath(err).Error())
	}
	if st.Size() != s.size || !st.ModTime().Equal(s.mod) {
		return s.fail(msgChanged)
	}
	return nil
}

// readAll reads the whole text, for the rare paths that need it at once
// (locating an error).
func (s *streamFile) readAll() ([]byte, error) {
	data := make([]byte, s.size)
	for i := range s.sums {
		if _, err := s.block(i, data[i*streamBlock:]); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// hash writes the file to h as Fingerprint writes an input: its name and
// size, then each block's sum, read here (and checked by later reads).
// pace, if not nil, is called between blocks. A read that fails writes a
// mark instead of the rest: Load reports the failure.
func (s *streamFile) hash(h hash.Hash, pace func()) {
	fmt.Fprintf(h, "%d:%s%d:", len(s.name), s.name, s.size)
	buf := make([]byte, streamBlock)
	for i := range s.sums {
		if _, err := s.block(i, buf); err != nil {
			io.WriteString(h, "\x00unread")
			return
		}
		s.sums[i].writeTo(h)
		if pace != nil && i < len(s.sums)-1 {
			pace()
		}
	}
}

// reader reads the bytes [start, end) of the file.
func (s *streamFile) reader(start, end int64) *blockReader {
	return &blockReader{s: s, off: start, end: end}
}

// blockReader is an io.Reader over part of a streamFile, one block in
// memory at a time.
type blockReader struct {
	s        *streamFile
	off, end int64  // the next byte to hand out; the end of the part
	buf      []byte // the block read last
	bufAt    int64  // its offset in the file
}

func (r *blockReader) Read(p []byte) (int, error) {
	if r.off >= r.end {
		return 0, io.EOF
	}
	if r.off < r.bufAt || r.off >= r.bufAt+int64(len(r.buf)) {
		if r.buf == nil {
			r.buf = make([]byte, streamBlock)
		}
		i := int(r.off / streamBlock)
		b, err := r.s.block(i, r.buf[:cap(r.buf)])
		if err != nil {
			return 0, err
		}
		r.buf, r.bufAt = b, int64(i)*streamBlock
	}
	n := copy(p, r.buf[r.off-r.bufAt:min(int64(len(r.buf)), r.end-r.bufAt)])
	r.off += int64(n)
	return n, nil
}

// parseFile is parse for a streamed JSON file: its text is read as it is
// decoded, and the credential arrays are left for Compile to read from the
// file again (deferredArray), skimmed when skim is not nil. A text that does not decode is read whole
// and parsed as in memory, which locates and words the error as for any
// other file.
func parseFile(s *streamFile, pace func(), skim *skimmer) (*Fragment, error) {
	f := &Fragment{Name: s.name, src: s, json: true, deferred: map[string]*deferredArray{}}
	var sk *skimming
	if skim != nil {
		sk = &skimming{skimmer: skim, text: fragmentText{src: s}}
	}
	err := decodeJSON(s.reader(0, s.size), &f.Doc, f.deferred, 0, pace, sk)
	if err != nil && sk != nil {
		f.Doc, f.deferred = Document{}, map[string]*deferredArray{}
		err = decodeJSON(s.reader(0, s.size), &f.Doc, f.deferred, 0, pace, nil)
	}
	if err == nil {
		skim.skimmed(f)
		return f, nil
	}
	data, rerr := s.readAll()
	if rerr != nil {
		return nil, rerr
	}
	return parse(s.name, data, true, nil, nil)
}
