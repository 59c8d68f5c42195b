package policy

import (
	"fmt"
	"strings"
)

type segKind uint8

const (
	segLiteral segKind = iota
	segCapture         // {name}: one segment, captured
	segStar            // *: one segment
	segRest            // **: any rest, possibly empty; last only
)

type segment struct {
	kind segKind
	lit  string // literal text, or the capture's name
}

// pattern is a compiled path pattern such as /orgs/{org}/sales/**.
type pattern struct {
	segs []segment
}

func compilePattern(p string) (pattern, error) {
	if p == "" {
		return pattern{}, fmt.Errorf("path is required")
	}
	if p[0] != '/' {
		return pattern{}, fmt.Errorf("path %s must start with /", quote(p))
	}
	if strings.ContainsAny(p, "?#") {
		return pattern{}, fmt.Errorf("path %s must not contain a query or fragment", quote(p))
	}
	if p == "/" {
		return pattern{}, nil
	}
	parts := strings.Split(p[1:], "/")
	var pt pattern
	seen := map[string]bool{}
	for i, s := range parts {
		switch {
		case s == "":
			return pattern{}, fmt.Errorf("path %s has an empty segment", quote(p))
		case s == "." || s == "..":
			return pattern{}, fmt.Errorf("path %s has a %s segment", quote(p), quote(s))
		case s == "**":
			if i != len(parts)-1 {
				return pattern{}, fmt.Errorf("path %s: ** must be the last segment", quote(p))
			}
			pt.segs = append(pt.segs, segment{kind: segRest})
		case s == "*":
			pt.segs = append(pt.segs, segment{kind: segStar})
		case strings.HasPrefix(s, "{") && strings.HasSuffix(s, "}"):
			name := s[1 : len(s)-1]
			if !isIdent(name) {
				return pattern{}, fmt.Errorf("path %s: capture {%s} needs a name of letters, digits, - and _", quote(p), name)
			}
			if seen[name] {
				return pattern{}, fmt.Errorf("path %s captures {%s} twice", quote(p), name)
			}
			seen[name] = true
			pt.segs = append(pt.segs, segment{kind: segCapture, lit: name})
		case strings.ContainsAny(s, "{}*"):
			return pattern{}, fmt.Errorf("path %s: segment %s mixes text with {, } or *; a wildcard must be a whole segment", quote(p), quote(s))
		default:
			pt.segs = append(pt.segs, segment{kind: segLiteral, lit: s})
		}
	}
	return pt, nil
}

func (pt pattern) captureIndex(name string) int {
	for i, s := range pt.segs {
		if s.kind == segCapture && s.lit == name {
			return i
		}
	}
	return -1
}

// match reports whether the normalized path matches, and returns the
// segment at index capture (or "" when capture < 0). It does not allocate.
// "/a/" has two segments, "a" and "", so it matches /a/** but not /a.
func (pt pattern) match(path string, capture int) (string, bool) {
	if len(path) == 0 || path[0] != '/' {
		return "", false
	}
	rest := path[1:]
	more := rest != ""
	var captured string
	for i, s := range pt.segs {
		if s.kind == segRest {
			return captured, true
		}
		if !more {
			return "", false
		}
		seg := rest
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			seg, rest = rest[:j], rest[j+1:]
		} else {
			rest, more = "", false
		}
		switch s.kind {
		case segLiteral:
			if seg != s.lit {
				return "", false
			}
		default:
			if seg == "" {
				return "", false
			}
		}
		if i == capture {
			captured = seg
		}
	}
	if more {
		return "", false
	}
	return captured, true
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c == '-' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}
