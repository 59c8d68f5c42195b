package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	"gopkg.in/yaml.v3"
)

// Fragment is one decoded policy source. A policy is one or more fragments
// merged in order.
type Fragment struct {
	Name string // shown in errors: a file path or namespace/configmap/key
	Doc  Document
	data []byte     // the source text, kept to locate semantic errors
	root *yaml.Node // parsed from data on the first error only

	// src, for a large JSON file (OpenFile), is where the text is read
	// from instead: data is read from it only to locate an error.
	src *streamFile

	json bool // decoded as JSON: lines are found in the JSON text

	// deferred are the credential arrays of a JSON fragment parsed for
	// compiling only, by section: their Doc slices stay empty.
	deferred map[string]*deferredArray
}

// MaxFragmentSize bounds one policy source: room for a million keys with
// names, groups and dates (about 280 bytes each) in one JSON file, and a
// bound on what a runaway file can make keygate read.
const MaxFragmentSize = 512 << 20

// Parse decodes one YAML or JSON policy source strictly: an unknown field is
// an error that names its line.
func Parse(name string, data []byte) (*Fragment, error) {
	return parse(name, data, false, nil, nil)
}

// parse is Parse; with deferCreds, the credential arrays of a JSON source
// are only checked and counted, for Compile to decode one by one (calling
// pace as Options.Pace says), skimmed when skim is not nil.
func parse(name string, data []byte, deferCreds bool, pace func(), skim *skimmer) (*Fragment, error) {
	if len(data) > MaxFragmentSize {
		return nil, Errors{{File: name, Msg: fmt.Sprintf("policy is %d bytes; the limit is %d", len(data), MaxFragmentSize)}}
	}
	// One strict decoding pass; line numbers for semantic errors are looked
	// up only when there is an error to place, which keeps loading a policy
	// of a million keys affordable.
	f := &Fragment{Name: name, data: data}
	if isJSON(name, data) {
		if deferCreds {
			f.deferred = map[string]*deferredArray{}
		}
		hint := 0
		if !deferCreds {
			hint = bytes.Count(data, []byte(`"hash"`))
		}
		var sk *skimming
		if deferCreds && skim != nil {
			sk = &skimming{skimmer: skim, text: fragmentText{data: data}}
		}
		err := decodeJSON(bytes.NewBuffer(data), &f.Doc, f.deferred, hint, pace, sk)
		if err != nil && sk != nil {
			f.Doc, f.deferred = Document{}, map[string]*deferredArray{}
			err = decodeJSON(bytes.NewBuffer(data), &f.Doc, f.deferred, hint, pace, nil)
		}
		if err == nil {
			skim.skimmed(f)
			f.json = true
			return f, nil
		}
		// A .json source is JSON: its syntax errors are the JSON decoder's,
		// at the byte where it stopped (yaml.v3 would accept some, such as
		// a trailing comma, and place the others less well).
		var syn *jsontext.SyntacticError
		if len(data) > yamlFallbackMax || errors.As(err, &syn) && strings.HasSuffix(strings.ToLower(name), ".json") {
			return nil, jsonErrors(name, data, err)
		}
		f.deferred = nil
	}
	// YAML, or a small JSON source the JSON decoder refused for what it
	// holds: yaml.v3 reads JSON too and reports every such problem, in the
	// policy's terms, at its line.
	f.Doc = Document{}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f.Doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, Errors{{File: name, Msg: "policy is empty"}}
		}
		return nil, yamlErrors(name, data, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, Errors{{File: name, Line: extra.Line, Msg: "more than one YAML document; put each policy in its own file"}}
	}
	return f, nil
}

// isJSON tells whether the fast JSON decoder should try first: big key sets
// are best kept in .json fragments, which decode an order of magnitude faster.
func isJSON(name string, data []byte) bool {
	if strings.HasSuffix(strings.ToLower(name), ".json") {
		return true
	}
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	return len(trimmed) > 0 && trimmed[0] == '{'
}

// decodeJSON decodes strictly: unknown fields, repeated fields, field names
// in another case than the format's, and trailing data are errors (the
// caller then lets the YAML decoder say where). It streams the top-level
// object so that the api_keys and sessions arrays, which may hold a million
// entries, decode element by element into slices sized up front instead of
// being grown and copied (keysHint of them for api_keys), or, when
// deferred is not nil, are left for Compile (see deferredArray).
//
// With sk, the deferred arrays are skimmed (skim.go), and any error is
// errSkim or worded for no one: decoding again without sk says what it is.
func decodeJSON(r io.Reader, doc *Document, deferred map[string]*deferredArray, keysHint int, pace func(), sk *skimming) error {
	dec := jsontext.NewDecoder(r)
	var base int64 // what to add to dec's offsets for offsets in the text
	opts := json.RejectUnknownMembers(true)
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return &jsonError{msg: "the policy must be a JSON object"}
	}
	var seen []string // the names read, which a decoder resumed after skimming does not know
	for dec.PeekKind() != '}' {
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		key := tok.String()
		if sk != nil {
			if slices.Contains(seen, key) {
				return errSkim
			}
			seen = append(seen, key)
		}
		switch key {
		case "api_keys", "sessions":
			if deferred != nil && sk != nil {
				var end int64
				if deferred[key], end, err = sk.text.skimArray(base+dec.InputOffset(), sk.sections[key], pace); err == nil {
					dec, base, err = sk.text.resumeAfter(end)
				}
				break
			}
			if deferred != nil {
				deferred[key], err = deferArray(dec, base, pace)
				break
			}
			if key == "sessions" {
				err = decodeArray(dec, &doc.Sessions, 0, opts)
				break
			}
			err = decodeArray(dec, &doc.APIKeys, keysHint, opts)
		case "version":
			err = json.UnmarshalDecode(dec, &doc.Version, opts)
		case "settings":
			err = json.UnmarshalDecode(dec, &doc.Settings, opts)
		case "groups":
			err = json.UnmarshalDecode(dec, &doc.Groups, opts)
		case "tenants":
			err = json.UnmarshalDecode(dec, &doc.Tenants, opts)
		case "endpoints":
			err = json.UnmarshalDecode(dec, &doc.Endpoints, opts)
		case "management":
			err = json.UnmarshalDecode(dec, &doc.Management, opts)
		case "rate_limits":
			err = json.UnmarshalDecode(dec, &doc.RateLimits, opts)
		case "session_issuers":
			err = json.UnmarshalDecode(dec, &doc.SessionIssuers, opts)
		case "revoked_sessions":
			err = json.UnmarshalDecode(dec, &doc.RevokedSessions, opts)
		case "sessions_not_before":
			err = json.UnmarshalDecode(dec, &doc.SessionsNotBefore, opts)
		default:
			err = &jsonError{offset: dec.InputOffset(), msg: "unknown field " + quote(key)}
		}
		if err != nil {
			return err
		}
	}
	if _, err := dec.ReadToken(); err != nil { // the closing brace
		return err
	}
	if _, err := dec.ReadToken(); err != io.EOF {
		return &jsonError{offset: dec.InputOffset(), msg: "more than one JSON value; put each policy in its own file"}
	}
	return nil
}

// decodeArray decodes a JSON array (or null) element by element into dst,
// with room for sizeHint elements reserved first.
func decodeArray[T any](dec *jsontext.Decoder, dst *[]T, sizeHint int, opts json.Options) error {
	tok, err := dec.ReadToken()
	switch {
	case err != nil:
		return err
	case tok.Kind() == 'n':
		return nil
	case tok.Kind() != '[':
		return &jsonError{offset: dec.InputOffset(), pointer: dec.StackPointer(), msg: kindName(tok.Kind()) + " has the wrong type here (want a list)"}
	}
	out := make([]T, 0, sizeHint)
	for dec.PeekKind() != ']' {
		out = append(out, *new(T))
		if err := json.UnmarshalDecode(dec, &out[len(out)-1], opts); err != nil {
			return err
		}
	}
	if _, err := dec.ReadToken(); err != nil {
		return err
	}
	*dst = out
	return nil
}

var (
	yamlLineRe    = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	unknownFldRe  = regexp.MustCompile(`^field (\S+) not found in type \S+$`)
	unmarshalToRe = regexp.MustCompile(`^cannot unmarshal !!(\w+)(?: ` + "`" + `(.*)` + "`" + `)? into (\S+)$`)
)

// yamlErrors turns yaml.v3's messages into located policy errors that speak
// the policy's terms rather than Go's.
func yamlErrors(name string, data []byte, err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		return Errors{yamlSyntaxError(name, data, err)}
	}
	var out Errors
	for _, m := range te.Errors {
		e := &Error{File: name}
		e.Msg, e.Line = splitYAMLError(m)
		if sm := unknownFldRe.FindStringSubmatch(e.Msg); sm != nil {
			e.Msg = "unknown field " + quote(sm[1])
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
	if f == nil {
		return 0
	}
	if f.json {
		if f.data == nil && f.src != nil {
			// An error to place in a streamed file: rare, so read it whole
			// (a failure to is the load's error, which Load reports).
			f.data, _ = f.src.readAll()
		}
		return jsonLineOf(f.data, path)
	}
	if f.root == nil {
		var root yaml.Node
		if err := yaml.Unmarshal(f.data, &root); err != nil {
			return 0
		}
		f.root = &root
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
