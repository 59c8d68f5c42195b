package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// TestHTTPServerLimits: both HTTP servers bound what a request may make
// them hold, and answer what fits: headers up to the 96 KiB limit are
// decided and larger ones get 431; a body is never waited for (keygate
// decides on headers), a small one leaves the connection open for the
// next request, and a large one closes it.
func TestHTTPServerLimits(t *testing.T) {
	big := func(n int) [2]string { return [2]string{"X-Big", strings.Repeat("b", n)} }
	key := [2]string{"X-Api-Key", testKey}
	for _, tr := range httpTransports {
		t.Run(tr.name, func(t *testing.T) {
			addr := tr.serve(t, testHTTPAuth(t, "", OriginEnvoy))
			for _, c := range []struct {
				name    string
				headers [][2]string
				status  int
			}{
				{"90 KiB of headers", [][2]string{key, big(90 << 10)}, 200},
				{"100 KiB of headers", [][2]string{key, big(100 << 10)}, 431},
			} {
				resp, body := roundTrip(t, addr, rawRequest("POST", "/private", "api.example.test", c.headers...))
				if resp.StatusCode != c.status {
					t.Errorf("%s: %d %s, want %d", c.name, resp.StatusCode, body, c.status)
				}
			}

			for _, c := range []struct {
				name      string
				length    int // the Content-Length announced
				sent      int // the bytes of body sent
				keepAlive bool
			}{
				{"a small body", 1 << 10, 1 << 10, true},
				{"a body of 64 MiB, 16 KiB of it sent", 64 << 20, 16 << 10, false},
			} {
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
				head := strings.TrimSuffix(rawRequest("POST", "/private", "api.example.test", key), "\r\n")
				fmt.Fprintf(conn, "%sContent-Length: %d\r\n\r\n%s", head, c.length, strings.Repeat("x", c.sent))
				r := bufio.NewReader(conn)
				resp, err := http.ReadResponse(r, nil)
				if err != nil {
					t.Fatalf("%s: no answer before the body arrived: %v", c.name, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				if resp.StatusCode != 200 {
					t.Errorf("%s: %d, want 200", c.name, resp.StatusCode)
				}
				if c.keepAlive {
					fmt.Fprint(conn, rawRequest("POST", "/private", "api.example.test", key))
					if resp, err := http.ReadResponse(r, nil); err != nil || resp.StatusCode != 200 {
						t.Errorf("%s: the next request on the connection: %v, want 200", c.name, err)
					}
				} else if _, err := r.ReadByte(); err != io.EOF {
					t.Errorf("%s: the connection stayed open (%v): the rest of the body would be read", c.name, err)
				}
				conn.Close()
			}
		})
	}
}

// TestFastHTTPHeadersCopied: the strings keygate reads from a request live
// on after fasthttp reuses its buffers for the next one (the decision
// holds them), and name each header once, lower-case, repeated values
// joined with ",".
func TestFastHTTPHeadersCopied(t *testing.T) {
	var rh fasthttp.RequestHeader
	parse := func(raw string) {
		if err := rh.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
			t.Fatal(err)
		}
	}
	parse("GET /a/../b?x=%2F HTTP/1.1\r\nHost: Api.Example.Test\r\nX-API-KEY: k1\r\nx-org: o1\r\nX-Org: o2\r\n\r\n")
	var h fastHeaders
	method, host, target := h.read(&rh)
	fields := fmt.Sprint(h.fields)
	parse("POST /zzzzzzzzzzzz?y=1 HTTP/1.1\r\nHost: zzzzzzzzzzzzzzzz\r\nX-API-KEY: zz\r\nx-org: zz\r\nX-Org: zz\r\n\r\n")
	if method != "GET" || host != "Api.Example.Test" || target != "/a/../b?x=%2F" {
		t.Errorf("request line %q %q %q, want it as sent", method, host, target)
	}
	if got := fmt.Sprint(h.fields); got != fields || got != "[{host Api.Example.Test} {x-api-key k1} {x-org o1} {x-org o2}]" {
		t.Errorf("headers %s, then %s after the next request", fields, got)
	}
	m, err := rawHeaders(h.fields)
	if err != nil || m.Get("x-org") != "o1,o2" || m.Get("x-api-key") != "k1" {
		t.Errorf("joined: %v %v", m, err)
	}
}

// TestFastHTTPAllocations: the allow path allocates the call and one copy
// of the request's strings, nothing per header read or written.
func TestFastHTTPAllocations(t *testing.T) {
	h := testHTTPAuth(t, "", OriginEnvoy)
	var req fasthttp.Request
	raw := rawRequest("POST", "/private?x=1", "api.example.test", [2]string{"Authorization", "Bearer " + testKey},
		[2]string{"User-Agent", "test"}, [2]string{"Accept", "*/*"}, [2]string{"X-Keygate-Org", "forged"})
	if err := req.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		t.Fatal(err)
	}
	var ctx fasthttp.RequestCtx
	ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5000}, nil)
	serve := func() {
		ctx.Response.Reset()
		h.ServeFastHTTP(&ctx)
	}
	serve()
	if ctx.Response.StatusCode() != 200 || string(ctx.Response.Header.Peek("X-Envoy-Auth-Headers-To-Remove")) != "authorization,x-keygate-org" {
		t.Fatalf("answer %d %s, want an allow that strips the key and the forged header", ctx.Response.StatusCode(), ctx.Response.Header.String())
	}
	if n := testing.AllocsPerRun(100, serve); n > 3 {
		t.Errorf("%.0f allocations per allowed request, want at most 3 (the call, the strings, the list of headers to remove)", n)
	}
}
