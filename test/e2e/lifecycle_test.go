package e2e

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/keygate/keygate/test/internal/harness"
)

// listenFlags are serve's three listen flags on free loopback ports, for a
// keygate run to completion (harness.Run) that must refuse to start.
func listenFlags(t *testing.T) []string {
	t.Helper()
	addrs, err := harness.FreeAddrs(3)
	if err != nil {
		t.Fatal(err)
	}
	return []string{"--grpc-addr", addrs[0], "--http-addr", addrs[1], "--admin-addr", addrs[2]}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

func TestStartupWithInvalidPolicy(t *testing.T) {
	t.Parallel()
	t.Run("broken policy", func(t *testing.T) {
		t.Parallel()
		k := newKey(t, "acme", "", "api-bot", "sales")
		good := renderPolicy(simpleEndpoints, []cred{k}, nil)
		broken := strings.Replace(good, "    require: [api_key]\n", "    require: [api_key]\n    requires: [session]\n", 1)
		line := lineOf(t, broken, "requires: [session]")
		path := newPolicyFile(t, broken)
		r := harness.Run(t, 10*time.Second, append([]string{"serve", "--policy", path}, listenFlags(t)...)...)
		code, stderr, took := r.Code, r.Stderr.String(), r.Took
		if code == 0 {
			t.Fatalf("keygate exited 0 with a broken policy; stderr:\n%s", stderr)
		}
		if took > 5*time.Second {
			t.Errorf("keygate took %v to refuse a broken policy", took)
		}
		last := lastLine(stderr)
		if !strings.HasPrefix(last, "keygate: load policy:") {
			t.Errorf("last stderr line %q, want it to start with %q", last, "keygate: load policy:")
		}
		if want := fmt.Sprintf("%s:%d", path, line); !strings.Contains(last, want) {
			t.Errorf("last stderr line %q does not name %s", last, want)
		}
		t.Logf("exit %d after %v: %s", code, took.Round(time.Millisecond), last)
	})
	t.Run("missing policy file", func(t *testing.T) {
		t.Parallel()
		path := filepath.Join(t.TempDir(), "nope.yaml")
		r := harness.Run(t, 10*time.Second, append([]string{"serve", "--policy", path}, listenFlags(t)...)...)
		code, stderr := r.Code, r.Stderr.String()
		last := lastLine(stderr)
		if code == 0 || !strings.HasPrefix(last, "keygate: load policy:") || !strings.Contains(last, path) {
			t.Errorf("exit %d, last stderr line %q; want non-zero and a load policy error naming %s", code, last, path)
		}
	})
	t.Run("no --policy", func(t *testing.T) {
		t.Parallel()
		r := harness.Run(t, 10*time.Second, append([]string{"serve"}, listenFlags(t)...)...)
		code, stderr := r.Code, r.Stderr.String()
		if code == 0 {
			t.Fatalf("keygate serve without --policy exited 0; stderr:\n%s", stderr)
		}
		if !strings.Contains(stderr, "policy source is required") || !strings.Contains(stderr, "--policy FILE") {
			t.Errorf("stderr %q does not say a --policy is required", stderr)
		}
	})
}

func TestSIGTERMDrains(t *testing.T) {
	t.Parallel()
	k := newKey(t, "acme", "", "api-bot", "sales")
	const drain = 5 * time.Second
	p := startKeygate(t, newPolicyFile(t, renderPolicy(simpleEndpoints, []cred{k}, nil)),
		"--drain-timeout", drain.String())
	client := authv3.NewAuthorizationClient(p.grpcConn())
	allowReq := grpcRequest(answerCase{method: "GET", host: defaultHost, path: "/whoami", headers: bearer(k.Raw)})
	denyReq := grpcRequest(answerCase{method: "GET", host: defaultHost, path: "/whoami"})

	const workers, perWorker, signalAfter = 8, 200, 400
	var (
		done       atomic.Int64
		sigOnce    sync.Once
		sigAt      time.Time
		mu         sync.Mutex
		answered   = map[codes.Code]int{}
		rpcErrors  = map[codes.Code]int{}
		bad        []string
		wg         sync.WaitGroup
		afterSig   atomic.Int64
		signaledAt atomic.Bool
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, want := allowReq, codes.OK
			if w%2 == 1 {
				req, want = denyReq, codes.Unauthenticated
			}
			for i := 0; i < perWorker; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := client.Check(ctx, req)
				cancel()
				if signaledAt.Load() {
					afterSig.Add(1)
				}
				if n := done.Add(1); n == signalAfter {
					sigOnce.Do(func() {
						sigAt = time.Now()
						signaledAt.Store(true)
						_ = p.Signal(syscall.SIGTERM)
					})
				}
				mu.Lock()
				if err != nil {
					rpcErrors[status.Code(err)]++
					if c := status.Code(err); c != codes.Unavailable {
						bad = append(bad, fmt.Sprintf("RPC error %v: %v", c, err))
					}
				} else {
					c := codes.Code(resp.GetStatus().GetCode())
					answered[c]++
					switch {
					case c != want:
						bad = append(bad, fmt.Sprintf("answer %v (%q), want %v", c, resp.GetStatus().GetMessage(), want))
					case want == codes.OK && resp.GetOkResponse() == nil:
						bad = append(bad, "OK answer without ok_response")
					case want != codes.OK && resp.GetDeniedResponse() == nil:
						bad = append(bad, "deny answer without denied_response")
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if !signaledAt.Load() {
		t.Fatal("SIGTERM was never sent")
	}
	err := p.WaitExit(drain + 5*time.Second)
	exitAfter := time.Since(sigAt)
	if err != nil {
		t.Fatal(err)
	}
	if code := p.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	if exitAfter > drain+2*time.Second {
		t.Errorf("exited %v after SIGTERM; drain timeout is %v", exitAfter, drain)
	}
	if !strings.Contains(p.Out.String(), "shutting down") {
		t.Errorf("log does not say shutting down:\n%s", p.Out.Tail(20))
	}
	if len(bad) > 0 {
		t.Errorf("%d bad answers during shutdown, e.g. %s", len(bad), strings.Join(bad[:min(5, len(bad))], "; "))
	}
	if answered[codes.OK] == 0 || answered[codes.Unauthenticated] == 0 {
		t.Errorf("answers %v: want both allowed and denied answers", answered)
	}
	t.Logf("answers %v, RPC errors %v, %d checks completed after SIGTERM, exit %d after %v",
		answered, rpcErrors, afterSig.Load(), p.ExitCode(), exitAfter.Round(time.Millisecond))
}

// TestShutdownDelayKeepsAnswering: with --shutdown-delay, SIGTERM first
// turns readiness and gRPC health to not-serving while Checks still get real
// answers, so Kubernetes and Envoy stop routing here before keygate stops.
func TestShutdownDelayKeepsAnswering(t *testing.T) {
	t.Parallel()
	k := newKey(t, "acme", "", "api-bot", "sales")
	p := startKeygate(t, newPolicyFile(t, renderPolicy(simpleEndpoints, []cred{k}, nil)),
		"--shutdown-delay", "2s", "--drain-timeout", "2s")
	conn := p.grpcConn()
	client := authv3.NewAuthorizationClient(conn)
	health := healthpb.NewHealthClient(conn)
	req := grpcRequest(answerCase{method: "GET", host: defaultHost, path: "/whoami", headers: bearer(k.Raw)})

	_ = p.Signal(syscall.SIGTERM)
	deadline := time.Now().Add(1500 * time.Millisecond)
	for {
		code, _ := p.Admin("/readyz")
		if code == http.StatusServiceUnavailable {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after SIGTERM", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
	hr, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health during the shutdown delay: %v %v, want NOT_SERVING", hr.GetStatus(), err)
	}
	resp, err := client.Check(context.Background(), req)
	if err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.OK {
		t.Fatalf("a Check during the shutdown delay got %v %v, want an OK answer", resp.GetStatus(), err)
	}
	if err := p.WaitExit(10 * time.Second); err != nil || p.ExitCode() != 0 {
		t.Errorf("exit %d %v, want 0", p.ExitCode(), err)
	}
}
