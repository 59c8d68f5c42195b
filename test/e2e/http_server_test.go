package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keygate/keygate/test/internal/harness"
)

// TestHTTPServerDrainsOnSIGTERM: on either --http-server, SIGTERM closes
// an idle keep-alive connection and keygate exits 0 within
// --drain-timeout. fasthttp also answers the request a proxy is halfway
// through sending (Envoy and nginx reuse connections, and a request cut
// off is a 5xx or a retry for them); net/http closes such a connection
// unanswered once it has read the request (its conn.serve returns when
// the server is shutting down).
func TestHTTPServerDrainsOnSIGTERM(t *testing.T) {
	t.Parallel()
	k := newKey(t, "acme", "", "api-bot", "sales")
	policy := newPolicyFile(t, renderPolicy(simpleEndpoints, []cred{k}, nil))
	for _, server := range []string{"fasthttp", "net"} {
		t.Run(server, func(t *testing.T) {
			t.Parallel()
			p := startKeygate(t, policy, "--http-server", server, "--drain-timeout", "5s")
			request := fmt.Sprintf("GET /whoami HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\n\r\n", defaultHost, k.Raw)

			idle, err := net.Dial("tcp", p.HTTPAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer idle.Close()
			_ = idle.SetDeadline(time.Now().Add(10 * time.Second))
			idleR := bufio.NewReader(idle)
			fmt.Fprint(idle, request)
			if resp, err := http.ReadResponse(idleR, nil); err != nil || resp.StatusCode != 200 {
				t.Fatalf("first request: %v, want 200", err)
			}

			half, err := net.Dial("tcp", p.HTTPAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer half.Close()
			_ = half.SetDeadline(time.Now().Add(10 * time.Second))
			cut := len(request) / 2
			fmt.Fprint(half, request[:cut])
			time.Sleep(200 * time.Millisecond) // the server has read the first half

			signaled := time.Now()
			if err := p.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if _, err := idleR.ReadByte(); err != io.EOF {
				t.Errorf("the idle connection: %v, want it closed on SIGTERM", err)
			}
			time.Sleep(200 * time.Millisecond)
			fmt.Fprint(half, request[cut:])
			halfR := bufio.NewReader(half)
			if server == "fasthttp" {
				resp, err := http.ReadResponse(halfR, nil)
				if err != nil || resp.StatusCode != 200 || resp.Header.Get("X-Keygate-Key-Id") != k.ID {
					t.Fatalf("the request in flight at SIGTERM: %v %v, want its allow", resp, err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
			}
			if _, err := halfR.ReadByte(); err != io.EOF {
				t.Errorf("the connection of the request in flight stayed open (%v), want it closed", err)
			}
			if err := p.WaitExit(10 * time.Second); err != nil || p.ExitCode() != 0 {
				t.Errorf("exit %d %v, want 0", p.ExitCode(), err)
			}
			if took := time.Since(signaled); took > 5*time.Second {
				t.Errorf("exited %v after SIGTERM, past the 5s drain timeout", took.Round(time.Millisecond))
			}
		})
	}
}

// TestHTTPServerFlag: --http-server names the server and nothing else.
func TestHTTPServerFlag(t *testing.T) {
	t.Parallel()
	r := harness.Run(t, 30*time.Second, "serve", "--policy", newPolicyFile(t, renderPolicy(simpleEndpoints, nil, nil)), "--http-server", "nginx")
	if r.Code == 0 || !strings.Contains(r.Out.String(), `--http-server must be fasthttp or net, not "nginx"`) {
		t.Errorf("exit %d, output %q: want the flag refused, naming both servers", r.Code, r.Out.String())
	}
}
