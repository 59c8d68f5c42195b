// Package policyedit edits the text of a keygate policy file as a person
// would: it adds an api_keys or sessions entry, disables an entry, or sets
// its expiry, and leaves every other byte (comments, blank lines, quoting,
// indentation, flow or block style) as it was.
//
// yaml.v3 node positions say where to splice. Every edit is then decoded
// again and compared with the intended change, so an edit that the file's
// layout makes ambiguous is refused (ErrUnsupported), never guessed. EditFile
// also validates the result with policy.Load and writes it atomically.
package policyedit

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/policy"
)

// ErrUnsupported means the file's layout does not allow the edit to be made
// safely by splicing text (a JSON policy, a list in flow style, a multi-line
// value); the change has to be made by hand.
var ErrUnsupported = errors.New("cannot be edited automatically")

// NotFoundError says no api_keys or sessions entry has the id.
type NotFoundError struct{ ID string }

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("no api_keys or sessions entry has id %q", e.ID)
}

// Doc is the text of one policy file being edited.
type Doc struct {
	name string
	data []byte
}

// New starts editing data; name is used in errors.
func New(name string, data []byte) *Doc {
	return &Doc{name: name, data: bytes.Clone(data)}
}

// Bytes returns the text with the edits made so far.
func (d *Doc) Bytes() []byte { return d.data }

// Name is the name the text was opened with, as errors give it.
func (d *Doc) Name() string { return d.name }

// AddAPIKey appends k to api_keys (creating the list if needed), in the style
// of the entries already there.
func (d *Doc) AddAPIKey(k policy.APIKey) error {
	return d.edit(
		func(doc *policy.Document) error { doc.APIKeys = append(doc.APIKeys, k); return nil },
		func(t *text, root *yaml.Node) error {
			return addItem(t, root, "api_keys", func(flow bool) []field { return apiKeyFields(k, flow) })
		})
}

// AddSession appends s to sessions.
func (d *Doc) AddSession(s policy.Session) error {
	return d.edit(
		func(doc *policy.Document) error { doc.Sessions = append(doc.Sessions, s); return nil },
		func(t *text, root *yaml.Node) error {
			return addItem(t, root, "sessions", func(flow bool) []field { return sessionFields(s, flow) })
		})
}

// Disable sets disabled: true on the api_keys or sessions entry with id,
// with note (if any) as a comment on that line. The entry stays, for the
// record. It reports false, and changes nothing, when the entry was already
// disabled.
func (d *Doc) Disable(id, note string) (bool, error) {
	changed := false
	err := d.edit(
		func(doc *policy.Document) error {
			dis, err := credential(doc, id, func(k *policy.APIKey) { k.Disabled = true }, func(s *policy.Session) { s.Disabled = true })
			changed = !dis
			return err
		},
		func(t *text, root *yaml.Node) error {
			if !changed {
				return nil
			}
			return setField(t, root, id, "disabled", "true", note)
		})
	return changed, err
}

// SetExpiry sets expires_at on the api_keys or sessions entry with id.
func (d *Doc) SetExpiry(id string, at time.Time) error {
	ts := &policy.Timestamp{Time: at.UTC().Truncate(time.Second)}
	return d.edit(
		func(doc *policy.Document) error {
			_, err := credential(doc, id, func(k *policy.APIKey) { k.ExpiresAt = ts }, func(s *policy.Session) { s.ExpiresAt = ts })
			return err
		},
		func(t *text, root *yaml.Node) error {
			return setField(t, root, id, "expires_at", formatTime(ts.Time), "")
		})
}

// credential applies one of the changes to the entry with id and reports
// whether it was disabled before.
func credential(doc *policy.Document, id string, key func(*policy.APIKey), sess func(*policy.Session)) (bool, error) {
	for i := range doc.APIKeys {
		if doc.APIKeys[i].ID == id {
			was := doc.APIKeys[i].Disabled
			key(&doc.APIKeys[i])
			return was, nil
		}
	}
	for i := range doc.Sessions {
		if doc.Sessions[i].ID == id {
			was := doc.Sessions[i].Disabled
			sess(&doc.Sessions[i])
			return was, nil
		}
	}
	return false, &NotFoundError{ID: id}
}

// edit makes one change: change says what the document must look like
// afterwards, splice edits the text. The edited text must decode to exactly
// the changed document.
func (d *Doc) edit(change func(*policy.Document) error, splice func(*text, *yaml.Node) error) error {
	before, err := policy.Parse(d.name, d.data)
	if err != nil {
		return err
	}
	want := before.Doc
	if err := change(&want); err != nil {
		return err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(d.data, &n); err != nil {
		return err
	}
	if len(n.Content) == 0 {
		return d.unsupported("the policy holds no mapping")
	}
	root := n.Content[0]
	if root.Kind != yaml.MappingNode || root.Style&yaml.FlowStyle != 0 {
		return d.unsupported("the policy is written in flow style (JSON); keygate edits block-style YAML")
	}
	t := newText(d.data)
	if err := splice(t, root); err != nil {
		if errors.Is(err, ErrUnsupported) {
			return d.unsupported(strings.TrimPrefix(err.Error(), ErrUnsupported.Error()+": "))
		}
		return err
	}
	out := t.bytes()
	after, err := policy.Parse(d.name, out)
	if err != nil || !sameDocument(want, after.Doc) {
		return d.unsupported("the edited text would not read back as intended")
	}
	d.data = out
	return nil
}

func (d *Doc) unsupported(why string) error {
	return fmt.Errorf("%s %w: %s; make the change by hand", d.name, ErrUnsupported, why)
}

func sameDocument(a, b policy.Document) bool {
	am, aerr := yaml.Marshal(a)
	bm, berr := yaml.Marshal(b)
	return aerr == nil && berr == nil && bytes.Equal(am, bm)
}

func unsupportedf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)
}

// mapValue returns the value of key in mapping m and its index, or nil, -1.
func mapValue(m *yaml.Node, key string) (*yaml.Node, int) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1], i
		}
	}
	return nil, -1
}

// listStyle is where the file's block lists put their dash and keys: the
// first top-level list of mappings decides; two and two otherwise.
func listStyle(root *yaml.Node) (indent, offset int) {
	for i := 1; i < len(root.Content); i += 2 {
		v := root.Content[i]
		if v.Kind != yaml.SequenceNode || v.Style&yaml.FlowStyle != 0 || len(v.Content) == 0 {
			continue
		}
		if first := v.Content[0]; first.Kind == yaml.MappingNode && first.Style&yaml.FlowStyle == 0 && first.Line == v.Line {
			return v.Column - 1, max(first.Column-v.Column, 2)
		}
	}
	return 2, 2
}

// sectionEnd is the last line before the top-level key that follows the
// value at index vi of root (or the file's last line).
func sectionEnd(t *text, root *yaml.Node, vi int) int {
	if vi+1 < len(root.Content) {
		return root.Content[vi+1].Line - 1
	}
	return len(t.lines)
}

// itemEnd is the last line of item i of seq (the value at index vi of root):
// comments and blank lines before the next item belong to it, not to this one.
func itemEnd(t *text, root, seq *yaml.Node, vi, i int) int {
	end := sectionEnd(t, root, vi)
	if i+1 < len(seq.Content) {
		end = seq.Content[i+1].Line - 1
	}
	return t.lastContent(end, seq.Content[i].Line)
}

func addItem(t *text, root *yaml.Node, section string, render func(flow bool) []field) error {
	indent, offset := listStyle(root)
	v, ki := mapValue(root, section)
	if v == nil {
		var add []string
		if last := len(t.lines); last > 0 && !t.blankOrComment(last) && bytes.Contains(t.bytes(), []byte(t.eol+t.eol)) {
			add = append(add, "") // the file separates sections with blank lines
		}
		add = append(add, section+":")
		t.insertAfter(len(t.lines), append(add, blockItem(render(false), indent, offset)...)...)
		return nil
	}
	k := root.Content[ki]
	switch {
	case v.Kind == yaml.SequenceNode && len(v.Content) > 0:
		if v.Style&yaml.FlowStyle != 0 {
			return unsupportedf("%s is a list in flow style [...]", section)
		}
		i := len(v.Content) - 1
		end := itemEnd(t, root, v, ki+1, i)
		if last := v.Content[i]; last.Kind == yaml.MappingNode && last.Style&yaml.FlowStyle != 0 {
			t.insertAfter(end, flowItem(render(true), v.Column-1))
			return nil
		}
		if first := v.Content[0]; first.Kind == yaml.MappingNode && first.Line == v.Line {
			offset = max(first.Column-v.Column, 2)
		}
		t.insertAfter(end, blockItem(render(false), v.Column-1, offset)...)
		return nil
	case v.Kind == yaml.SequenceNode || (v.Kind == yaml.ScalarNode && v.Tag == "!!null"):
		// "api_keys:", "api_keys: ~" or "api_keys: []": the list starts here.
		if v.Line != k.Line {
			return unsupportedf("%s has its empty value on a line of its own", section)
		}
		if v.Value != "" || v.Kind == yaml.SequenceNode {
			start := t.offset(v.Line, v.Column)
			end, ok := t.tokenEnd(v.Line, start, false)
			if !ok {
				return unsupportedf("cannot find the end of %s's value", section)
			}
			for start > 0 && strings.ContainsRune(" \t", rune(t.content(v.Line)[start-1])) {
				start--
			}
			t.replace(v.Line, start, end, "")
			if c := t.content(v.Line); !t.hasComment(v.Line, 0) {
				t.replace(v.Line, len(strings.TrimRight(c, " \t")), len(c), "")
			}
		}
		t.insertAfter(k.Line, blockItem(render(false), k.Column-1+indent, offset)...)
		return nil
	}
	return unsupportedf("%s is not a list", section)
}

// setField sets key: value on the credential entry with id: in place when
// the key is there, else as a new last line of the entry (or a new last
// pair of a flow mapping). note becomes a line comment.
func setField(t *text, root *yaml.Node, id, key, value, note string) error {
	for _, section := range []string{"api_keys", "sessions"} {
		seq, ki := mapValue(root, section)
		if seq == nil || seq.Kind != yaml.SequenceNode {
			continue
		}
		for i, item := range seq.Content {
			if item.Kind != yaml.MappingNode {
				continue
			}
			if idv, _ := mapValue(item, "id"); idv == nil || idv.Value != id {
				continue
			}
			flow := item.Style&yaml.FlowStyle != 0
			comment := ""
			if note != "" {
				comment = "  # " + note
			}
			if v, _ := mapValue(item, key); v != nil {
				if v.Kind != yaml.ScalarNode {
					return unsupportedf("%s of %s is not a single value", key, id)
				}
				start := t.offset(v.Line, v.Column)
				end, ok := t.tokenEnd(v.Line, start, flow)
				if !ok {
					return unsupportedf("%s of %s spans lines", key, id)
				}
				val := value
				if start > 0 && t.content(v.Line)[start-1] == ':' {
					val = " " + val
				}
				if !flow && !t.hasComment(v.Line, end) {
					val += comment
				}
				t.replace(v.Line, start, end, val)
				return nil
			}
			if flow {
				last := item.Content[len(item.Content)-1]
				start := t.offset(last.Line, last.Column)
				end, ok := t.tokenEnd(last.Line, start, true)
				if !ok {
					return unsupportedf("cannot find the end of entry %s", id)
				}
				t.replace(last.Line, end, end, ", "+key+": "+value)
				return nil
			}
			end := itemEnd(t, root, seq, ki+1, i)
			t.insertAfter(end, strings.Repeat(" ", item.Column-1)+key+": "+value+comment)
			return nil
		}
	}
	return &NotFoundError{ID: id}
}
