package policyedit

import (
	"bytes"
	"encoding/json"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// text is a policy's source as lines, each with its line ending, so edits
// touch only the lines they change and the rest stays byte for byte.
type text struct {
	lines []string
	eol   string // the file's line ending, for the lines an edit adds
}

func newText(data []byte) *text {
	t := &text{eol: "\n"}
	s := string(data)
	if i := strings.IndexByte(s, '\n'); i > 0 && s[i-1] == '\r' {
		t.eol = "\r\n"
	}
	for s != "" {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			t.lines = append(t.lines, s)
			break
		}
		t.lines = append(t.lines, s[:i+1])
		s = s[i+1:]
	}
	return t
}

func (t *text) bytes() []byte {
	var b bytes.Buffer
	for _, l := range t.lines {
		b.WriteString(l)
	}
	return b.Bytes()
}

// content is line n (1-based) without its line ending.
func (t *text) content(n int) string {
	return strings.TrimRight(t.lines[n-1], "\r\n")
}

// insertAfter adds lines (without endings) after line n; 0 inserts at the top.
func (t *text) insertAfter(n int, add ...string) {
	if n > 0 && !strings.HasSuffix(t.lines[n-1], "\n") {
		t.lines[n-1] += t.eol
	}
	out := make([]string, 0, len(t.lines)+len(add))
	out = append(out, t.lines[:n]...)
	for _, a := range add {
		out = append(out, a+t.eol)
	}
	t.lines = append(out, t.lines[n:]...)
}

// replace swaps bytes [from, to) of line n for s, keeping the line ending.
func (t *text) replace(n, from, to int, s string) {
	c := t.content(n)
	t.lines[n-1] = c[:from] + s + c[to:] + t.lines[n-1][len(c):]
}

// blankOrComment reports whether line n holds nothing but a comment.
func (t *text) blankOrComment(n int) bool {
	c := strings.TrimSpace(t.content(n))
	return c == "" || strings.HasPrefix(c, "#")
}

// lastContent backs up from line n over blank and comment-only lines (which
// belong to whatever follows), not above line floor.
func (t *text) lastContent(n, floor int) int {
	for n > floor && t.blankOrComment(n) {
		n--
	}
	return n
}

// offset converts yaml.v3's 1-based column (in characters) to a byte offset
// in line n.
func (t *text) offset(n, col int) int {
	c := t.content(n)
	i := 0
	for k := 1; k < col && i < len(c); k++ {
		_, size := utf8.DecodeRuneInString(c[i:])
		i += size
	}
	return i
}

// tokenEnd returns the byte offset just past the scalar or flow collection
// that starts at byte start of line n; ok is false when it does not end on
// that line (block scalars, multi-line quoted strings). In a flow collection
// a plain scalar also ends at ',', ']' or '}'.
func (t *text) tokenEnd(n, start int, flow bool) (int, bool) {
	c := t.content(n)
	if start >= len(c) {
		return start, true
	}
	switch c[start] {
	case '"':
		for i := start + 1; i < len(c); i++ {
			switch c[i] {
			case '\\':
				i++
			case '"':
				return i + 1, true
			}
		}
		return 0, false
	case '\'':
		for i := start + 1; i < len(c); i++ {
			if c[i] == '\'' {
				if i+1 < len(c) && c[i+1] == '\'' {
					i++
					continue
				}
				return i + 1, true
			}
		}
		return 0, false
	case '[', '{':
		depth := 0
		for i := start; i < len(c); i++ {
			switch c[i] {
			case '[', '{':
				depth++
			case ']', '}':
				if depth--; depth == 0 {
					return i + 1, true
				}
			case '"', '\'':
				end, ok := t.tokenEnd(n, i, true)
				if !ok {
					return 0, false
				}
				i = end - 1
			}
		}
		return 0, false
	case '|', '>':
		return 0, false
	}
	end := len(c)
	for i := start; i < len(c); i++ {
		if (c[i] == '#' && i > start && (c[i-1] == ' ' || c[i-1] == '\t')) ||
			(flow && (c[i] == ',' || c[i] == ']' || c[i] == '}')) {
			end = i
			break
		}
	}
	for end > start && (c[end-1] == ' ' || c[end-1] == '\t') {
		end--
	}
	return end, true
}

// hasComment reports whether line n has a comment after byte from.
func (t *text) hasComment(n, from int) bool {
	return strings.Contains(t.content(n)[from:], "#")
}

// scalar writes s as a YAML scalar: plain when that reads back as the same
// string (in a flow collection too, if flow), else double-quoted.
func scalar(s string, flow bool) string {
	if plainSafe(s) && !(flow && strings.ContainsAny(s, ",[]{}")) {
		return s
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string always encodes; JSON strings are YAML double-quoted scalars
	return strings.TrimSuffix(b.String(), "\n")
}

func plainSafe(s string) bool {
	if s == "" || s != strings.TrimSpace(s) || strings.ContainsAny(s, "\n\r\t\"'#&*!|>%@`:") {
		return false
	}
	if strings.ContainsAny(s[:1], "-?[]{},") {
		return false
	}
	var v any
	if err := yaml.Unmarshal([]byte(s), &v); err != nil {
		return false
	}
	got, ok := v.(string)
	return ok && got == s
}

func quoted(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
