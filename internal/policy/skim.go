package policy

import (
	"bytes"
	"errors"
	"io"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// A reload given the snapshot before it (Options.Previous) need not check
// the syntax of every element of a large credential array again: an element
// whose bytes sum to those of an element that snapshot loaded is that
// element, which was checked when it was loaded. So the syntax and count
// pass over a JSON fragment skims its credential arrays: where the previous
// snapshot's elements say the next one should end, it sums the bytes up to
// there, and it decodes (checks) only an element that sums to something
// else. What stands between elements (white space, a comma, the closing
// bracket) is checked here. Anything unexpected gives up, and the fragment
// is decoded again without skimming, which finds and words the error.

// errSkim asks parse to decode the fragment again without skimming.
var errSkim = errors.New("cannot skim")

// skimmer is what a load knows of the previous snapshot's credential
// elements, by section, for skimming the fragments in order.
type skimmer struct {
	sections map[string]*skimGuide
}

type skimGuide struct {
	prior reusable // the previous snapshot's sums of the section
	lens  []uint32 // and the lengths of its elements
	at    int      // elements of the section in the fragments skimmed before
}

// newSkimmer returns nil when prev has nothing to skim by.
func newSkimmer(prev *Snapshot) *skimmer {
	if prev == nil || prev.credSums == nil || len(prev.credLens) != len(prev.credSums) {
		return nil
	}
	n := prev.keyCreds
	return &skimmer{sections: map[string]*skimGuide{
		"api_keys": {prior: reusable{sums: prev.credSums[:n]}, lens: prev.credLens[:n]},
		"sessions": {prior: reusable{sums: prev.credSums[n:]}, lens: prev.credLens[n:]},
	}}
}

// skimming is a fragment's text with the load's skimmer, for decodeJSON.
type skimming struct {
	*skimmer
	text fragmentText
}

// skimmed moves the guides past a fragment's arrays, however they were read.
func (s *skimmer) skimmed(f *Fragment) {
	if s == nil {
		return
	}
	for section, d := range f.deferred {
		if d != nil {
			s.sections[section].at += d.n
		}
	}
}

// fragmentText reads a fragment's text at given offsets, from memory or
// from its streamed file.
type fragmentText struct {
	data    []byte
	src     *streamFile
	blocks  *blockReader // for bytes
	scratch []byte
	rest    *blockReader // for restFrom
}

func (t *fragmentText) size() int64 {
	if t.src != nil {
		return t.src.size
	}
	return int64(len(t.data))
}

// bytes returns the n bytes at off, valid until the next call.
func (t *fragmentText) bytes(off int64, n int) ([]byte, error) {
	if off < 0 || off+int64(n) > t.size() {
		return nil, errSkim
	}
	if t.src == nil {
		return t.data[off : off+int64(n)], nil
	}
	if t.blocks == nil {
		t.blocks = t.src.reader(0, 0)
	}
	t.blocks.off, t.blocks.end = off, off+int64(n)
	if cap(t.scratch) < n {
		t.scratch = make([]byte, n)
	}
	t.scratch = t.scratch[:n]
	if _, err := io.ReadFull(t.blocks, t.scratch); err != nil {
		return nil, err
	}
	return t.scratch, nil
}

// restFrom reads the text from off to its end, for a decoder (which reads
// a few KiB ahead) to check the element there. The reader of a streamed
// file is the same on every call, only moved: an array of changed elements
// must not cost a block buffer each.
func (t *fragmentText) restFrom(off int64) io.Reader {
	if t.src == nil {
		return bytes.NewBuffer(t.data[off:]) // the decoder reads it in place
	}
	if t.rest == nil {
		t.rest = t.src.reader(0, 0)
	}
	t.rest.off, t.rest.end = off, t.src.size
	return t.rest
}

// skipSpace returns the offset of the first byte at or after off that is
// not JSON white space, and that byte (0 at the end).
func (t *fragmentText) skipSpace(off int64) (int64, byte, error) {
	for ; off < t.size(); off++ {
		b, err := t.bytes(off, 1)
		if err != nil {
			return 0, 0, err
		}
		switch b[0] {
		case ' ', '\t', '\r', '\n':
			continue
		}
		return off, b[0], nil
	}
	return off, 0, nil
}

// skimArray is deferArray for the array that follows the member name ending
// at off (the colon comes next), guided by g; it returns the array and the
// offset after it.
func (t *fragmentText) skimArray(off int64, g *skimGuide, pace func()) (*deferredArray, int64, error) {
	off, b, err := t.skipSpace(off)
	if err != nil || b != ':' {
		return nil, 0, errSkim
	}
	if off, b, err = t.skipSpace(off + 1); err != nil {
		return nil, 0, err
	}
	if b == 'n' { // null, as deferArray takes it
		if text, err := t.bytes(off, 4); err != nil || string(text) != "null" {
			return nil, 0, errSkim
		}
		return nil, off + 4, nil
	}
	if b != '[' {
		return nil, 0, errSkim // not an array: decoding says what
	}
	d := &deferredArray{start: int(off)}
	if off, b, err = t.skipSpace(off + 1); err != nil {
		return nil, 0, err
	}
	var check *jsontext.Decoder
	for b != ']' {
		i := g.at + d.n
		n, sum := 0, textSum{}
		if j := g.prior.guess(i); j >= 0 {
			// The previous element that should be here, if its bytes are.
			if text, err := t.bytes(off, int(g.lens[j])); err == nil && sumText(text) == g.prior.sums[j] {
				n, sum = len(text), g.prior.sums[j]
			}
		}
		if n == 0 {
			if check == nil {
				check = jsontext.NewDecoder(t.restFrom(off))
			} else {
				check.Reset(t.restFrom(off))
			}
			v, err := check.ReadValue()
			if err != nil {
				return nil, 0, errSkim
			}
			n, sum = len(v), sumText(v)
			if d.checked++; d.checked > giveUpAfter && 2*d.checked > d.n {
				return nil, 0, errSkim // most elements changed: decoding them in one pass is cheaper
			}
			g.prior.find(i, sum) // follows an element inserted or removed
		}
		d.add(sum, off, n)
		if d.n++; pace != nil && d.n%paceEvery == 0 {
			pace()
		}
		if off, b, err = t.skipSpace(off + int64(n)); err != nil {
			return nil, 0, err
		}
		switch b {
		case ',':
			if off, b, err = t.skipSpace(off + 1); err != nil || b == ']' {
				return nil, 0, errSkim // a trailing comma
			}
		case ']':
		default:
			return nil, 0, errSkim
		}
	}
	d.end = int(off) + 1
	return d, off + 1, nil
}

// resumeAfter is a decoder for the rest of the top-level object from off,
// which the skimmed array ended at: it reads the object as `{"":0` and what
// follows the array, so the next token is the ',' or '}' after the array.
// base is what to add to its InputOffset for an offset in the text.
func (t *fragmentText) resumeAfter(off int64) (dec *jsontext.Decoder, base int64, err error) {
	const head = `{"":0`
	var rest io.Reader // not restFrom's: the next skim moves that
	if t.src != nil {
		rest = t.src.reader(off, t.src.size)
	} else {
		rest = bytes.NewReader(t.data[off:])
	}
	dec = jsontext.NewDecoder(io.MultiReader(strings.NewReader(head), rest))
	for range 3 { // {, "", 0
		if _, err := dec.ReadToken(); err != nil {
			return nil, 0, errSkim
		}
	}
	return dec, off - int64(len(head)), nil
}
