package server

import (
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/authz"
)

// HTTPAuth is the ext_authz HTTP adapter (Envoy's http_service). Envoy
// forwards the original method, path (after an optional path_prefix) and the
// allowed headers; only an exact 200 allows.
type HTTPAuth struct {
	authz      *authz.Authorizer
	log        *DecisionLog
	pathPrefix string
}

// NewHTTPAuth returns the HTTP adapter; pathPrefix is Envoy's
// http_service.path_prefix, removed before matching.
func NewHTTPAuth(a *authz.Authorizer, log *DecisionLog, pathPrefix string) *HTTPAuth {
	return &HTTPAuth{authz: a, log: log, pathPrefix: strings.TrimSuffix(pathPrefix, "/")}
}

// HeadersToRemoveHeader carries, on an allowed answer, the request headers
// Envoy must remove before the request goes upstream.
const HeadersToRemoveHeader = "x-envoy-auth-headers-to-remove"

func (h *HTTPAuth) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	start := time.Now()
	path := req.RequestURI
	if h.pathPrefix != "" {
		rest, found := strings.CutPrefix(path, h.pathPrefix)
		if !found || (rest != "" && rest[0] != '/' && rest[0] != '?') {
			rest = "" // not under the prefix: denied as a bad path
		}
		path = rest
	}
	r := authz.Request{
		Method:  req.Method,
		Host:    req.Host,
		Path:    path,
		Headers: authz.HTTPHeaders(req.Header),
	}
	d := h.authz.Decide(&r)
	id := ""
	if d.Result != authz.Allow || h.log.wants(&d) {
		id = authz.DecisionID(req.Header.Get("x-request-id"))
	}
	writeHTTPAnswer(w, &d, &r, id)
	if h.log.wants(&d) {
		src, _, _ := net.SplitHostPort(req.RemoteAddr)
		h.log.write(&d, entry{transport: "http", id: id, method: r.Method, path: r.Path, source: src, start: start})
	}
}

func writeHTTPAnswer(w http.ResponseWriter, d *authz.Decision, r *authz.Request, id string) {
	hdr := w.Header()
	switch d.Result {
	case authz.Allow:
		set := d.IdentityHeaders(make([]authz.Header, 0, 8))
		for _, kv := range set {
			hdr.Set(kv.Name, kv.Value)
		}
		if rm := d.HeadersToRemove(nil, r.Headers, set); len(rm) > 0 {
			hdr.Set(HeadersToRemoveHeader, strings.Join(rm, ","))
		}
		w.WriteHeader(http.StatusOK)
	case authz.Unavailable:
		http.Error(w, "keygate has no policy loaded yet", http.StatusServiceUnavailable)
	default:
		hdr.Set("Content-Type", "application/json")
		if c := d.Challenge(); c != "" {
			hdr.Set("WWW-Authenticate", c)
		}
		w.WriteHeader(d.Status)
		_, _ = w.Write([]byte(d.Body(id)))
	}
}
