package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/keygate/keygate/test/internal/harness"
)

// allowed accepts only an OK answer with an OK HTTP response.
func allowed(resp *authv3.CheckResponse) error {
	if c := resp.GetStatus().GetCode(); c != 0 {
		return fmt.Errorf("denied: code %d %s", c, resp.GetStatus().GetMessage())
	}
	if resp.GetOkResponse() == nil {
		return fmt.Errorf("status OK without an OK HTTP response")
	}
	return nil
}

// dial opens n connections to addr.
func dial(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, n)
	for range n {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, cc)
	}
	return conns, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, cc := range conns {
		_ = cc.Close()
	}
}

// probe waits until addr answers the request with an allow that check
// accepts, or timeout.
func probe(addr string, req *authv3.CheckRequest, check func(*authv3.CheckResponse) error, timeout time.Duration) error {
	conns, err := dial(addr, 1)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	cli := authv3.NewAuthorizationClient(conns[0])
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := cli.Check(ctx, req)
		cancel()
		if err == nil {
			err = check(resp)
		}
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not allow the load's request: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// load is the shape of one run.
type load struct {
	warmup, duration         time.Duration
	concurrency, connections int
}

// sample is what one run measured in its window (warm-up excluded).
type sample struct {
	requests  int           // completed inside the window
	window    time.Duration // between the two CPU readings
	latencies []time.Duration
	errors    int   // over the whole run, warm-up included
	firstErr  error // the first of them
	cpuTicks  int64 // server utime+stime over the window
	// otherTicks is the machine's busy CPU over the window outside the
	// server and the load generator: other processes, and interrupt work
	// the kernel does not charge to a process. Near 0 on a quiet machine.
	otherTicks int64
	// pct holds the quantiles when the load generator reports them itself
	// (wrk) instead of every latency.
	pct map[float64]time.Duration
}

// quantile is the q quantile of the window's latencies.
func (s *sample) quantile(q float64) time.Duration {
	if s.pct != nil {
		return s.pct[q]
	}
	return quantile(s.latencies, q)
}

type worker struct {
	lat      []time.Duration
	errors   int
	firstErr error
}

// drive sends req from l.concurrency goroutines over l.connections
// connections to addr, checking every answer, for l.warmup and then
// l.duration; server is read at both ends of the measured window.
func drive(addr string, req *authv3.CheckRequest, l load, server *harness.Process) (*sample, error) {
	conns, err := dial(addr, l.connections)
	if err != nil {
		return nil, err
	}
	defer closeAll(conns)
	clients := make([]authv3.AuthorizationClient, len(conns))
	for i, cc := range conns {
		clients[i] = authv3.NewAuthorizationClient(cc)
	}

	begin := time.Now()
	from, to := begin.Add(l.warmup), begin.Add(l.warmup+l.duration)
	var stop atomic.Bool
	workers := make([]worker, l.concurrency)
	var wg sync.WaitGroup
	for i := range workers {
		w, cli := &workers[i], clients[i%len(clients)]
		w.lat = make([]time.Duration, 0, 4096)
		wg.Go(func() {
			ctx := context.Background()
			for !stop.Load() {
				t0 := time.Now()
				resp, err := cli.Check(ctx, req)
				t1 := time.Now()
				if err == nil {
					err = allowed(resp)
				}
				if err != nil {
					if w.errors == 0 {
						w.firstErr = err
					}
					w.errors++
				}
				if !t0.Before(from) && !t1.After(to) {
					w.lat = append(w.lat, t1.Sub(t0))
				}
			}
		})
	}

	s := &sample{}
	time.Sleep(time.Until(from))
	c0, err0 := readCPU(server)
	t0 := time.Now()
	time.Sleep(time.Until(to))
	c1, err1 := readCPU(server)
	s.window = time.Since(t0)
	stop.Store(true)
	wg.Wait()
	if err0 != nil || err1 != nil {
		return nil, fmt.Errorf("read server CPU time: %v %v", err0, err1)
	}
	s.cpuTicks = c1.server - c0.server
	s.otherTicks = (c1.busy - c0.busy) - s.cpuTicks - (c1.self - c0.self)
	for i := range workers {
		w := &workers[i]
		s.latencies = append(s.latencies, w.lat...)
		if w.errors > 0 && s.firstErr == nil {
			s.firstErr = w.firstErr
		}
		s.errors += w.errors
	}
	s.requests = len(s.latencies)
	slices.Sort(s.latencies)
	return s, nil
}

// quantile of sorted latencies by nearest rank.
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(q*float64(len(sorted)-1)+0.5)]
}

// cpuPerRequest is the server's CPU time per request in the window, in µs.
func (s *sample) cpuPerRequest() float64 {
	if s.requests == 0 {
		return 0
	}
	return float64(s.cpuTicks) * (1e6 / clockTicks) / float64(s.requests)
}

// otherCPU is otherTicks as a share of one CPU over the window, in percent.
func (s *sample) otherCPU() float64 {
	return float64(s.otherTicks) / clockTicks / s.window.Seconds() * 100
}

func (s *sample) rps() float64 { return float64(s.requests) / s.window.Seconds() }
