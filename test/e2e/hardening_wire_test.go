package e2e

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/internal/envoytest"
)

// checkRaw sends data as a CheckRequest and decodes the answer with the
// generated (strict) type, as Envoy does: an answer Envoy could not parse
// fails the test.
func checkRaw(t *testing.T, p *proc, data []byte) *authv3.CheckResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []byte
	err := p.grpcConn().Invoke(ctx, authv3.Authorization_Check_FullMethodName, &data, &out, grpc.ForceCodecV2(envoytest.RawCodec{}))
	if err != nil {
		t.Fatalf("Check: %v (a request that reached keygate must be decided, never answered with an RPC error)", err)
	}
	resp := new(authv3.CheckResponse)
	if err := proto.Unmarshal(out, resp); err != nil {
		t.Fatalf("the answer does not parse as a CheckResponse: %v", err)
	}
	return resp
}

// Field numbers of the CheckRequest built by hand below.
const (
	fAttributes = 1  // CheckRequest.attributes
	fRequest    = 4  // AttributeContext.request
	fHTTP       = 2  // Request.http
	fMethod     = 2  // HttpRequest.method
	fHeaders    = 3  // HttpRequest.headers (map<string, string>)
	fPath       = 4  // HttpRequest.path
	fHost       = 5  // HttpRequest.host
	fBody       = 11 // HttpRequest.body
)

func pbString(num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
}

func pbMessage(num protowire.Number, fields ...[]byte) []byte {
	return protowire.AppendBytes(protowire.AppendTag(nil, num, protowire.BytesType), slices.Concat(fields...))
}

// rawCheckRequest encodes a CheckRequest without checking UTF-8; headers
// are name, value pairs.
func rawCheckRequest(method, path, body string, headers ...string) []byte {
	fields := [][]byte{pbString(fMethod, method), pbString(fPath, path), pbString(fHost, "api.example.com"), pbString(fBody, body)}
	for i := 0; i+1 < len(headers); i += 2 {
		fields = append(fields, pbMessage(fHeaders, pbString(1, headers[i]), pbString(2, headers[i+1])))
	}
	return pbMessage(fAttributes, pbMessage(fRequest, pbMessage(fHTTP, fields...)))
}

// TestWireInvalidUTF8Decided: Envoy forwards header values, paths and bodies
// that are not valid UTF-8, and proto3's UTF-8 rule would refuse them with
// INTERNAL, which failure_mode_allow lets through. keygate reads them as
// bytes and decides; a request that does not even parse is denied.
func TestWireInvalidUTF8Decided(t *testing.T) {
	t.Parallel()
	k := newKey(t, "acme", "", "api-bot", "sales")
	p := startKeygate(t, newPolicyFile(t, renderPolicy(simpleEndpoints, []cred{k}, nil)))
	const bad = "\xff\xfe\xc3"
	ok, unauthenticated, denied := codes.OK, codes.Unauthenticated, codes.PermissionDenied
	cases := []struct {
		name   string
		data   []byte
		code   codes.Code
		status int    // of the denied answer
		reason string // "": not asserted
	}{
		{"body and another header not UTF-8, valid key", rawCheckRequest("GET", "/whoami", bad, "authorization", "Bearer "+k.Raw, "user-agent", bad), ok, 0, "allowed"},
		{"key not UTF-8", rawCheckRequest("GET", "/whoami", "", "authorization", "Bearer "+bad), unauthenticated, 401, ""},
		{"x-api-key not UTF-8", rawCheckRequest("GET", "/whoami", "", "x-api-key", bad), unauthenticated, 401, ""},
		{"path not UTF-8 on an anonymous endpoint", rawCheckRequest("GET", "/docs/"+bad, ""), denied, 403, "bad_path"},
		{"header name not UTF-8", rawCheckRequest("GET", "/docs/a", "", "x-keygate-"+bad, "spoof"), denied, 403, "malformed_request"},
		{"truncated message", rawCheckRequest("GET", "/docs/a", "")[:9], denied, 403, "malformed_request"},
		{"not a protobuf", []byte{0xff, 0xff, 0xff}, denied, 403, "malformed_request"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			resp := checkRaw(t, p, c.data)
			if got := codes.Code(resp.GetStatus().GetCode()); got != c.code {
				t.Fatalf("status %v, want %v: %v", got, c.code, resp)
			}
			if c.status != 0 && int(resp.GetDeniedResponse().GetStatus().GetCode()) != c.status {
				t.Errorf("HTTP status %d, want %d", resp.GetDeniedResponse().GetStatus().GetCode(), c.status)
			}
			if c.reason != "" {
				if got := resp.GetDynamicMetadata().GetFields()["reason"].GetStringValue(); got != c.reason {
					t.Errorf("reason %q, want %q", got, c.reason)
				}
			}
		})
	}
	// A method that is not UTF-8 is decided too, whichever way.
	resp := checkRaw(t, p, rawCheckRequest(bad, "/whoami", "", "authorization", "Bearer "+k.Raw))
	if code := codes.Code(resp.GetStatus().GetCode()); code != ok && code != unauthenticated && code != denied {
		t.Errorf("method not UTF-8: status %v", code)
	}
}

// rawHTTP writes request to the HTTP listener as is and reads the answer.
func rawHTTP(t *testing.T, addr, request string) (*http.Response, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestHTTPAsteriskDecided: net/http answers `OPTIONS *` itself with 200
// unless told not to, which nginx or Envoy would take as an allow. Every
// request reaches keygate's handler, which denies `*` as a bad path.
func TestHTTPAsteriskDecided(t *testing.T) {
	t.Parallel()
	p := startKeygate(t, newPolicyFile(t, renderPolicy("endpoints:\n  - {name: all, match: {path: \"/**\"}, anonymous: true}\n", nil, nil)))
	for _, method := range []string{"OPTIONS", "GET"} {
		resp, body := rawHTTP(t, p.HTTPAddr, method+" * HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, `"forbidden"`) {
			t.Errorf("%s *: %d %q, want keygate's 403", method, resp.StatusCode, body)
		}
	}
}

// TestHTTPDefaultOriginIsTheRequestLine: with no --http-original-request,
// no header a client can send chooses the path: Envoy's http_service passes
// client headers on, and a lone X-Original-URI naming an anonymous path
// must not open a protected one.
func TestHTTPDefaultOriginIsTheRequestLine(t *testing.T) {
	t.Parallel()
	k := newKey(t, "acme", "", "api-bot", "sales")
	p := startKeygate(t, newPolicyFile(t, renderPolicy(simpleEndpoints, []cred{k}, nil)))
	for _, h := range []map[string]string{
		{"X-Original-URI": "/docs/x", "X-Original-Method": "GET"},
		{"X-Forwarded-Uri": "/docs/x", "X-Forwarded-Method": "GET"},
	} {
		resp := p.httpCheck(t, "GET", "", "/whoami", h)
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("X-Keygate-Endpoint") != "" {
			t.Errorf("GET /whoami with %v: %d (endpoint %q), want 401: a client header chose the path",
				h, resp.StatusCode, resp.Header.Get("X-Keygate-Endpoint"))
		}
	}
	if got := p.httpStatus(t, "GET", "/docs/x", nil); got != http.StatusOK {
		t.Errorf("GET /docs/x: %d, want 200", got)
	}
	if got := p.httpStatus(t, "GET", "/whoami", bearer(k.Raw)); got != http.StatusOK {
		t.Errorf("GET /whoami with a key: %d, want 200", got)
	}
}
