// Command memburst measures keygate's memory under a burst of large
// CheckRequests: it starts a keygate binary, fires N concurrent requests of
// SIZE bytes over real gRPC, and reads VmHWM and VmRSS from
// /proc/PID/status during the burst and for a while after it.
//
//	go build -o /tmp/kgmem/keygate ./cmd/keygate
//	go run ./test/memburst -bin /tmp/kgmem/keygate -n 100 -size 9000000
//
// Every answer must be a decision (OK, UNAUTHENTICATED or PERMISSION_DENIED
// in the CheckResponse); anything else is counted and printed.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
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

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "memburst:", err)
		os.Exit(1)
	}
}

const policy = `version: 1
endpoints:
  - name: whoami
    match: {path: /whoami}
    require: [api_key]
`

func run() error {
	bin := flag.String("bin", "", "keygate binary to run (required)")
	n := flag.Int("n", 100, "concurrent requests")
	size := flag.Int("size", 9_000_000, "bytes of one request's filler header")
	conns := flag.Int("conns", 4, "gRPC connections the requests are spread over")
	after := flag.Duration("after", 30*time.Second, "how long to watch RSS after the burst")
	extra := flag.String("args", "", "extra keygate serve flags, space-separated")
	policyFile := flag.String("policy", "", "policy to serve (default: a one-endpoint policy); requests name no credential, so any policy denies them")
	settle := flag.Duration("settle", 3*time.Second, "how long to let keygate settle after it is ready, before the burst")
	reload := flag.Bool("reload", false, "change the policy as the burst starts, so that a reload runs during it")
	flag.Parse()
	if *bin == "" {
		return errors.New("-bin is required")
	}

	dir, err := os.MkdirTemp("", "memburst-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	pol := filepath.Join(dir, "policy.yaml")
	text := []byte(policy)
	if *policyFile != "" {
		if text, err = os.ReadFile(*policyFile); err != nil {
			return err
		}
	}
	if err := os.WriteFile(pol, text, 0o644); err != nil {
		return err
	}
	grpcAddr, adminAddr := freeAddr(), freeAddr()
	args := []string{"serve", "--policy", pol, "--grpc-addr", grpcAddr, "--http-addr", "",
		"--admin-addr", adminAddr, "--decision-log", "off"}
	if *extra != "" {
		args = append(args, strings.Fields(*extra)...)
	}
	var out bytes.Buffer
	cmd := exec.Command(*bin, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() { _ = cmd.Process.Signal(syscall.SIGTERM); _ = cmd.Wait() }()
	pid := cmd.Process.Pid
	if err := waitReady(adminAddr, 5*time.Minute); err != nil {
		return fmt.Errorf("%w\n%s", err, out.String())
	}
	time.Sleep(*settle)
	idle := readMemory(pid)
	fmt.Printf("keygate %s, pid %d: idle VmRSS %s\n", strings.Join(args[1:], " "), pid, mib(idle.RSS))

	req, err := proto.Marshal(&authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Method: "GET", Host: "api.example.com", Path: "/whoami",
			Headers: map[string]string{":path": "/whoami", "x-filler": strings.Repeat("f", *size)},
		}},
	}})
	if err != nil {
		return err
	}
	var clients []*grpc.ClientConn
	for range *conns {
		c, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodecV2(envoytest.RawCodec{}), grpc.MaxCallSendMsgSize(64<<20)))
		if err != nil {
			return err
		}
		defer c.Close()
		clients = append(clients, c)
	}

	// Sample every 50ms until the burst and its aftermath are over.
	type sample struct {
		at               time.Duration
		st               harness.Memory
		reading, waiting float64 // keygate_grpc_recv_calls_*, when keygate has them
	}
	var (
		smu     sync.Mutex
		samples []sample
	)
	start := time.Now()
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			smu.Lock()
			r, w := recvGauges(adminAddr)
			samples = append(samples, sample{time.Since(start), readMemory(pid), r, w})
			smu.Unlock()
			select {
			case <-stopSampling:
				return
			case <-t.C:
			}
		}
	}()

	if *reload {
		// An atomic rename, as the file source wants it.
		tmp := pol + ".new"
		if err := os.WriteFile(tmp, append(text, "\n# changed\n"...), 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, pol); err != nil {
			return err
		}
	}
	answers := map[string]int{}
	var amu sync.Mutex
	var wg sync.WaitGroup
	lat := make([]time.Duration, *n)
	for i := range *n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			t0 := time.Now()
			var resp []byte
			err := clients[i%len(clients)].Invoke(ctx, authv3.Authorization_Check_FullMethodName, &req, &resp)
			lat[i] = time.Since(t0)
			what := "gRPC " + status.Code(err).String()
			if err == nil {
				var cr authv3.CheckResponse
				if uerr := proto.Unmarshal(resp, &cr); uerr != nil {
					what = "undecodable answer"
				} else {
					what = "decided " + codes.Code(cr.GetStatus().GetCode()).String()
				}
			}
			amu.Lock()
			answers[what]++
			amu.Unlock()
		}()
	}
	wg.Wait()
	burst := time.Since(start)
	atEnd := readMemory(pid)
	sort.Slice(lat, func(a, b int) bool { return lat[a] < lat[b] })
	fmt.Printf("burst: %d requests of %d bytes over %d connections in %v (latency p50 %v, max %v)\n",
		*n, len(req), *conns, burst.Round(time.Millisecond), lat[len(lat)/2].Round(time.Millisecond), lat[len(lat)-1].Round(time.Millisecond))
	for what, k := range answers {
		fmt.Printf("  %-30s %d\n", what, k)
	}
	fmt.Printf("at the end of the burst: VmHWM %s, VmRSS %s\n", mib(atEnd.Peak), mib(atEnd.RSS))
	for _, d := range []time.Duration{time.Second, 5 * time.Second, 10 * time.Second, 20 * time.Second, 30 * time.Second, 60 * time.Second} {
		if d > *after {
			break
		}
		time.Sleep(time.Until(start.Add(burst + d)))
		st := readMemory(pid)
		fmt.Printf("%3ds after: VmRSS %s\n", int(d.Seconds()), mib(st.RSS))
	}
	close(stopSampling)
	<-sampled
	var peak sample
	var reading, waiting float64
	for _, s := range samples {
		if s.st.RSS > peak.st.RSS {
			peak = s
		}
		reading, waiting = max(reading, s.reading), max(waiting, s.waiting)
	}
	fmt.Printf("most gRPC calls seen reading at once %v, waiting %v (keygate_grpc_recv_calls_*)\n", reading, waiting)
	fmt.Printf("peak VmRSS sampled %s at %v; VmHWM %s\n", mib(peak.st.RSS), peak.at.Round(time.Millisecond), mib(readMemory(pid).Peak))
	if !strings.Contains(out.String(), "keygate started") {
		fmt.Printf("keygate output:\n%s\n", out.String())
	}
	return nil
}

// recvGauges reads keygate_grpc_recv_calls_reading and _waiting from
// /metrics; zero when absent.
func recvGauges(admin string) (reading, waiting float64) {
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		v, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "keygate_grpc_recv_calls_reading":
			reading = v
		case "keygate_grpc_recv_calls_waiting":
			waiting = v
		}
	}
	return reading, waiting
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitReady(admin string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if resp, err := http.Get("http://" + admin + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("/readyz on %s not 200 within %v", admin, timeout)
}

// readMemory is pid's memory, zero where it cannot be read.
func readMemory(pid int) harness.Memory {
	m, _ := harness.ReadMemory(pid)
	return m
}
