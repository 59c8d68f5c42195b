package main

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/test/internal/harness"
)

// The HTTP mode (-mode http) measures keygate's ext_authz HTTP port against
// a net/http server that answers 200 to everything, driven by wrk.

// floorHTTPFlag makes the harness the HTTP floor server:
// `-floor-http-server ADDR [PPROF_ADDR]`.
const floorHTTPFlag = "-floor-http-server"

// wrkMissing is what the HTTP mode says when wrk is not installed.
const wrkMissing = "-mode http drives the servers with wrk, which is not installed: apt-get install -y wrk (Debian, Ubuntu), brew install wrk (macOS), or build it from https://github.com/wg/wrk"

// runHTTPFloor serves a 200 with no body to every request on addr until
// SIGTERM or SIGINT: the cost of net/http alone.
func runHTTPFloor(addr, pprofAddr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	if err := serveProfile(pprofAddr); err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK)
	})}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		_ = srv.Close()
	}()
	if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// httpLoad is what the HTTP mode's runs share: the wrk script, which holds
// the key (so that it stays off wrk's command line), and whether to pin wrk.
type httpLoad struct {
	script string
	pin    bool
}

// writeWrkScript writes the request the gRPC load's CheckRequest describes
// (method, path, Host and headers, the valid key among them) as a wrk Lua
// script, with a done() that prints the run's summary on one line.
func writeWrkScript(dir, key string) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "wrk.method = %q\nwrk.path = %q\n", "GET", envoytest.Path)
	for _, h := range [][2]string{
		{"Host", "api.example.com"},
		{"Authorization", "Bearer " + key},
		{"X-Request-Id", "4f6c1d2e-8a7b-4c3d-9e0f-1a2b3c4d5e6f"},
		{"User-Agent", "acme-sales-sync/2.3.1 (linux; go1.26)"},
		{"Accept", "application/json"},
	} {
		fmt.Fprintf(&b, "wrk.headers[%q] = %q\n", h[0], h[1])
	}
	// Latencies are in µs; errors.status counts answers other than 2xx/3xx,
	// so a denial counts as an error.
	b.WriteString(`function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("KGLOAD %d %d %d %d %d %d %d %d %d %d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
`)
	path := filepath.Join(dir, "load.lua")
	return path, os.WriteFile(path, []byte(b.String()), 0o600)
}

// wrkRun is one wrk run's summary line.
type wrkRun struct {
	requests int
	duration time.Duration
	errors   int
	errKinds string
	pct      map[float64]time.Duration
}

// runWrk drives url with 1 thread and l.concurrency connections for d
// (whole seconds: wrk's unit), on CPU 1 when pinned.
func (h *httpLoad) runWrk(url string, l load, d time.Duration) (*wrkRun, error) {
	secs := max(1, int(math.Ceil(d.Seconds())))
	argv := []string{"wrk", "-t1", "-c" + strconv.Itoa(l.concurrency), "-d" + strconv.Itoa(secs) + "s", "-s", h.script, url}
	if h.pin {
		argv = append([]string{"taskset", "-c", "1"}, argv...)
	}
	var out, stderr bytes.Buffer
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("wrk: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return parseWrk(out.String())
}

// parseWrk reads the KGLOAD line the script's done() prints.
func parseWrk(out string) (*wrkRun, error) {
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(line, "KGLOAD ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 10 {
			break
		}
		v := make([]int64, len(f))
		for i, s := range f {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("wrk summary %q: %w", line, err)
			}
			v[i] = n
		}
		r := &wrkRun{requests: int(v[0]), duration: time.Duration(v[1]) * time.Microsecond,
			pct: map[float64]time.Duration{0.5: time.Duration(v[7]) * time.Microsecond, 0.9: time.Duration(v[8]) * time.Microsecond, 0.99: time.Duration(v[9]) * time.Microsecond}}
		for i, kind := range []string{"connect", "read", "write", "status", "timeout"} {
			if n := int(v[2+i]); n > 0 {
				r.errors += n
				r.errKinds += fmt.Sprintf(" %s %d", kind, n)
			}
		}
		return r, nil
	}
	return nil, fmt.Errorf("no summary in wrk's output:\n%s", out)
}

// drive runs wrk against addr for l.warmup (unmeasured) and then for
// l.duration, reading the server's CPU time right before and after the
// measured run.
func (h *httpLoad) drive(addr string, l load, server *harness.Process) (*sample, error) {
	url := "http://" + addr
	s := &sample{}
	count := func(r *wrkRun) {
		if r.errors > 0 && s.firstErr == nil {
			s.firstErr = fmt.Errorf("wrk errors:%s", r.errKinds)
		}
		s.errors += r.errors
	}
	if l.warmup > 0 {
		r, err := h.runWrk(url, l, l.warmup)
		if err != nil {
			return nil, err
		}
		count(r)
	}
	c0, err0 := readCPU(server)
	r, err := h.runWrk(url, l, l.duration)
	c1, err1 := readCPU(server)
	if err != nil {
		return nil, err
	}
	if err0 != nil || err1 != nil {
		return nil, fmt.Errorf("read server CPU time: %v %v", err0, err1)
	}
	count(r)
	// wrk has exited and been waited for, so its CPU time is in this
	// process's cutime+cstime, which readCPU counts as the generator's.
	s.requests, s.window, s.pct = r.requests, r.duration, r.pct
	s.cpuTicks = c1.server - c0.server
	s.otherTicks = (c1.busy - c0.busy) - s.cpuTicks - (c1.self - c0.self)
	return s, nil
}

// probeHTTP waits until addr allows the load's request with a 200, and, for
// keygate, with its identity headers.
func probeHTTP(addr, key string, identity bool, timeout time.Duration) error {
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+envoytest.Path, nil)
	if err != nil {
		return err
	}
	req.Host = "api.example.com"
	req.Header.Set("Authorization", "Bearer "+key)
	cli := &http.Client{Timeout: time.Second}
	for deadline := time.Now().Add(timeout); ; {
		resp, err := cli.Do(req)
		if err == nil {
			resp.Body.Close()
			switch {
			case resp.StatusCode != http.StatusOK:
				err = fmt.Errorf("answered %s", resp.Status)
			case identity && resp.Header.Get("X-Keygate-Key-Id") == "":
				err = errors.New("allowed without identity headers")
			}
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not allow the load's HTTP request: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
