package authz

import (
	"net/http"
	"strings"
)

// Headers gives read access to a request's headers by lower-case name.
type Headers interface {
	Get(name string) string
	// Each calls fn with every header name, lower-case.
	Each(fn func(name string))
}

// MapHeaders are headers as Envoy sends them over gRPC: lower-case keys.
type MapHeaders map[string]string

// Get implements Headers.
func (m MapHeaders) Get(name string) string { return m[name] }

// Each implements Headers.
func (m MapHeaders) Each(fn func(string)) {
	for k := range m {
		fn(k)
	}
}

// HTTPHeaders adapts net/http's canonical headers.
type HTTPHeaders http.Header

// Get implements Headers.
func (h HTTPHeaders) Get(name string) string { return http.Header(h).Get(name) }

// Each implements Headers.
func (h HTTPHeaders) Each(fn func(string)) {
	for k := range h {
		fn(strings.ToLower(k))
	}
}

// Request is what a decision needs from a request, independent of transport.
type Request struct {
	Method   string
	Host     string // as received; may carry a port
	Path     string // as received: undecoded, may carry a query string
	Headers  Headers
	Endpoint string // Envoy's context extension keygate_endpoint, if any
}

// ContextEndpointKey is the context extension that names an endpoint.
const ContextEndpointKey = "keygate_endpoint"

// NormalizePath returns the path without query or fragment, escapes of
// unreserved characters decoded (others kept, in upper-case hex), "." and ".."
// segments resolved and repeated slashes merged, as RFC 3986 and Envoy's
// normalize_path do. It
// refuses (ok false) what cannot be normalized safely: a path that does not
// start with "/", ".." above the root, an encoded "/" or "\", a backslash,
// a control character or a malformed escape. A path that is already clean is
// returned without allocating.
func NormalizePath(raw string) (string, bool) {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	if raw == "" || raw[0] != '/' {
		return "", false
	}
	clean := true
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c < 0x20 || c == 0x7f || c == '\\':
			return "", false
		case c == '%':
			clean = false
		case c == '/' && i+1 < len(raw):
			if n := raw[i+1]; n == '/' || (n == '.' && dotSegmentAt(raw, i+1)) {
				clean = false
			}
		}
	}
	if clean {
		return raw, true
	}
	return normalizeSlow(raw)
}

// dotSegmentAt reports whether raw[i:] starts with a "." or ".." segment.
func dotSegmentAt(raw string, i int) bool {
	rest := raw[i:]
	return rest == "." || rest == ".." || strings.HasPrefix(rest, "./") || strings.HasPrefix(rest, "../")
}

func normalizeSlow(raw string) (string, bool) {
	decoded := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '%' {
			decoded = append(decoded, c)
			continue
		}
		if i+2 >= len(raw) {
			return "", false
		}
		h, l := unhex(raw[i+1]), unhex(raw[i+2])
		if h < 0 || l < 0 {
			return "", false
		}
		b := byte(h<<4 | l)
		switch {
		case b == '/' || b == '\\' || b < 0x20 || b == 0x7f:
			return "", false
		case unreserved(b):
			decoded = append(decoded, b)
		default:
			// Reserved and other bytes stay encoded, as RFC 3986 and
			// Envoy's normalize_path keep them: "/%3F" is not "/?".
			decoded = append(decoded, '%', upperHex[b>>4], upperHex[b&0xf])
		}
		i += 2
	}
	segs := strings.Split(string(decoded[1:]), "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case "", ".":
			trailing = last
		case "..":
			if len(out) == 0 {
				return "", false
			}
			out = out[:len(out)-1]
			trailing = last
		default:
			out = append(out, s)
			trailing = false
		}
	}
	p := "/" + strings.Join(out, "/")
	if trailing && len(out) > 0 {
		p += "/"
	}
	return p, true
}

const upperHex = "0123456789ABCDEF"

// unreserved are the bytes RFC 3986 says are the same encoded or not.
func unreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c - 'a' + 10)
	case c >= 'A' && c <= 'F':
		return int(c - 'A' + 10)
	}
	return -1
}

// NormalizeHost lower-cases a host and drops its port and any trailing dot,
// so that endpoints match "api.example.com" with or without ":8443".
func NormalizeHost(h string) string {
	if strings.HasPrefix(h, "[") { // IPv6 literal
		if i := strings.IndexByte(h, ']'); i > 0 {
			h = h[:i+1]
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		h = h[:i]
	}
	h = strings.TrimSuffix(h, ".")
	for i := 0; i < len(h); i++ {
		if c := h[i]; c >= 'A' && c <= 'Z' {
			return strings.ToLower(h)
		}
	}
	return h
}

// bearerToken returns the token of an "Authorization: Bearer <token>" value;
// the scheme is case-insensitive (RFC 7235).
func bearerToken(v string) (string, bool) {
	const scheme = "bearer"
	if len(v) <= len(scheme)+1 || !strings.EqualFold(v[:len(scheme)], scheme) || v[len(scheme)] != ' ' {
		return "", false
	}
	tok := strings.Trim(v[len(scheme)+1:], " \t")
	return tok, tok != ""
}
