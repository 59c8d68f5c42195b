package server

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/authz"
)

// HTTPAuth is the ext_authz HTTP adapter, for Envoy's http_service, nginx
// auth_request and Caddy/Traefik forward auth. Only an exact 200 allows.
// It serves on net/http (ServeHTTP) or fasthttp (ServeFastHTTP), which
// share everything from reading the original request to the answer.
type HTTPAuth struct {
	authz      *authz.Authorizer
	log        *DecisionLog
	pathPrefix string
	origin     Origin
	obs        Observer
	names      canonicalNames
}

// Origin says where the HTTP adapter reads the original request from.
type Origin uint8

const (
	// OriginEnvoy, the default: the request line only; Envoy forwards the
	// original method and path (after path_prefix). No header a client
	// sends can choose the path.
	OriginEnvoy Origin = iota
	// OriginXOriginal: X-Original-Method and X-Original-URI (nginx).
	OriginXOriginal
	// OriginXForwarded: X-Forwarded-Method, X-Forwarded-Uri, X-Forwarded-Host.
	OriginXForwarded
	// OriginAuto: X-Original-URI if present (nginx), else X-Forwarded-Uri
	// (Caddy, Traefik), else the request line (Envoy http_service). Only for
	// an operator who picks it: behind a proxy that passes a client's
	// X-Original-URI or X-Forwarded-Uri on (Envoy's http_service passes the
	// headers it is told to), that client chooses the path.
	OriginAuto
)

// ParseOrigin reads the --http-original-request flag.
func ParseOrigin(s string) (Origin, error) {
	switch s {
	case "auto":
		return OriginAuto, nil
	case "envoy":
		return OriginEnvoy, nil
	case "x-original":
		return OriginXOriginal, nil
	case "x-forwarded":
		return OriginXForwarded, nil
	}
	return 0, fmt.Errorf("original request must be auto, envoy, x-original or x-forwarded, not %q", s)
}

// NewHTTPAuth returns the HTTP adapter; pathPrefix is Envoy's
// http_service.path_prefix, removed before matching; obs may be nil.
func NewHTTPAuth(a *authz.Authorizer, log *DecisionLog, pathPrefix string, origin Origin, obs Observer) *HTTPAuth {
	return &HTTPAuth{authz: a, log: log, pathPrefix: strings.TrimSuffix(pathPrefix, "/"), origin: origin, obs: orNop(obs)}
}

// original reconstructs the request the proxy is asking about from what
// the transport received: the request line's method and target (as sent,
// never decoded), the Host and the headers. Each proxy sets its own headers
// and passes the client's other headers on, so the rule reads only what the
// chosen proxy sets:
//   - envoy: the request line and Host (Envoy builds both);
//   - x-original (nginx): X-Original-Method, X-Original-URI, and the
//     subrequest's Host (nginx always sets it; proxy_set_header Host $host
//     makes it the original one);
//   - x-forwarded (Caddy, Traefik): X-Forwarded-Method, -Uri and -Host.
//
// auto picks by which path header is present, and refuses when both are:
// one of them came from the client. A lone one may have too, which is why
// auto is never the default. A path header without its method is
// refused too. A refusal is an empty path, denied as a bad path: keygate
// never guesses. A header sent several times reads as its values joined,
// as every header does.
func (h *HTTPAuth) original(method, host, target string, hdr authz.Headers) (string, string, string) {
	origin := h.origin
	if origin == OriginEnvoy { // the default: no header lookups
		return method, host, h.requestPath(target)
	}
	xOriginal, xForwarded := hdr.Get("x-original-uri"), hdr.Get("x-forwarded-uri")
	if origin == OriginAuto {
		switch {
		case xOriginal != "" && xForwarded != "":
			return method, host, ""
		case xOriginal != "":
			origin = OriginXOriginal
		case xForwarded != "":
			origin = OriginXForwarded
		default:
			origin = OriginEnvoy
		}
	}
	switch origin {
	case OriginXOriginal:
		return proxyNamed(hdr.Get("x-original-method"), host, xOriginal)
	case OriginXForwarded:
		if fh := hdr.Get("x-forwarded-host"); fh != "" {
			host = fh
		}
		return proxyNamed(hdr.Get("x-forwarded-method"), host, xForwarded)
	}
	return method, host, h.requestPath(target)
}

// requestPath is the request line's target as Envoy's http_service sends
// it, less path_prefix.
func (h *HTTPAuth) requestPath(target string) string {
	if h.pathPrefix == "" {
		return target
	}
	rest, found := strings.CutPrefix(target, h.pathPrefix)
	if !found || (rest != "" && rest[0] != '/' && rest[0] != '?') {
		return "" // not under the prefix: denied as a bad path
	}
	return rest
}

// proxyNamed is the request a proxy named in headers; without its method the
// path is refused.
func proxyNamed(method, host, path string) (string, string, string) {
	if method == "" {
		return "", host, ""
	}
	return method, host, path
}

// HeadersToRemoveHeader carries, on an allowed answer, the request headers
// Envoy must remove before the request goes upstream.
const HeadersToRemoveHeader = "x-envoy-auth-headers-to-remove"

// noPolicyBody answers every request before the first policy loads, as
// net/http's http.Error writes it.
const noPolicyBody = "keygate has no policy loaded yet\n"

// httpCall is one request through the HTTP adapter, whichever server read
// it: the request keygate decided and its decision.
type httpCall struct {
	r      authz.Request
	d      authz.Decision
	id     string // the decision id, on a denial or a logged decision
	start  time.Time
	logged bool
}

// decide reads the original request from what the transport received (see
// original) and decides it; a transport that could not read the headers
// has set c.r.Malformed, and the request is denied as malformed.
func (h *HTTPAuth) decide(c *httpCall, method, host, target string, hdr authz.Headers) {
	c.start = time.Now()
	method, host, path := h.original(method, host, target, hdr)
	c.r = authz.Request{Method: method, Host: host, Path: path, Headers: hdr, Malformed: c.r.Malformed}
	c.d = h.authz.Decide(&c.r)
	c.logged = h.log.wants(&c.d)
	if c.d.Result != authz.Allow || c.logged {
		c.id = authz.DecisionID(hdr.Get("x-request-id"))
	}
}

// answerWriter is the answer as a transport writes it: headers under
// lower-case names, each set once, then the status and body.
type answerWriter interface {
	header(name, value string)
	send(status int, body string)
}

// answer writes c's decision: an allow's 200 with the identity headers and
// the headers Envoy must remove; a denial's status, JSON body, challenge
// and rate-limit headers; 503 before the first policy.
func (h *HTTPAuth) answer(w answerWriter, c *httpCall) {
	d := &c.d
	switch d.Result {
	case authz.Allow:
		set := d.IdentityHeaders(make([]authz.Header, 0, 8))
		var rmBuf [4]string
		rm := d.HeadersToRemove(rmBuf[:0], c.r.Headers, set)
		for _, kv := range set {
			w.header(kv.Name, kv.Value)
		}
		if len(rm) > 0 {
			w.header(HeadersToRemoveHeader, strings.Join(rm, ","))
		}
		w.send(http.StatusOK, "")
	case authz.Unavailable:
		w.header("content-type", "text/plain; charset=utf-8")
		w.header("x-content-type-options", "nosniff")
		w.send(http.StatusServiceUnavailable, noPolicyBody)
	default:
		w.header("content-type", "application/json")
		if ch := d.Challenge(); ch != "" {
			w.header("www-authenticate", ch)
		}
		var rl [3]authz.Header
		for _, kv := range d.RateLimitHeaders(rl[:0]) {
			w.header(kv.Name, kv.Value)
		}
		w.send(d.Status, d.Body(c.id))
	}
}

// observe counts c's decision; a transport then logs it when c.logged,
// with the client's address.
func (h *HTTPAuth) observe(c *httpCall) {
	h.obs.ObserveDecision("http", &c.d, time.Since(c.start))
}

func (h *HTTPAuth) logDecision(c *httpCall, source string) {
	h.log.write(&c.d, entry{transport: "http", id: c.id, method: c.r.Method, path: c.r.Path, source: source, start: c.start})
}

// ServeHTTP is the adapter on net/http's server (--http-server net).
func (h *HTTPAuth) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	// The call escapes (its decision to the observer, the answer's header
	// values to net/http's map): one allocation holds both.
	a := &netAnswer{w: w, hdr: w.Header(), names: &h.names}
	h.decide(&a.c, req.Method, req.Host, req.RequestURI, authz.HTTPHeaders(req.Header))
	h.answer(a, &a.c)
	h.observe(&a.c)
	if a.c.logged {
		src, _, _ := net.SplitHostPort(req.RemoteAddr)
		h.logDecision(&a.c, src)
	}
}

// netAnswer writes an answer into net/http's header map, under names
// canonicalized once per policy (hdr.Set would canonicalize, and allocate,
// every name on every request), with one backing array for the values.
type netAnswer struct {
	c     httpCall
	w     http.ResponseWriter
	hdr   http.Header
	names *canonicalNames
	vals  [9]string // at most 8 identity headers and the headers to remove
	n     int
}

func (a *netAnswer) header(name, value string) {
	var v []string
	if a.n < len(a.vals) {
		a.vals[a.n] = value
		v = a.vals[a.n : a.n+1 : a.n+1]
		a.n++
	} else {
		v = []string{value}
	}
	a.hdr[a.names.canonical(name)] = v
}

func (a *netAnswer) send(status int, body string) {
	a.w.WriteHeader(status)
	if body != "" {
		_, _ = io.WriteString(a.w, body)
	}
}

// maxCanonicalNames bounds canonicalNames: identity header names come from
// the policy, a handful per prefix, so only a policy reloaded with ever new
// prefixes reaches it; past it, names are canonicalized per request.
const maxCanonicalNames = 256

// canonicalNames maps header names to the form net/http keys its maps by
// ("x-keygate-user" to "X-Keygate-User"). The hot path reads it without a
// lock; a name not seen yet copies the map with it added. Two requests
// adding at once may lose one addition, which is only canonicalized again.
type canonicalNames struct {
	m atomic.Pointer[map[string]string]
}

func (c *canonicalNames) canonical(name string) string {
	var m map[string]string
	if p := c.m.Load(); p != nil {
		m = *p
		if cn, ok := m[name]; ok {
			return cn
		}
	}
	cn := http.CanonicalHeaderKey(name)
	if len(m) < maxCanonicalNames {
		next := make(map[string]string, len(m)+1)
		for k, v := range m {
			next[k] = v
		}
		next[name] = cn
		c.m.Store(&next)
	}
	return cn
}
