package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
)

// TestOverloadAndLimits: oversized and absurd requests are answered (denied,
// or allowed on their merits) with bounded memory; a request past the
// message limit is refused by gRPC itself; and health checks keep answering
// while the server is flooded with them.
func TestOverloadAndLimits(t *testing.T) {
	t.Parallel()
	k := newKey(t, "acme", "", "api-bot", "sales")
	p := startKeygate(t, newPolicyFile(t, renderPolicy(simpleEndpoints, []cred{k}, nil)),
		"--decision-log", "denied", "--grpc-max-recv-msg-size", strconv.Itoa(10<<20))
	conn := p.grpcConn()
	client := authv3.NewAuthorizationClient(conn)
	call := grpc.MaxCallSendMsgSize(64 << 20)

	t.Run("10,000 headers with a valid key", func(t *testing.T) {
		h := map[string]string{"authorization": "Bearer " + k.Raw, "x-keygate-user": "mallory"}
		for i := 0; i < 10_000; i++ {
			h[fmt.Sprintf("x-filler-%d", i)] = strings.Repeat("v", 32)
		}
		resp, err := client.Check(context.Background(), grpcRequest(answerCase{method: "GET", host: defaultHost, path: "/whoami", headers: h}), call)
		if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
			t.Fatalf("got %v %v, want an OK answer", resp.GetStatus(), err)
		}
		rm := resp.GetOkResponse().GetHeadersToRemove()
		if len(rm) != 1 || rm[0] != "authorization" {
			t.Errorf("headers_to_remove %v: want only the credential (the spoofed user is overwritten)", rm)
		}
	})
	t.Run("1 MB path", func(t *testing.T) {
		resp, err := client.Check(context.Background(), grpcRequest(answerCase{method: "GET", host: defaultHost,
			path: "/" + strings.Repeat("a", 1<<20), headers: bearer(k.Raw)}), call)
		if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.PermissionDenied {
			t.Fatalf("got %v %v, want PERMISSION_DENIED (no endpoint matches)", resp.GetStatus(), err)
		}
		if n := len(resp.GetDeniedResponse().GetBody()); n > 512 {
			t.Errorf("a denial body of %d bytes: the answer must not grow with the request", n)
		}
	})
	t.Run("past the message limit gRPC refuses before keygate decides", func(t *testing.T) {
		_, err := client.Check(context.Background(), grpcRequest(answerCase{method: "GET", host: defaultHost,
			path: "/whoami", headers: map[string]string{"x-big": strings.Repeat("b", 11<<20)}}), call)
		if status.Code(err) != codes.ResourceExhausted {
			t.Fatalf("got %v, want RESOURCE_EXHAUSTED", err)
		}
	})
	t.Run("HTTP header block past the limit", func(t *testing.T) {
		// fasthttp answers 431 and closes without draining what the client
		// is still sending, so a client that has not finished writing the
		// 200 KiB may see the connection reset before it reads the 431.
		// Either way the request is refused, never allowed.
		req, err := http.NewRequest("GET", "http://"+p.HTTPAddr+"/whoami", nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("x-big", strings.Repeat("b", 200<<10))
		resp, err := httpClient.Do(req)
		switch {
		case err != nil && (errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)):
			t.Logf("connection reset while the client was still writing: %v", err)
		case err != nil:
			t.Fatalf("HTTP GET /whoami: %v", err)
		default:
			_ = resp.Body.Close()
			if resp.StatusCode != 431 {
				t.Errorf("status %d, want 431 (a non-200: Envoy and nginx deny)", resp.StatusCode)
			}
		}
	})

	t.Run("health answers while flooded", func(t *testing.T) {
		big := grpcRequest(answerCase{method: "GET", host: defaultHost, path: "/" + strings.Repeat("a/", 256<<10), headers: bearer(k.Raw)})
		ctx, stop := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for w := 0; w < 16; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 200 && ctx.Err() == nil; i++ {
					_, _ = client.Check(ctx, big, call)
				}
			}()
		}
		health := healthpb.NewHealthClient(p.grpcConn())
		for i := 0; i < 5; i++ {
			hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			hr, err := health.Check(hctx, &healthpb.HealthCheckRequest{})
			cancel()
			if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				t.Errorf("health check %d under load: %v %v", i, hr.GetStatus(), err)
			}
			if code, _ := p.Admin("/readyz"); code != 200 {
				t.Errorf("/readyz %d under load", code)
			}
			time.Sleep(100 * time.Millisecond)
		}
		stop()
		wg.Wait()
		m, err := p.Memory()
		switch {
		case err != nil:
			t.Skipf("keygate's RSS: %v", err)
		case m.RSS>>20 > 400:
			t.Errorf("RSS %d MiB after the flood: memory must stay bounded", m.RSS>>20)
		default:
			t.Logf("RSS after the flood: %d MiB", m.RSS>>20)
		}
	})
}
