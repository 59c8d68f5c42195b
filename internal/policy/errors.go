package policy

import (
	"fmt"
	"strconv"
	"strings"
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
