package server

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
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

// FuzzHTTPRequest sends arbitrary request bytes through fasthttp's parser
// and the adapter as the fasthttp server does, and the same bytes through
// net/http's: nothing panics, every answer is one a proxy reads as an
// allow or a denial (200, 401, 403, or 400 and 431 from the parser), an
// allow says how the caller authenticated and names only credentials that
// were presented, and what fasthttp allows net/http, when it reads the
// request at all, allows with the same identity and the same headers to
// remove.
func FuzzHTTPRequest(f *testing.F) {
	_, h := fuzzServers(f)
	for _, raw := range []string{
		rawRequest("GET", "/o/o1/x", "api", [2]string{"Authorization", "Bearer kg-fuzz-key"}),
		rawRequest("GET", "/_auth", "api", [2]string{"X-Original-Uri", "/o/o2/x"}, [2]string{"X-Original-Method", "GET"}, [2]string{"X-Api-Key", "kg-fuzz-key"}),
		rawRequest("POST", "/both", "api:80", [2]string{"X-Api-Key", "kg-fuzz-key"}, [2]string{"Session", "kg-fuzz-session"}, [2]string{"X-Keygate-User", "admin"}),
		rawRequest("GET", "/open/a?x=1", "api", [2]string{"Cookie", "a=b; session=kg-fuzz-session"}, [2]string{"cookie", "c=d"}),
		rawRequest("GET", "/h", "api", [2]string{"X-Api-Key", "kg-fuzz-key"}, [2]string{"X-Org", "o1"}, [2]string{"x-org", "o2"}),
		rawRequest("GET", "*", "api", [2]string{"X-Api-Key", "kg-fuzz-key"}),
		rawRequest("GET", "/o/%2e%2e/o1", "api", [2]string{"X-Api-Key", "kg-fuzz-key"}, [2]string{"X-A", "1\r\n 2"}),
		"GET http://evil/o/o1/x HTTP/1.1\r\nHost: api\r\nX-Api-Key: kg-fuzz-key\r\n\r\n",
		"GET /o/o1/x HTTP/1.0\r\nX-Api-Key: kg-fuzz-key\r\nX Y: z\r\n\r\n",
		"POST /o/o1/x HTTP/1.1\r\nHost: api\r\nX-Api-Key: kg-fuzz-key\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	} {
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		// The server reads the headers, then at most a little of the body,
		// which keygate does not read: the headers decide.
		var req fasthttp.Request
		var ctx fasthttp.RequestCtx
		err := req.Header.Read(bufio.NewReader(strings.NewReader(raw)))
		ctx.Init(&req, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 5000}, nil)
		if err != nil {
			h.serveFastHTTPError(&ctx, err)
		} else {
			h.ServeFastHTTP(&ctx)
		}
		status := ctx.Response.StatusCode()
		fast := map[string]string{}
		for k, v := range ctx.Response.Header.All() {
			fast[strings.ToLower(string(k))] = string(v)
		}
		switch status {
		case 200:
			if fast["x-keygate-auth"] == "" {
				t.Fatalf("an allow that does not say how the caller authenticated: %v", fast)
			}
			for _, id := range []string{fast["x-keygate-key-id"], fast["x-keygate-session-id"]} {
				if id != "" && !presentedIn(raw, id) {
					t.Fatalf("allowed as %s, which was not presented", id)
				}
			}
		case 401, 403:
		case 400, 431:
			if err == nil {
				t.Fatalf("%d for a request fasthttp read", status)
			}
		default:
			t.Fatalf("status %d", status)
		}

		nreq, nerr := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if status != 200 || nerr != nil {
			return
		}
		nreq.RemoteAddr = "10.0.0.1:5000"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, nreq)
		for _, name := range []string{"x-keygate-user", "x-keygate-key-id", "x-keygate-session-id", "x-keygate-org", "x-keygate-auth", HeadersToRemoveHeader} {
			if rec.Code != 200 || rec.Header().Get(name) != fast[name] {
				t.Fatalf("fasthttp allowed with %v; net/http answered %d with %v", fast, rec.Code, rec.Header())
			}
		}
	})
}

// presentedIn reports whether the raw request carried the credential
// behind an identity keygate asserted.
func presentedIn(raw, id string) bool {
	for cred, cid := range fuzzCreds {
		if cid == id && strings.Contains(raw, cred) {
			return true
		}
	}
	return false
}
