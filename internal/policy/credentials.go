package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/go-json-experiment/json/jsontext"
)

// credSpec is one credential as compile reads it, from either section.
type credSpec struct {
	id, name, hash, tenant, org, user string
	groups                            []string
	environment                       string
	expiresAt                         *Timestamp
	disabled                          bool
	rateLimit                         string // the name of its own budget

	digest    Digest // hash, already parsed by credDecoder when hasDigest
	hasDigest bool
}

// parsedDigest is the credential's digest.
func (k *credSpec) parsedDigest() (Digest, error) {
	if k.hasDigest {
		return k.digest, nil
	}
	return ParseDigest(k.hash)
}

func apiKeySpec(k *APIKey) credSpec {
	return credSpec{id: k.ID, name: k.Name, hash: k.Hash, tenant: k.Tenant, org: k.Org, user: k.User, groups: k.Groups,
		environment: k.Environment, expiresAt: k.ExpiresAt, disabled: k.Disabled, rateLimit: k.RateLimit}
}

func sessionSpec(k *Session) credSpec {
	return credSpec{id: k.ID, hash: k.Hash, tenant: k.Tenant, org: k.Org, user: k.User, groups: k.Groups,
		expiresAt: k.ExpiresAt, disabled: k.Disabled, rateLimit: k.RateLimit}
}

// deferredArray is a credential array of a JSON fragment that Parse checked
// for syntax and counted but did not decode: compile decodes one element at
// a time and keeps only the compiled principal, so a million keys are never
// held twice (as documents and as principals).
type deferredArray struct {
	start, end int // the array's bytes in the fragment's text
	n          int // elements
	// Each element's sum and where it starts in the text, so that a reload
	// can take the compiled credentials of elements that did not change
	// from the snapshot before it and decode only the others (reuse.go).
	sums   []textSum
	starts []uint32 // offsets fit: a fragment is at most MaxFragmentSize
	lens   []uint32
	// checked counts the elements whose syntax was checked by decoding
	// them: all of them, unless skimmed (skim.go).
	checked int
}

// add records the next element: its sum, where it starts and its length.
// (Doubling the slices instead of append's quarter left less garbage but
// kept up to twice the room with the snapshot: 20 MB more at a million keys.)
func (d *deferredArray) add(sum textSum, start int64, n int) {
	d.sums, d.starts, d.lens = append(d.sums, sum), append(d.starts, uint32(start)), append(d.lens, uint32(n))
}

// credentialCount is how many credentials a section lists.
func (f *Fragment) credentialCount(section string) int {
	if d := f.deferred[section]; d != nil {
		return d.n
	}
	if section == "api_keys" {
		return len(f.Doc.APIKeys)
	}
	return len(f.Doc.Sessions)
}

// eachCredential calls fn with every credential of a section in order until
// fn returns false. An error is a deferred element that does not decode.
// A deferred element that keep, when not nil, keeps (by its index and the
// sum of its text) is not decoded: fn gets it with kept set and no spec.
func (f *Fragment) eachCredential(section string, keep func(i int, sum textSum) bool, fn func(i int, k credSpec, kept bool) bool) error {
	d := f.deferred[section]
	if d == nil {
		for i := range f.credentialCount(section) {
			var spec credSpec
			if section == "api_keys" {
				spec = apiKeySpec(&f.Doc.APIKeys[i])
			} else {
				spec = sessionSpec(&f.Doc.Sessions[i])
			}
			if !fn(i, spec, false) {
				return nil
			}
		}
		return nil
	}
	if keep != nil {
		return f.eachChanged(section, d, keep, fn)
	}
	var text io.Reader
	if f.src != nil {
		text = f.src.reader(int64(d.start), int64(d.end))
	} else {
		text = bytes.NewReader(f.data[d.start:d.end])
	}
	r := credDecoder{dec: jsontext.NewDecoder(text), interned: map[string]string{}}
	if _, err := r.dec.ReadToken(); err != nil { // [
		return err
	}
	var spec credSpec
	for i := 0; r.dec.PeekKind() != ']'; i++ {
		if err := r.next(section, &spec); err != nil {
			return fmt.Errorf("%s[%d]: %w", section, i, err)
		}
		if !fn(i, spec, false) {
			return nil
		}
	}
	return nil
}

// eachChanged is eachCredential with keep: only the elements keep does not
// find are read and decoded, each on its own from where it starts.
func (f *Fragment) eachChanged(section string, d *deferredArray, keep func(i int, sum textSum) bool, fn func(i int, k credSpec, kept bool) bool) error {
	var r credDecoder
	var spec credSpec
	text := fragmentText{data: f.data, src: f.src} // one block in memory for all: the elements are read in order
	var elem bytes.Reader
	for i := range d.n {
		if keep(i, d.sums[i]) {
			if !fn(i, credSpec{}, true) {
				return nil
			}
			continue
		}
		b, err := text.bytes(int64(d.starts[i]), int(d.lens[i]))
		if err != nil {
			return err
		}
		elem.Reset(b)
		if r.dec == nil {
			r = credDecoder{dec: jsontext.NewDecoder(&elem), interned: map[string]string{}}
		} else {
			r.dec.Reset(&elem)
		}
		if err := r.next(section, &spec); err != nil {
			return fmt.Errorf("%s[%d]: %w", section, i, err)
		}
		if !fn(i, spec, false) {
			return nil
		}
	}
	return nil
}

// credDecoder reads credentials of a deferred array straight from the JSON
// text, the way json.Unmarshal into APIKey or Session with unknown fields
// refused would (FuzzParse holds the two to the same outcome), but leaving
// no garbage behind per credential: the hash is parsed in place, and values
// that many credentials repeat (tenant, organization, environment, groups)
// are interned. Only the strings a principal keeps are allocated.
type credDecoder struct {
	dec      *jsontext.Decoder
	interned map[string]string
	groups   []string // the current credential's; reused
	buf      []byte   // unquoting scratch
	expires  Timestamp
}

var errNotCredential = errors.New("not a credential")

// next decodes one array element into k. The strings in k.groups and
// k.expiresAt are only valid until the next call.
func (r *credDecoder) next(section string, k *credSpec) error {
	*k = credSpec{}
	switch r.dec.PeekKind() {
	case 'n':
		_, err := r.dec.ReadToken()
		return err
	case '{':
	default:
		return errNotCredential
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return err
	}
	for r.dec.PeekKind() != '}' {
		name, err := r.dec.ReadValue()
		if err != nil {
			return err
		}
		if name, err = r.unquote(name); err != nil {
			return err
		}
		apiKey := section == "api_keys"
		switch string(name) {
		case "id":
			k.id, err = r.string(false)
		case "user":
			k.user, err = r.string(false)
		case "tenant":
			k.tenant, err = r.string(true)
		case "org":
			k.org, err = r.string(true)
		case "hash":
			err = r.hash(k)
		case "groups":
			err = r.groupList(k)
		case "expires_at":
			k.expiresAt, err = r.time(&r.expires)
		case "disabled":
			k.disabled, err = r.bool()
		case "rate_limit":
			k.rateLimit, err = r.string(true)
		case "name":
			if !apiKey {
				return errNotCredential
			}
			k.name, err = r.string(false)
		case "environment":
			if !apiKey {
				return errNotCredential
			}
			k.environment, err = r.string(true)
		case "created_at":
			if !apiKey {
				return errNotCredential
			}
			var created Timestamp
			_, err = r.time(&created)
		case "created_by":
			if !apiKey {
				return errNotCredential
			}
			_, err = r.string(false)
		default:
			return errNotCredential
		}
		if err != nil {
			return err
		}
	}
	_, err := r.dec.ReadToken()
	return err
}

// raw reads a JSON string's contents, unquoted; ok is false for null.
func (r *credDecoder) raw() (b []byte, ok bool, err error) {
	switch r.dec.PeekKind() {
	case 'n':
		_, err := r.dec.ReadToken()
		return nil, false, err
	case '"':
	default:
		return nil, false, errNotCredential
	}
	v, err := r.dec.ReadValue()
	if err != nil {
		return nil, false, err
	}
	b, err = r.unquote(v)
	return b, true, err
}

func (r *credDecoder) unquote(v jsontext.Value) ([]byte, error) {
	if bytes.IndexByte(v, '\\') < 0 {
		return v[1 : len(v)-1], nil
	}
	var err error
	r.buf, err = jsontext.AppendUnquote(r.buf[:0], v)
	return r.buf, err
}

// string reads a string value (null is ""); shared ones are interned.
func (r *credDecoder) string(shared bool) (string, error) {
	b, _, err := r.raw()
	if err != nil || len(b) == 0 {
		return "", err
	}
	if !shared {
		return string(b), nil
	}
	if s, ok := r.interned[string(b)]; ok {
		return s, nil
	}
	s := string(b)
	r.interned[s] = s
	return s, nil
}

func (r *credDecoder) hash(k *credSpec) error {
	b, _, err := r.raw()
	if err != nil {
		return err
	}
	if d, err := parseDigest(b); err == nil {
		k.digest, k.hasDigest = d, true
		return nil
	}
	k.hash = string(b) // compile says what is wrong with it
	return nil
}

func (r *credDecoder) groupList(k *credSpec) error {
	switch r.dec.PeekKind() {
	case 'n':
		_, err := r.dec.ReadToken()
		return err
	case '[':
	default:
		return errNotCredential
	}
	if _, err := r.dec.ReadToken(); err != nil {
		return err
	}
	r.groups = r.groups[:0]
	for r.dec.PeekKind() != ']' {
		g, err := r.string(true)
		if err != nil {
			return err
		}
		r.groups = append(r.groups, g)
	}
	k.groups = r.groups
	_, err := r.dec.ReadToken()
	return err
}

func (r *credDecoder) time(t *Timestamp) (*Timestamp, error) {
	b, ok, err := r.raw()
	if err != nil || !ok {
		return nil, err
	}
	if t.Time, err = parseTime(string(b)); err != nil {
		return nil, err
	}
	return t, nil
}

func (r *credDecoder) bool() (bool, error) {
	switch r.dec.PeekKind() {
	case 'n', 't', 'f':
		tok, err := r.dec.ReadToken()
		return tok.Kind() == 't', err
	}
	return false, errNotCredential
}

// deferArray records the array (or null) at the decoder's position after
// checking its syntax and counting its elements. base is what to add to the
// decoder's offsets for offsets in the text.
func deferArray(dec *jsontext.Decoder, base int64, pace func()) (*deferredArray, error) {
	if dec.PeekKind() == 'n' {
		_, err := dec.ReadToken()
		return nil, err
	}
	if dec.PeekKind() != '[' {
		return nil, &jsonError{offset: dec.InputOffset(), pointer: dec.StackPointer(), msg: kindName(dec.PeekKind()) + " has the wrong type here (want a list)"}
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	// The array starts at the "[" just read (the offset before it may stand
	// before whitespace or the ":").
	d := &deferredArray{start: int(base+dec.InputOffset()) - 1}
	for dec.PeekKind() != ']' {
		v, err := dec.ReadValue()
		if err != nil {
			return nil, err
		}
		d.add(sumText(v), base+dec.InputOffset()-int64(len(v)), len(v))
		d.checked++
		if d.n++; pace != nil && d.n%paceEvery == 0 {
			pace()
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return nil, err
	}
	d.end = int(base + dec.InputOffset())
	return d, nil
}
