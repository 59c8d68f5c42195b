package policy

import (
	"bytes"
	"fmt"
	"io"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// msgUnclosedQuote is yaml.v3's only use of these words: the text ended
// inside a quoted value.
const msgUnclosedQuote = "found unexpected end of stream"

// syntaxHints say what usually causes a yaml.v3 syntax error, once it is
// placed on its line.
var syntaxHints = map[string]string{
	"did not find expected key":           "check this line's indentation",
	"did not find expected '-' indicator": "check this line's indentation",
	"incomplete UTF-8 octet sequence":     "a policy is UTF-8 text",
	"invalid leading UTF-8 octet":         "a policy is UTF-8 text",
	"invalid trailing UTF-8 octet":        "a policy is UTF-8 text",
}

// yamlSyntaxError locates a YAML syntax error on the line where the text
// goes wrong. yaml.v3 names the line where the token or the block around the
// problem began, and for a block counts it from 0: a key indented one space
// too few at line 68 was reported at line 4, a comment before the first
// key. Where the text goes wrong is the first line whose inclusion makes the
// parse fail with this very error: a prefix of the text that stops before
// that line either parses or fails otherwise (it ends inside a value or a
// bracket), and every longer one fails the same way. The last line yaml.v3
// read before failing is that line or the next (it reads a few bytes
// ahead), so locating costs two or three more parses of the text; when
// the parser failed only at the end of something long, such as a bracket
// never closed, a binary search over the lines before finds it.
func yamlSyntaxError(name string, data []byte, err error) *Error {
	e := &Error{File: name}
	e.Msg, e.Line = splitYAMLError(err.Error())
	r := &lineReader{data: data}
	if yamlDecodeError(r) != err.Error() {
		return e // not a parse error that prefixes reproduce
	}
	// The prefix through the last line read fails as the whole text does:
	// the parser made the same decisions on the same bytes.
	ends := lineEnds(data)
	lo := min(max(e.Line, 1), len(ends))
	p := max(1+bytes.Count(data[:max(r.n-1, 0)], []byte("\n")), lo)
	parsed := map[int]string{} // how the prefix through line n fails
	prefixFails := func(n int) string {
		if _, ok := parsed[n]; !ok {
			parsed[n] = yamlParseError(data[:ends[n-1]])
		}
		return parsed[n]
	}
	fails := func(n int) bool { return prefixFails(n) == err.Error() }
	if len(data) <= syntaxWalkMax && p > lo && fails(p-1) {
		hi := p - 1
		for lo < hi {
			if mid := (lo + hi) / 2; fails(mid) {
				hi = mid
			} else {
				lo = mid + 1
			}
		}
		p = lo
	}
	e.Line = p
	if e.Msg == msgUnclosedQuote {
		e.Msg = "quoted value is not closed before the end of the file"
		return e
	}
	// A quote left open reads on, legally, to the next quote on a later
	// line, and the text after that one breaks: the line to fix is the one
	// the open quote is on.
	if p == 1 || len(data) > syntaxWalkMax {
		return withHint(e)
	}
	if msg, q := splitYAMLError(prefixFails(p - 1)); msg == msgUnclosedQuote && q > 0 && q < p {
		e.Msg = fmt.Sprintf("quoted value is not closed on this line: it runs on to line %d, where the text does not parse (%s)", p, e.Msg)
		e.Line = q
		return e
	}
	return withHint(e)
}

// withHint adds to a placed syntax error what usually causes it.
func withHint(e *Error) *Error {
	if hint := syntaxHints[e.Msg]; hint != "" {
		e.Msg += " (" + hint + ")"
	}
	return e
}

// syntaxWalkMax is the largest source in which yamlSyntaxError looks back
// from the last line read, a parse per step: past it (a key set, best kept
// in JSON) the line named is the last one read, the right one or the next.
const syntaxWalkMax = 4 << 20

// lineReader hands yaml.v3 its input a line at a time, so that how much it
// has read when it fails says where it stopped: on the last line handed
// out, or the one before when it was only peeking ahead.
type lineReader struct {
	data []byte
	n    int
}

func (r *lineReader) Read(p []byte) (int, error) {
	if r.n == len(r.data) {
		return 0, io.EOF
	}
	line := r.data[r.n:]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i+1]
	}
	n := copy(p, line)
	r.n += n
	return n, nil
}

// splitYAMLError splits a yaml.v3 error message into its text and its line
// (0 when it names none).
func splitYAMLError(s string) (string, int) {
	s = strings.TrimSpace(s)
	if sm := yamlLineRe.FindStringSubmatch(s); sm != nil {
		line, _ := strconv.Atoi(sm[1])
		return sm[2], line
	}
	return strings.TrimPrefix(s, "yaml: "), 0
}

// yamlParseError is the error parsing the first document of data gives, as
// text ("" when it parses).
func yamlParseError(data []byte) string { return yamlDecodeError(bytes.NewReader(data)) }

func yamlDecodeError(r io.Reader) string {
	var n yaml.Node
	if err := yaml.NewDecoder(r).Decode(&n); err != nil {
		return err.Error()
	}
	return ""
}

// lineEnds is the offset just past each line of data.
func lineEnds(data []byte) []int {
	var ends []int
	for i := 0; i < len(data); {
		j := bytes.IndexByte(data[i:], '\n')
		if j < 0 {
			ends = append(ends, len(data))
			break
		}
		i += j + 1
		ends = append(ends, i)
	}
	return ends
}

// jsonSyntaxMessage words a JSON syntax error: a string left open fails at
// the end of its line, where JSON allows no line break.
func jsonSyntaxMessage(msg string) string {
	if strings.HasPrefix(msg, `invalid character '\n' in string`) {
		return "string is not closed on this line (a JSON string holds no line break)"
	}
	return msg
}

// jsonSyntaxLine is the line to fix a JSON syntax error on: the line of the
// byte the decoder stopped at or, when a ',' or ':' is missing or the text
// ends early, the line of the value before, where the separator or the
// closing bracket belongs.
func jsonSyntaxLine(data []byte, offset int, msg string) int {
	offset = min(max(offset, 0), len(data))
	if offset == len(data) || strings.Contains(msg, "after object value") ||
		strings.Contains(msg, "after array element") || strings.Contains(msg, "after object name") {
		for offset > 0 && isJSONSpace(data[offset-1]) {
			offset--
		}
		offset = max(offset-1, 0)
	}
	return 1 + bytes.Count(data[:offset], []byte("\n"))
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }
