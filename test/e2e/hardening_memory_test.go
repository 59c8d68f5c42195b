package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/test/internal/harness"
)

// TestMemoryBurstBoundedAndReturned: 40 concurrent 9 MB CheckRequests are
// all decided, keygate's peak RSS stays far below what holding them all
// at once costs (~780 MiB without a bound), and once the burst is over
// the memory goes back to the OS within seconds.
func TestMemoryBurstBoundedAndReturned(t *testing.T) {
	const (
		calls    = 40
		size     = 9_000_000
		peakMax  = 450 << 20 // bounded: ~230 MiB measured
		returned = 64 << 20  // above the idle RSS, within 10s of the burst
	)
	if harness.RaceBuild() {
		t.Skip("a -race build's RSS is mostly the race detector's")
	}
	p := startKeygate(t, newPolicyFile(t, renderPolicy(simpleEndpoints, nil, nil)), "--decision-log", "denied")
	idle := p.memory(t).RSS

	req, err := proto.Marshal(grpcRequest(answerCase{method: "GET", host: defaultHost, path: "/whoami",
		headers: map[string]string{"x-filler": strings.Repeat("f", size)}}))
	if err != nil {
		t.Fatal(err)
	}
	var conns []*grpc.ClientConn
	for range 4 {
		// RawCodec: the 9 MB request is encoded once for every call.
		c, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(envoytest.RawCodec{})))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	var wg sync.WaitGroup
	errs := make(chan string, calls)
	for i := range calls {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			var raw []byte
			if err := conns[i%len(conns)].Invoke(ctx, authv3.Authorization_Check_FullMethodName, &req, &raw); err != nil {
				errs <- fmt.Sprintf("gRPC %v", status.Code(err))
				return
			}
			var resp authv3.CheckResponse
			if err := proto.Unmarshal(raw, &resp); err != nil || codes.Code(resp.GetStatus().GetCode()) != codes.Unauthenticated {
				errs <- fmt.Sprintf("answer %v %v", resp.GetStatus(), err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("a 9 MB check without a key: %s, want a decision: UNAUTHENTICATED", e)
	}
	peak := p.memory(t).Peak
	t.Logf("idle RSS %d MiB, peak RSS (VmHWM) %d MiB over %d concurrent %d MB checks", idle>>20, peak>>20, calls, size/1_000_000)
	if peak > peakMax {
		t.Errorf("peak RSS %d MiB, want under %d MiB: the bytes of requests in flight must be bounded", peak>>20, peakMax>>20)
	}
	var rss int64
	took, ok := poll(10*time.Second, func() bool {
		rss = p.memory(t).RSS
		return rss < idle+returned
	})
	if !ok {
		t.Errorf("RSS %d MiB 10s after the burst, want under %d MiB (idle %d MiB): memory must go back to the OS",
			rss>>20, (idle+returned)>>20, idle>>20)
	} else {
		t.Logf("RSS back to %d MiB %v after the burst", rss>>20, took.Round(100*time.Millisecond))
	}
}

// TestHTTPIdleConnectionsClosed: a keep-alive connection left idle on the
// HTTP ext_authz or the admin listener is closed by keygate after
// --http-idle-timeout, so idle clients cannot use up its file descriptors.
func TestHTTPIdleConnectionsClosed(t *testing.T) {
	t.Parallel()
	p := startKeygate(t, newPolicyFile(t, renderPolicy(simpleEndpoints, nil, nil)), "--http-idle-timeout", "300ms")
	for _, c := range []struct{ name, addr, path string }{
		{"ext_authz HTTP", p.HTTPAddr, "/docs/a"},
		{"admin", p.AdminAddr, "/healthz"},
	} {
		t.Run(c.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", c.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\n\r\n", c.path, defaultHost); err != nil {
				t.Fatal(err)
			}
			r := bufio.NewReader(conn)
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			line, err := r.ReadString('\n')
			if err != nil || !strings.HasPrefix(line, "HTTP/1.1 200") {
				t.Fatalf("first request: %q %v, want 200 on a kept-alive connection", line, err)
			}
			// Read the rest of the answer, then nothing more: the server
			// must end the idle connection on its own.
			start := time.Now()
			_, err = io.Copy(io.Discard, r)
			idle := time.Since(start)
			if err != nil {
				t.Fatalf("idle connection still open after %v (%v): want it closed after the 300ms idle timeout", idle.Round(time.Millisecond), err)
			}
			if idle > 3*time.Second {
				t.Errorf("closed after %v, want about 300ms", idle.Round(time.Millisecond))
			}
		})
	}
}

// memory is keygate's RSS now and at its peak; the test fails without it.
func (p *proc) memory(t testing.TB) harness.Memory {
	t.Helper()
	m, err := p.Memory()
	if err != nil {
		t.Fatalf("read keygate's memory: %v", err)
	}
	return m
}
