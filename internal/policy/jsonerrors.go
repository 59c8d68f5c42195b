package policy

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// yamlFallbackMax is the largest JSON source whose decoding errors are
// located by re-reading it with the YAML decoder, which words them best and
// reports them all. Past it, that would take gigabytes (a node per value):
// a large JSON policy's first error is located from the JSON decoder's own
// offset instead.
const yamlFallbackMax = 4 << 20

// jsonError is an error of decodeJSON's own, at a byte offset.
type jsonError struct {
	offset  int64
	pointer jsontext.Pointer
	msg     string
}

func (e *jsonError) Error() string { return e.msg }

// jsonErrors locates a JSON decoding error and words it as the YAML path
// would.
func jsonErrors(name string, data []byte, err error) error {
	e := &Error{File: name, Msg: err.Error()}
	var offset int64
	var pointer jsontext.Pointer
	var sem *json.SemanticError
	var syn *jsontext.SyntacticError
	var own *jsonError
	switch {
	case errors.As(err, &own):
		offset, pointer = own.offset, own.pointer
	case errors.As(err, &sem):
		offset, pointer = sem.ByteOffset, sem.JSONPointer
		switch {
		case errors.Is(sem.Err, json.ErrUnknownName):
			e.Msg = "unknown field " + quote(pointer.LastToken())
			pointer = pointer.Parent()
		case sem.Err != nil:
			e.Msg = sem.Err.Error()
		case sem.GoType != nil:
			got := kindName(sem.JSONKind)
			if len(sem.JSONValue) > 0 && len(sem.JSONValue) <= 64 && sem.JSONKind != '{' && sem.JSONKind != '[' {
				got = string(sem.JSONValue)
			}
			e.Msg = fmt.Sprintf("%s has the wrong type here (want %s)", got, goTypeName(sem.GoType.String()))
		}
	case errors.As(err, &syn):
		offset, pointer = syn.ByteOffset, syn.JSONPointer
		if syn.Err != nil {
			e.Msg = syn.Err.Error()
		}
	}
	var path []any
	for tok := range pointer.Tokens() {
		if i, err := strconv.Atoi(tok); err == nil {
			path = append(path, i)
		} else {
			path = append(path, tok)
		}
	}
	if syn != nil {
		e.Line = jsonSyntaxLine(data, int(offset), e.Msg)
		e.Msg = jsonSyntaxMessage(e.Msg)
		if errors.Is(syn.Err, jsontext.ErrDuplicateName) && len(path) > 0 {
			// Worded as yaml.v3 words it, with the first one's line.
			e.Msg = fmt.Sprintf("mapping key %q already defined at line %d", pointer.LastToken(), jsonLineOf(data, path))
			path = path[:len(path)-1]
		}
	} else {
		e.Line = lineAt(data, int(offset))
	}
	e.Path = formatPath(path)
	return Errors{e}
}

// lineAt is the line of the first token at or after offset.
func lineAt(data []byte, offset int) int {
	offset = min(max(offset, 0), len(data))
	for offset < len(data) {
		switch data[offset] {
		case ' ', '\t', '\r', '\n', ',', ':':
			offset++
			continue
		}
		break
	}
	return 1 + bytes.Count(data[:offset], []byte("\n"))
}

// jsonLineOf finds the line of the value at path (object names and array
// indexes) in a JSON document, or of the deepest ancestor that exists. It
// walks the text once and builds nothing.
func jsonLineOf(data []byte, path []any) int {
	dec := jsontext.NewDecoder(bytes.NewBuffer(data))
	at := func() int { return lineAt(data, int(dec.InputOffset())) }
	line := at()
	for _, p := range path {
		switch k := p.(type) {
		case string:
			if dec.PeekKind() != '{' {
				return line
			}
			if _, err := dec.ReadToken(); err != nil {
				return line
			}
			for {
				if dec.PeekKind() != '"' {
					return line
				}
				nameLine := at()
				tok, err := dec.ReadToken()
				if err != nil {
					return line
				}
				if tok.String() == k {
					line = nameLine
					break
				}
				if dec.SkipValue() != nil {
					return line
				}
			}
		case int:
			if dec.PeekKind() != '[' {
				return line
			}
			if _, err := dec.ReadToken(); err != nil {
				return line
			}
			for range k {
				if dec.PeekKind() == ']' || dec.SkipValue() != nil {
					return line
				}
			}
			if dec.PeekKind() == ']' {
				return line
			}
			line = at()
		}
	}
	return line
}

// kindName says what a JSON value is, in the policy's terms.
func kindName(k jsontext.Kind) string {
	switch k {
	case '{':
		return "a mapping"
	case '[':
		return "a list"
	case '"':
		return "a string"
	case '0':
		return "a number"
	case 't', 'f':
		return "true or false"
	case 'n':
		return "null"
	}
	return "a value"
}
