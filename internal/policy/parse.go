package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Fragment is one decoded policy source. A policy is one or more fragments
// merged in order.
type Fragment struct {
	Name string // shown in errors: a file path or namespace/configmap/key
	Doc  Document
	root *yaml.Node // for line numbers of semantic errors
}

// MaxFragmentSize bounds one policy source; a ConfigMap holds at most 1 MiB.
const MaxFragmentSize = 16 << 20

// Parse decodes one YAML or JSON policy source strictly: an unknown field is
// an error that names its line.
func Parse(name string, data []byte) (*Fragment, error) {
	if len(data) > MaxFragmentSize {
		return nil, Errors{{File: name, Msg: fmt.Sprintf("policy is %d bytes; the limit is %d", len(data), MaxFragmentSize)}}
	}
	f := &Fragment{Name: name}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlErrors(name, err)
	}
	if root.Kind == 0 || (root.Kind == yaml.DocumentNode && len(root.Content) == 0) {
		return nil, Errors{{File: name, Msg: "policy is empty"}}
	}
	f.root = &root
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f.Doc); err != nil {
		return nil, yamlErrors(name, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, Errors{{File: name, Line: extra.Line, Msg: "more than one YAML document; put each policy in its own file"}}
	}
	return f, nil
}

var (
	yamlLineRe    = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownFldRe  = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	unmarshalToRe = regexp.MustCompile(`^cannot unmarshal !!(\w+)(?: ` + "`" + `(.*)` + "`" + `)? into (\S+)$`)
)

// yamlErrors turns yaml.v3's messages into located policy errors that speak
// the policy's terms rather than Go's.
func yamlErrors(name string, err error) error {
	var msgs []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs = te.Errors
	} else {
		msgs = []string{err.Error()}
	}
	var out Errors
	for _, m := range msgs {
		e := &Error{File: name, Msg: m}
		if sm := yamlLineRe.FindStringSubmatch(strings.TrimSpace(m)); sm != nil {
			e.Line, _ = strconv.Atoi(sm[1])
			e.Msg = sm[2]
		}
		if sm := unknownFldRe.FindStringSubmatch(e.Msg); sm != nil {
			e.Msg = fmt.Sprintf("unknown field %q", sm[1])
		} else if sm := unmarshalToRe.FindStringSubmatch(e.Msg); sm != nil {
			got := fmt.Sprintf("%s %q", sm[1], sm[2])
			if sm[1] == "seq" || sm[1] == "map" { // yaml.v3 shows no value for these
				got = map[string]string{"seq": "a list", "map": "a mapping"}[sm[1]]
			}
			e.Msg = fmt.Sprintf("%s has the wrong type here (want %s)", got, goTypeName(sm[3]))
		}
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}

func goTypeName(t string) string {
	switch {
	case strings.HasPrefix(t, "[]"):
		return "a list"
	case t == "bool" || t == "*bool":
		return "true or false"
	case strings.Contains(t, "int"):
		return "a number"
	case t == "string":
		return "a string"
	default:
		return "a mapping"
	}
}

// lineOf finds the line of the node at path (map keys and list indexes) in a
// fragment, falling back to the deepest ancestor that exists.
func (f *Fragment) lineOf(path []any) int {
	if f == nil || f.root == nil {
		return 0
	}
	n := f.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := n.Line
	for _, p := range path {
		var next *yaml.Node
		switch k := p.(type) {
		case string:
			if n.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(n.Content); i += 2 {
					if n.Content[i].Value == k {
						line = n.Content[i].Line
						next = n.Content[i+1]
						break
					}
				}
			}
		case int:
			if n.Kind == yaml.SequenceNode && k < len(n.Content) {
				next = n.Content[k]
				line = next.Line
			}
		}
		if next == nil {
			return line
		}
		n = next
	}
	return line
}

func formatPath(path []any) string {
	var b strings.Builder
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(k)
		case int:
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(k))
			b.WriteByte(']')
		}
	}
	return b.String()
}
