package server_test

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/server"
)

// answerWriter is the part of net/http's response a handler touches: a
// fresh header map per request, as net/http gives each one, and the status.
type answerWriter struct {
	hdr    http.Header
	status int
}

func (w *answerWriter) Header() http.Header         { return w.hdr }
func (w *answerWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *answerWriter) WriteHeader(code int)        { w.status = code }

// BenchmarkHTTPAuth is the HTTP adapter's handler on the allow path the load
// benchmark drives (make bench-load-http), on each server: the request as
// the server hands it over, the decision, and the answer's headers, without
// the network, with metrics off and on.
func BenchmarkHTTPAuth(b *testing.B) {
	snap := benchSnapshot(b)
	const target = "/orgs/acme-eu/sales/q1?year=2026"
	headers := [][2]string{{"Authorization", "Bearer key-4242"}, {"User-Agent", "bench"}, {"Accept", "*/*"}, {"X-Request-Id", "8b1f9a0c"}}
	req, err := http.NewRequest(http.MethodGet, "http://api.example.com"+target, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.RequestURI, req.RemoteAddr = target, "10.0.0.1:53124"
	raw := "GET " + target + " HTTP/1.1\r\nHost: api.example.com\r\n"
	for _, kv := range headers {
		req.Header.Set(kv[0], kv[1])
		raw += kv[0] + ": " + kv[1] + "\r\n"
	}
	var freq fasthttp.Request
	if err := freq.Read(bufio.NewReader(strings.NewReader(raw + "\r\n"))); err != nil {
		b.Fatal(err)
	}
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("net/metrics=%v", on), func(b *testing.B) {
			a, obs := benchAuthorizer(b, snap, on)
			h := server.NewHTTPAuth(a, server.NewDecisionLog(zap.NewNop(), server.LogDenied), "", server.OriginEnvoy, obs)
			w := &answerWriter{hdr: http.Header{}}
			h.ServeHTTP(w, req)
			if w.status != http.StatusOK || w.hdr.Get("X-Keygate-User") != "u4242" || w.hdr.Get(server.HeadersToRemoveHeader) != "authorization" {
				b.Fatalf("answer %d %v, want an allow for u4242 that strips authorization", w.status, w.hdr)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				w.hdr = make(http.Header) // net/http makes one per request
				h.ServeHTTP(w, req)
			}
		})
	}
	for _, on := range []bool{false, true} {
		b.Run(fmt.Sprintf("fasthttp/metrics=%v", on), func(b *testing.B) {
			a, obs := benchAuthorizer(b, snap, on)
			h := server.NewHTTPAuth(a, server.NewDecisionLog(zap.NewNop(), server.LogDenied), "", server.OriginEnvoy, obs)
			var ctx fasthttp.RequestCtx
			ctx.Init(&freq, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 53124}, nil)
			h.ServeFastHTTP(&ctx)
			if ctx.Response.StatusCode() != http.StatusOK || string(ctx.Response.Header.Peek("X-Keygate-User")) != "u4242" ||
				string(ctx.Response.Header.Peek(server.HeadersToRemoveHeader)) != "authorization" {
				b.Fatalf("answer %s, want an allow for u4242 that strips authorization", ctx.Response.Header.String())
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ctx.Response.Reset() // fasthttp resets it between requests
				h.ServeFastHTTP(&ctx)
			}
		})
	}
}
