package policy

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Error is one problem in a policy, located by file, line and field path.
type Error struct {
	File string // file name or ConfigMap/key
	Line int    // 1-based; 0 when unknown
	Path string // e.g. endpoints[3].groups[0]
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in a policy, in file and line order. Its
// Error method gives one line: the first problem and how many more there are.
type Errors []*Error

func (es Errors) Error() string {
	switch len(es) {
	case 0:
		return "no errors"
	case 1:
		return es[0].Error()
	default:
		return fmt.Sprintf("%s (and %d more)", es[0].Error(), len(es)-1)
	}
}

// Lines returns each error on a line of its own.
func (es Errors) Lines() []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Error()
	}
	return out
}

// maxQuoted is the longest value from a policy an error message quotes
// whole. A longer one is as likely to be a secret pasted in the wrong place
// as a name, so only its first quotedPrefix bytes are shown, with its length:
// enough to find it, and for a keygate key exactly its public id (kg_ and
// 8 characters and "_").
const (
	maxQuoted    = 32
	quotedPrefix = 12
)

// quote is %q for a value from a policy: whole when short, else its start,
// "…" and its length, such as "kg_7Hq2pXa1_"… (50 bytes).
func quote(v string) string {
	if len(v) <= maxQuoted {
		return strconv.Quote(v)
	}
	n := quotedPrefix
	for n > 0 && !utf8.RuneStart(v[n]) {
		n--
	}
	return strconv.Quote(v[:n]) + "… (" + strconv.Itoa(len(v)) + " bytes)"
}

// policyValue is a string argument of a located error: %q quotes it with
// quote; other verbs print it as it is (they format keygate's own words).
type policyValue string

func (v policyValue) Format(f fmt.State, verb rune) {
	if verb == 'q' {
		_, _ = io.WriteString(f, quote(string(v)))
		return
	}
	_, _ = io.WriteString(f, string(v))
}

// quotedValues makes every string argument a policyValue, so each value a
// message quotes with %q is bounded without every message saying so.
func quotedValues(args []any) []any {
	out := make([]any, len(args))
	for i, a := range args {
		if s, ok := a.(string); ok {
			a = policyValue(s)
		}
		out[i] = a
	}
	return out
}
