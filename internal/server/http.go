package server

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/authz"
)

// HTTPAuth is the ext_authz HTTP adapter, for Envoy's http_service, nginx
// auth_request and Caddy/Traefik forward auth. Only an exact 200 allows.
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

// original reconstructs the request the proxy is asking about. Each proxy
// sets its own headers and passes the client's other headers on, so the
// rule reads only what the chosen proxy sets:
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
// never guesses.
func (h *HTTPAuth) original(req *http.Request) (method, host, path string) {
	origin := h.origin
	if origin == OriginEnvoy { // the default: no header lookups
		return h.requestLine(req)
	}
	xOriginal, xForwarded := req.Header.Get("X-Original-Uri"), req.Header.Get("X-Forwarded-Uri")
	if origin == OriginAuto {
		switch {
		case xOriginal != "" && xForwarded != "":
			return req.Method, req.Host, ""
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
		return proxyNamed(req.Header.Get("X-Original-Method"), req.Host, xOriginal)
	case OriginXForwarded:
		host = req.Header.Get("X-Forwarded-Host")
		if host == "" {
			host = req.Host
		}
		return proxyNamed(req.Header.Get("X-Forwarded-Method"), host, xForwarded)
	}
	return h.requestLine(req)
}

// requestLine is the request as Envoy's http_service sends it: method,
// Host and path, less path_prefix.
func (h *HTTPAuth) requestLine(req *http.Request) (method, host, path string) {
	path = req.RequestURI
	if h.pathPrefix != "" {
		rest, found := strings.CutPrefix(path, h.pathPrefix)
		if !found || (rest != "" && rest[0] != '/' && rest[0] != '?') {
			rest = "" // not under the prefix: denied as a bad path
		}
		path = rest
	}
	return req.Method, req.Host, path
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

func (h *HTTPAuth) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	method, host, path := h.original(req)
	r := authz.Request{
		Method:  method,
		Host:    host,
		Path:    path,
		Headers: authz.HTTPHeaders(req.Header),
	}
	// The decision escapes (to the observer) and the answer's header values
	// to net/http's map: one allocation holds both.
	a := &httpAnswer{d: h.authz.Decide(&r)}
	d := &a.d
	logged := h.log.wants(d)
	id := ""
	if d.Result != authz.Allow || logged {
		id = authz.DecisionID(req.Header.Get("x-request-id"))
	}
	h.writeAnswer(w, a, &r, id)
	h.obs.ObserveDecision("http", d, time.Since(start))
	if logged {
		src, _, _ := net.SplitHostPort(req.RemoteAddr)
		h.log.write(d, entry{transport: "http", id: id, method: r.Method, path: r.Path, source: src, start: start})
	}
}

// httpAnswer is a decision and the values of the headers its allow sets:
// at most 8 identity headers and the list of headers to remove.
type httpAnswer struct {
	d    authz.Decision
	vals [9]string
}

func (h *HTTPAuth) writeAnswer(w http.ResponseWriter, a *httpAnswer, r *authz.Request, id string) {
	d, hdr := &a.d, w.Header()
	switch d.Result {
	case authz.Allow:
		set := d.IdentityHeaders(make([]authz.Header, 0, 8))
		var rmBuf [4]string
		rm := d.HeadersToRemove(rmBuf[:0], r.Headers, set)
		// Written into the map under names canonicalized once per policy
		// (hdr.Set would canonicalize, and allocate, every name on every
		// request), with one backing array for all the values.
		n := len(set)
		if len(rm) > 0 {
			n++
		}
		vals := a.vals[:0]
		if n > len(a.vals) {
			vals = make([]string, 0, n)
		}
		vals = vals[:n]
		for i, kv := range set {
			vals[i] = kv.Value
			hdr[h.names.canonical(kv.Name)] = vals[i : i+1 : i+1]
		}
		if len(rm) > 0 {
			vals[n-1] = strings.Join(rm, ",")
			hdr[canonicalHeadersToRemove] = vals[n-1 : n : n]
		}
		w.WriteHeader(http.StatusOK)
	case authz.Unavailable:
		http.Error(w, "keygate has no policy loaded yet", http.StatusServiceUnavailable)
	default:
		hdr.Set("Content-Type", "application/json")
		if c := d.Challenge(); c != "" {
			hdr.Set("WWW-Authenticate", c)
		}
		for _, h := range d.RateLimitHeaders(nil) {
			hdr.Set(h.Name, h.Value)
		}
		w.WriteHeader(d.Status)
		_, _ = w.Write([]byte(d.Body(id)))
	}
}

var canonicalHeadersToRemove = http.CanonicalHeaderKey(HeadersToRemoveHeader)

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
