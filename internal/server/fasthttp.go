package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/authz"
)

// ServeFastHTTP is the adapter on fasthttp's server (--http-server
// fasthttp, the default): the same decision and answer as ServeHTTP, read
// from fasthttp's parsed request and written into its reused response.
func (h *HTTPAuth) ServeFastHTTP(ctx *fasthttp.RequestCtx) {
	// One allocation for the call and the header list, one for the request's
	// strings: both may outlive the request (the decision goes to the
	// observer), and fasthttp reuses its buffers for the next one.
	a := &fastAnswer{ctx: ctx, names: &h.names}
	method, host, target := a.hdr.read(&ctx.Request.Header)
	var hdr authz.Headers = &a.hdr
	if len(a.hdr.fields) > maxScannedHeaders || hasDuplicateName(a.hdr.fields) {
		m, err := rawHeaders(a.hdr.fields) // repeated names joined with ","
		if err != nil {
			// A header name that is not UTF-8: decided, 403
			// malformed_request, as the gRPC adapter decides it.
			a.c.r.Malformed = true
		}
		hdr = m
	}
	h.decide(&a.c, method, host, target, hdr)
	h.answer(a, &a.c)
	h.observe(&a.c)
	if a.c.logged {
		h.logDecision(&a.c, ctx.RemoteIP().String())
	}
}

// serveFastHTTPError answers a request fasthttp could not read. Headers
// larger than the limit get its 431 and a read timeout its 408, as
// net/http answers them; a connection that ended or failed halfway through
// a request is no request to decide (its 400 has no one to read it). Any
// other request fasthttp cannot parse (a target such as `GET *`, two Host
// headers, a malformed header line) is decided as the gRPC adapter decides
// a CheckRequest it cannot read: 403 malformed_request, counted and logged.
func (h *HTTPAuth) serveFastHTTPError(ctx *fasthttp.RequestCtx, err error) {
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.As(err, &small):
		ctx.Error("request header fields too large", fasthttp.StatusRequestHeaderFieldsTooLarge)
		return
	case errors.As(err, &netErr) && netErr.Timeout():
		ctx.Error("request timeout", fasthttp.StatusRequestTimeout)
		return
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.As(err, &opErr):
		ctx.Error("incomplete request", fasthttp.StatusBadRequest)
		return
	}
	a := &fastAnswer{ctx: ctx, names: &h.names}
	a.c.r.Malformed = true
	h.decide(&a.c, "", "", "", authz.MapHeaders(nil))
	h.answer(a, &a.c)
	h.observe(&a.c)
	if a.c.logged {
		h.logDecision(&a.c, ctx.RemoteIP().String())
	}
}

// fastAnswer writes an answer into fasthttp's response, which copies names
// and values into buffers it keeps across requests.
type fastAnswer struct {
	c     httpCall
	ctx   *fasthttp.RequestCtx
	names *canonicalNames
	hdr   fastHeaders
}

// header sets a header under its name canonicalized once per policy, as
// net/http's answer does: fasthttp's Set would canonicalize it again on
// every request. SetCanonical copies both name and value.
func (a *fastAnswer) header(name, value string) {
	a.ctx.Response.Header.SetCanonical(bytesOf(a.names.canonical(name)), bytesOf(value))
}

func (a *fastAnswer) send(status int, body string) {
	a.ctx.SetStatusCode(status)
	if body != "" {
		a.ctx.Response.SetBodyString(body)
	}
}

// bytesOf is s's bytes without a copy, for fasthttp calls that only read
// them (and copy them into their own buffers); never to be written.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// fastHeaders are a request's headers as they arrived, names lower-case, in
// one string with the request line: safe to keep, unlike fasthttp's
// buffers. Looked up by scanning, as the gRPC adapter's decoded headers
// are; ServeFastHTTP puts many or repeated ones in a map instead.
type fastHeaders struct {
	fields []authz.Header
	inline [inlineHeaders]authz.Header
}

// inlineHeaders are the headers a request's allocation holds; more take
// another. Proxies forward the client's headers (nginx all of them).
const inlineHeaders = 16

// read copies the request's method, raw target (fasthttp's URI, which
// decodes and normalizes the path, is never read: NormalizePath decides),
// Host and headers into one string, with one allocation. The headers are
// those fasthttp parsed, Cookie as sent (fasthttp's All would give its own
// serialization of the cookies it parsed).
func (h *fastHeaders) read(rh *fasthttp.RequestHeader) (method, host, target string) {
	m, t, hst := rh.Method(), rh.RequestURI(), rh.Host()
	// The raw header block holds every name and value, with room to spare
	// for the request line.
	buf := make([]byte, 0, len(m)+len(t)+len(hst)+len(rh.RawHeaders())+len("cookie"))
	buf = append(append(append(buf, m...), t...), hst...)
	type span struct{ name, value, end int }
	var spansBuf [inlineHeaders]span
	spans := spansBuf[:0]
	add := func(k, v []byte) {
		n := len(buf)
		buf = append(buf, k...)
		for i := n; i < len(buf); i++ {
			if c := buf[i]; 'A' <= c && c <= 'Z' {
				buf[i] = c + 'a' - 'A'
			}
		}
		nv := len(buf)
		buf = append(buf, v...)
		spans = append(spans, span{n, nv, len(buf)})
	}
	for _, v := range rh.PeekAll(fasthttp.HeaderCookie) { // before All parses them
		add(cookieName, v)
	}
	for k, v := range rh.All() {
		if string(k) != fasthttp.HeaderCookie {
			add(k, v)
		}
	}
	s := unsafe.String(unsafe.SliceData(buf), len(buf)) // buf is not written again
	method, target, host = s[:len(m)], s[len(m):len(m)+len(t)], s[len(m)+len(t):len(m)+len(t)+len(hst)]
	h.fields = h.inline[:0]
	for _, x := range spans {
		h.fields = append(h.fields, authz.Header{Name: s[x.name:x.value], Value: s[x.value:x.end]})
	}
	return method, host, target
}

var cookieName = []byte("cookie")

// Get implements authz.Headers.
func (h *fastHeaders) Get(name string) string {
	for i := range h.fields {
		if h.fields[i].Name == name {
			return h.fields[i].Value
		}
	}
	return ""
}

// Each implements authz.Headers.
func (h *fastHeaders) Each(fn func(string)) {
	for i := range h.fields {
		fn(h.fields[i].Name)
	}
}

// Fields are the headers, each name once; authz.Decision.HeadersToRemove
// walks them without a closure.
func (h *fastHeaders) Fields() []authz.Header { return h.fields }

// FastHTTPConfig is what serve sets on the fasthttp server.
type FastHTTPConfig struct {
	IdleTimeout time.Duration // --http-idle-timeout
	Log         *zap.Logger   // the server's own errors: accepting, malformed requests
}

// Limits of the ext_authz HTTP port's fasthttp server, as serve sets them
// on net/http's.
const (
	// fastReadTimeout bounds reading a request's headers (and the first
	// bytes of a body), as net/http's ReadHeaderTimeout does.
	fastReadTimeout = 10 * time.Second
	// fastMaxHeaderBytes is net/http's MaxHeaderBytes as serve sets it:
	// fasthttp reads a request's headers into one buffer of this size per
	// active connection, and answers 431 to larger ones.
	fastMaxHeaderBytes = 96 << 10
	// fastBodyPrefetch is the most of a body read before the handler runs;
	// keygate reads none. Up to 256 KiB more is discarded after the answer
	// to keep the connection, as net/http does, and a longer body closes
	// it.
	fastBodyPrefetch = 8 << 10
)

// NewFastHTTPServer returns the ext_authz HTTP port's server on fasthttp,
// with net/http's protections as serve sets them: the header read timeout,
// the idle timeout, the header size limit, no body read beyond a small
// bound, no Server header, and every request decided (no `OPTIONS *` of
// its own). Requests it cannot parse get its 400 (431 for headers too
// large), which every proxy treats as a denial. Its errors are logged
// without request bytes, which may hold credentials.
func NewFastHTTPServer(h *HTTPAuth, cfg FastHTTPConfig) *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                      h.ServeFastHTTP,
		ReadTimeout:                  fastReadTimeout,
		IdleTimeout:                  cfg.IdleTimeout,
		ReadBufferSize:               fastMaxHeaderBytes,
		MaxRequestBodySize:           fastBodyPrefetch,
		StreamRequestBody:            true,
		DisablePreParseMultipartForm: true,
		NoDefaultServerHeader:        true,
		NoDefaultContentType:         true,
		SecureErrorLogMessage:        true,
		CloseOnShutdown:              true,
		Logger:                       fastLogger{cfg.Log},
		ErrorHandler:                 h.serveFastHTTPError,
	}
}

// fastLogger logs fasthttp's messages through zap. The error it reports
// about a connection quotes the request (a malformed header line, the
// target) even with SecureErrorLogMessage, and a request may carry a
// credential: such arguments are left out, addresses and network errors
// kept. A connection's error is logged at debug level (serveFastHTTPError
// has answered it, and decided it when it was a request), the rest
// (accepting connections) at info, as net/http's ErrorLog is.
type fastLogger struct{ log *zap.Logger }

func (l fastLogger) Printf(format string, args ...any) {
	for i, a := range args {
		switch a.(type) {
		case net.Addr, *net.OpError, int, time.Duration:
		default:
			args[i] = "(not shown: it may quote the request)"
		}
	}
	if strings.HasPrefix(format, "error when serving connection") {
		l.log.Debug(fmt.Sprintf(format, args...))
		return
	}
	l.log.Info(fmt.Sprintf(format, args...))
}
