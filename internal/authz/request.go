package authz

import (
	"net/http"
	"strings"
	"unicode/utf8"
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

// Get implements Headers. A header sent several times reads as its values
// joined with ",", as Envoy joins them in the gRPC CheckRequest's map: the
// same request gets the same decision through either adapter, and two keys
// or two organizations are never read as the first one. Looking up a header
// sent once, or not at all, allocates nothing.
func (h HTTPHeaders) Get(name string) string {
	var vs []string
	var buf [64]byte
	if key, ok := canonicalKey(buf[:0], name); ok {
		vs = h[string(key)] // indexing with a converted []byte does not allocate
	} else {
		vs = http.Header(h).Values(name)
	}
	switch len(vs) {
	case 0:
		return ""
	case 1:
		return vs[0]
	}
	return strings.Join(vs, ",")
}

// canonicalKey appends name in the form net/http stores header names in
// ("X-Api-Key") to dst, as textproto.CanonicalMIMEHeaderKey does without
// allocating; ok is false when name does not fit in dst's capacity or is not
// a token, which textproto leaves alone.
func canonicalKey(dst []byte, name string) ([]byte, bool) {
	if len(name) > cap(dst) {
		return nil, false
	}
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !tchar(c) {
			return nil, false
		}
		switch {
		case upper && 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		case !upper && 'A' <= c && c <= 'Z':
			c += 'a' - 'A'
		}
		dst = append(dst, c)
		upper = c == '-'
	}
	return dst, true
}

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
	// Malformed: the adapter could not read the request (a CheckRequest
	// that does not decode). It is denied, 403 malformed_request, rather
	// than answered with an error that failure_mode_allow would let through.
	Malformed bool
}

// ContextEndpointKey is the context extension that names an endpoint.
const ContextEndpointKey = "keygate_endpoint"

// NormalizePath returns the path without query or fragment, escapes of
// unreserved characters decoded (others kept, in upper-case hex), "." and ".."
// segments resolved and repeated slashes merged, as RFC 3986 and Envoy's
// normalize_path do. It
// refuses (ok false) what cannot be normalized safely: a path that does not
// start with "/", ".." above the root, an encoded "/" or "\", a backslash,
// a control character, bytes that are not UTF-8 or a malformed escape. A path
// that is already clean is returned without allocating.
func NormalizePath(raw string) (string, bool) {
	if i := strings.IndexAny(raw, "?#"); i >= 0 {
		raw = raw[:i]
	}
	if raw == "" || raw[0] != '/' {
		return "", false
	}
	clean, ascii := true, true
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c < 0x20 || c == 0x7f || c == '\\':
			return "", false
		case c >= utf8.RuneSelf:
			ascii = false
		case c == '%':
			clean = false
		case c == '/' && i+1 < len(raw):
			if n := raw[i+1]; n == '/' || (n == '.' && dotSegmentAt(raw, i+1)) {
				clean = false
			}
		}
	}
	if !ascii && !utf8.ValidString(raw) {
		return "", false // no pattern names such bytes, and a backend may read them otherwise
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

// tchar reports whether c may appear in an RFC 9110 token (methods,
// header names, auth schemes).
func tchar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// standardMethods are RFC 9110's and PATCH: what a policy names.
var standardMethods = [...]string{"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"}

// canonicalMethod returns the method upper-cased, as the policy's methods
// are, so that "delete" meets a DELETE rule the way a backend that ignores
// case would route it. ok is false when it is not an RFC 9110 token (empty,
// blanks, control or non-ASCII bytes, separators): no rule can be said to
// match it. An upper-case method is returned as is, and a standard one in
// any case as a constant: neither allocates.
func canonicalMethod(m string) (string, bool) {
	if m == "" {
		return "", false
	}
	lower := false
	for i := 0; i < len(m); i++ {
		c := m[i]
		if !tchar(c) {
			return "", false
		}
		lower = lower || 'a' <= c && c <= 'z'
	}
	if !lower {
		return m, true
	}
	for _, s := range standardMethods {
		if strings.EqualFold(m, s) { // ASCII only here: m is a token
			return s, true
		}
	}
	return strings.ToUpper(m), true
}

// bearerForm says what an Authorization value is to keygate.
type bearerForm uint8

const (
	notBearer       bearerForm = iota // another scheme (Basic, ...): the upstream's, left alone
	bearerOK                          // a bearer token
	bearerMalformed                   // looks like a bearer credential but is not one: refused
)

// bearerToken reads an Authorization value: the scheme "bearer" in any case
// (RFC 7235), one or more SP or HTAB, one token68 (RFC 6750's b64token),
// optional blanks. A value that starts with "bearer" but is not exactly
// that ("Bearer", "Bearer a b", "bearer:KEY", "BearerKEY"), or that carries
// a bearer credential after a comma (two Authorization headers joined), is
// malformed: refused, never skipped, or a key that keygate did not verify
// would reach the upstream.
func bearerToken(v string) (string, bearerForm) {
	const scheme = "bearer"
	v = trimSpace(v)
	if len(v) < len(scheme) || !strings.EqualFold(v[:len(scheme)], scheme) {
		if listsBearer(v) {
			return "", bearerMalformed
		}
		return "", notBearer
	}
	rest := v[len(scheme):]
	if rest == "" || (rest[0] != ' ' && rest[0] != '\t') {
		return "", bearerMalformed
	}
	tok := trimSpace(rest)
	if !token68(tok) {
		return "", bearerMalformed
	}
	return tok, bearerOK
}

// listsBearer reports whether an element of a comma-separated value other
// than the first starts with "bearer".
func listsBearer(v string) bool {
	for {
		i := strings.IndexByte(v, ',')
		if i < 0 {
			return false
		}
		v = trimSpace(v[i+1:])
		if len(v) >= 6 && strings.EqualFold(v[:6], "bearer") {
			return true
		}
	}
}

// token68 is RFC 7235's: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func token68(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}
