package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/test/internal/harness"
)

// soakConfig is the shape of a soak: keygate serves a policy of keys keys
// under load (with the key K_stay) for duration, while the policy file is
// rewritten every flipEvery, alternately with and without the key K_flip.
type soakConfig struct {
	duration     time.Duration
	keys         int
	concurrency  int
	connections  int
	flipEvery    time.Duration
	sampleEvery  time.Duration // goroutines and heap from /metrics
	warmup       time.Duration // before the first sample
	reloadWithin time.Duration // deadline for a rewrite's generation to appear
	keygate      string        // prebuilt binary; empty builds ./cmd/keygate
}

// memSample is keygate's goroutines and heap at one moment, read from
// /metrics right after a forced garbage collection (see readMemory).
type memSample struct {
	at         time.Duration // since the load started
	goroutines float64
	heapInuse  float64 // bytes
}

// soakResult is what a soak observed.
type soakResult struct {
	cfg      soakConfig
	elapsed  time.Duration
	requests int   // main load, measured window
	errors   int   // main load: gRPC errors or K_stay not allowed
	firstErr error // the first of them

	rewrites       int // policy file rewrites
	reloads        int // rewrites whose generation appeared in time
	reloadTimeouts int // rewrites whose generation did not appear within reloadWithin
	reloadsFailed  int // keygate's reloads_failed at the end
	lastReloadErr  string

	revokedProbes, restoredProbes int // K_flip checks after the generation appeared
	violations                    int // K_flip allowed although the policy in force lacks it
	restoreMisses                 int // K_flip not allowed although the policy in force lists it
	probeErrors                   int // gRPC errors of probes
	firstProblem                  string

	samples []memSample
}

// flat is the test's bound on growth: goroutines at most first+10 and heap
// at most twice the first sample, at the end.
func (r *soakResult) flat() (bool, string) {
	if len(r.samples) < 2 {
		return false, fmt.Sprintf("%d memory samples, want at least 2", len(r.samples))
	}
	first, last := r.samples[0], r.samples[len(r.samples)-1]
	switch {
	case last.goroutines > first.goroutines+10:
		return false, fmt.Sprintf("goroutines grew from %.0f to %.0f (bound: first + 10)", first.goroutines, last.goroutines)
	case last.heapInuse > 2*first.heapInuse:
		return false, fmt.Sprintf("heap in use grew from %s to %s (bound: 2× first)", mib(first.heapInuse), mib(last.heapInuse))
	}
	return true, ""
}

// problems lists every failed assertion of the soak; none means it passed.
func (r *soakResult) problems(minReloads int) []string {
	var p []string
	if r.errors > 0 {
		p = append(p, fmt.Sprintf("%d errors on the main load, first: %v", r.errors, r.firstErr))
	}
	if r.violations > 0 {
		p = append(p, fmt.Sprintf("%d checks with the revoked key passed after its reload completed", r.violations))
	}
	if r.restoreMisses > 0 {
		p = append(p, fmt.Sprintf("%d checks with the restored key were not allowed after its reload completed", r.restoreMisses))
	}
	if r.probeErrors > 0 {
		p = append(p, fmt.Sprintf("%d probe checks failed with a gRPC error", r.probeErrors))
	}
	if r.firstProblem != "" {
		p = append(p, "first probe problem: "+r.firstProblem)
	}
	if r.reloadTimeouts > 0 {
		p = append(p, fmt.Sprintf("%d rewrites not reloaded within %s", r.reloadTimeouts, r.cfg.reloadWithin))
	}
	if r.reloadsFailed > 0 {
		p = append(p, fmt.Sprintf("keygate refused %d reloads: %s", r.reloadsFailed, r.lastReloadErr))
	}
	if r.reloads < minReloads {
		p = append(p, fmt.Sprintf("%d reloads observed, want at least %d", r.reloads, minReloads))
	}
	if ok, why := r.flat(); !ok {
		p = append(p, why)
	}
	return p
}

// soakPolicy is a generated policy in two versions, with and without K_flip.
type soakPolicy struct {
	stay, flip  string // raw credentials
	with, witho []byte // JSON
}

func generateSoakPolicy(n int) (*soakPolicy, error) {
	bp, err := generatePolicy(n)
	if err != nil {
		return nil, err
	}
	sp := &soakPolicy{stay: bp.key}
	if sp.witho, err = json.Marshal(&bp.doc); err != nil {
		return nil, err
	}
	// K_flip can do what K_stay does, so the probes send the same request.
	const id = "kg_soakflip"
	if sp.flip, err = apikey.New(id); err != nil {
		return nil, err
	}
	bp.doc.APIKeys = append(bp.doc.APIKeys, policy.APIKey{ID: id, Name: "soak flip key", Tenant: "acme",
		User: "flip-bot", Groups: []string{"sales"}, Environment: "production",
		Hash: policy.FormatDigest(apikey.Digest(sp.flip))})
	if sp.with, err = json.Marshal(&bp.doc); err != nil {
		return nil, err
	}
	return sp, nil
}

// soak runs one soak with its files in tmp; progress gets a line per step
// and one per memory sample. It fails if keygate does not stop cleanly at
// the end.
func soak(cfg soakConfig, tmp string, progress io.Writer) (_ *soakResult, err error) {
	res := &soakResult{cfg: cfg}
	if err := buildKeygate(cfg.keygate, progress); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "generating a policy of %d keys\n", cfg.keys)
	sp, err := generateSoakPolicy(cfg.keys)
	if err != nil {
		return nil, err
	}
	harness.RegisterSecret(sp.stay, "K_stay")
	harness.RegisterSecret(sp.flip, "K_flip")
	path := filepath.Join(tmp, "policy.json")
	if err := writeFile(path, sp.with); err != nil {
		return nil, err
	}
	// pprof on: the sampler forces a garbage collection (heap?gc=1) before
	// each reading, so the heap figures are live memory, not GC phase.
	kg, err := startKeygate(cfg.keygate, path, false, false, true)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, kg.kg.Stop()) }()
	stayReq, flipReq := envoytest.CheckRequest(sp.stay), envoytest.CheckRequest(sp.flip)
	if err := probe(kg.addr, stayReq, allowed, 10*time.Second); err != nil {
		return nil, errors.Join(err, kg.proc.ExitError())
	}
	if err := probe(kg.addr, flipReq, allowed, 10*time.Second); err != nil {
		return nil, errors.Join(err, kg.proc.ExitError())
	}
	fmt.Fprintf(progress, "soaking for %s: concurrency %d over %d connections, policy rewritten every %s\n",
		cfg.duration, cfg.concurrency, cfg.connections, cfg.flipEvery)

	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	var flipErr, sampleErr error
	wg.Go(func() { flipErr = res.flipAndProbe(kg, path, sp, flipReq, done) })
	wg.Go(func() { sampleErr = res.sampleMemory(kg, start, done, progress) })
	s, err := drive(kg.addr, stayReq, load{duration: cfg.duration, concurrency: cfg.concurrency, connections: cfg.connections}, kg.proc)
	close(done)
	wg.Wait()
	res.elapsed = time.Since(start)
	if err := errors.Join(err, flipErr, sampleErr); err != nil {
		return nil, errors.Join(err, kg.proc.ExitError())
	}
	res.requests, res.errors, res.firstErr = s.requests, s.errors, s.firstErr
	_, st, err := kg.kg.Status()
	if err != nil {
		return nil, err
	}
	res.reloadsFailed, res.lastReloadErr = int(st.ReloadsFailed), st.LastError
	return res, kg.proc.ExitError()
}

// flipAndProbe rewrites the policy every cfg.flipEvery, alternately without
// and with K_flip, until done. After each rewrite it waits for keygate's
// generation to pass the one before the rewrite: keygate publishes a new
// generation only for content that differs from what it serves, so that
// generation is the rewritten file. Then, until shortly before the next
// rewrite, it checks K_flip: denied (UNAUTHENTICATED) when the file lacks
// it, allowed when it lists it. It returns an error only for a failure of
// the harness itself.
func (r *soakResult) flipAndProbe(kg *target, path string, sp *soakPolicy, req *authv3.CheckRequest, done <-chan struct{}) error {
	conns, err := dial(kg.addr, 1)
	if err != nil {
		return err
	}
	defer closeAll(conns)
	cli := authv3.NewAuthorizationClient(conns[0])
	tick := time.NewTicker(r.cfg.flipEvery)
	defer tick.Stop()
	present := true
	for {
		select {
		case <-done:
			return nil
		case <-tick.C:
		}
		wrote := time.Now()
		_, st, err := kg.kg.Status()
		if err != nil {
			return err
		}
		before := st.Generation
		present = !present
		data := sp.witho
		if present {
			data = sp.with
		}
		if err := writeFile(path, data); err != nil {
			return err
		}
		r.rewrites++
		reloaded := false
		for deadline := time.Now().Add(r.cfg.reloadWithin); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			_, st, err := kg.kg.Status()
			if err != nil {
				return err
			}
			if st.Generation > before {
				reloaded = true
				break
			}
		}
		if !reloaded {
			r.reloadTimeouts++
			continue
		}
		r.reloads++
		for first := true; first || time.Since(wrote) < r.cfg.flipEvery*3/4; first = false {
			select {
			case <-done:
				return nil
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := cli.Check(ctx, req)
			cancel()
			code := codes.Code(resp.GetStatus().GetCode())
			switch {
			case err != nil:
				r.probeErrors++
				r.noteProblem(fmt.Sprintf("rewrite %d: %v", r.rewrites, err))
			case present:
				r.restoredProbes++
				if allowed(resp) != nil {
					r.restoreMisses++
					r.noteProblem(fmt.Sprintf("rewrite %d (K_flip listed): %s %s", r.rewrites, code, resp.GetStatus().GetMessage()))
				}
			default:
				r.revokedProbes++
				if code != codes.Unauthenticated {
					r.violations++
					r.noteProblem(fmt.Sprintf("rewrite %d (K_flip removed): %s, want Unauthenticated", r.rewrites, code))
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

func (r *soakResult) noteProblem(s string) {
	if r.firstProblem == "" {
		r.firstProblem = s
	}
}

// sampleMemory reads goroutines and heap after cfg.warmup and then every
// cfg.sampleEvery until 500ms before the load ends, so that every sample is
// taken under load.
func (r *soakResult) sampleMemory(kg *target, start time.Time, done <-chan struct{}, progress io.Writer) error {
	next, end := start.Add(r.cfg.warmup), start.Add(r.cfg.duration-500*time.Millisecond)
	for ; !next.After(end); next = next.Add(r.cfg.sampleEvery) {
		select {
		case <-done:
			return nil
		case <-time.After(time.Until(next)):
		}
		m, err := readMemory("http://" + kg.kg.AdminAddr)
		if err != nil {
			return err
		}
		m.at = time.Since(start)
		r.samples = append(r.samples, m)
		fmt.Fprintf(progress, "%8s  goroutines %4.0f  heap in use %9s\n",
			m.at.Round(time.Second), m.goroutines, mib(m.heapInuse))
	}
	return nil
}

// readMemory forces a garbage collection in keygate (pprof's heap?gc=1),
// then reads go_memstats_heap_inuse_bytes and go_goroutines from /metrics.
// Under load the goroutines include one per stream in flight, up to the
// load's concurrency, so it keeps the least of five readings 20ms apart:
// the count nearest to what stays when no request is in flight.
func readMemory(admin string) (memSample, error) {
	var m memSample
	resp, err := http.Get(admin + "/debug/pprof/heap?gc=1")
	if err != nil {
		return m, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return m, fmt.Errorf("heap profile: %s", resp.Status)
	}
	for i := range 5 {
		if i > 0 {
			time.Sleep(20 * time.Millisecond)
		}
		g, h, err := readMetrics(admin)
		if err != nil {
			return m, err
		}
		if i == 0 {
			m.goroutines, m.heapInuse = g, h
		}
		m.goroutines = min(m.goroutines, g)
	}
	return m, nil
}

// readMetrics reads go_goroutines and go_memstats_heap_inuse_bytes from
// keygate's /metrics.
func readMetrics(admin string) (goroutines, heapInuse float64, err error) {
	resp, err := http.Get(admin + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	found := 0
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		var dst *float64
		switch {
		case !ok:
			continue
		case name == "go_goroutines":
			dst = &goroutines
		case name == "go_memstats_heap_inuse_bytes":
			dst = &heapInuse
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/metrics %s: %w", name, err)
		}
		*dst = v
		found++
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if found != 2 {
		return 0, 0, errors.New("/metrics lacks go_goroutines or go_memstats_heap_inuse_bytes")
	}
	return goroutines, heapInuse, nil
}

func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// print writes the soak's figures.
func (r *soakResult) print(w io.Writer) {
	c := r.cfg
	fmt.Fprintf(w, "soak: %s, %d keys, concurrency %d over %d connections, policy rewritten every %s\n",
		r.elapsed.Round(time.Second), c.keys, c.concurrency, c.connections, c.flipEvery)
	fmt.Fprintf(w, "main load (K_stay):    %d requests in the window (%.0f/s), %d errors\n",
		r.requests, float64(r.requests)/c.duration.Seconds(), r.errors)
	fmt.Fprintf(w, "reloads:               %d rewrites, %d generations observed within %s, %d late, %d refused\n",
		r.rewrites, r.reloads, c.reloadWithin, r.reloadTimeouts, r.reloadsFailed)
	fmt.Fprintf(w, "K_flip removed:        %d checks after the generation appeared, %d allowed (violations)\n",
		r.revokedProbes, r.violations)
	fmt.Fprintf(w, "K_flip listed:         %d checks after the generation appeared, %d not allowed\n",
		r.restoredProbes, r.restoreMisses)
	fmt.Fprintf(w, "probe gRPC errors:     %d\n", r.probeErrors)
	if len(r.samples) > 0 {
		first, last := r.samples[0], r.samples[len(r.samples)-1]
		maxG, maxH := first.goroutines, first.heapInuse
		for _, s := range r.samples {
			maxG, maxH = max(maxG, s.goroutines), max(maxH, s.heapInuse)
		}
		fmt.Fprintf(w, "goroutines (%d samples, least of 5 readings): first %.0f at %s, last %.0f at %s, max %.0f\n",
			len(r.samples), first.goroutines, first.at.Round(time.Second), last.goroutines, last.at.Round(time.Second), maxG)
		fmt.Fprintf(w, "heap in use (after GC): first %s, last %s (%.2f×), max %s\n",
			mib(first.heapInuse), mib(last.heapInuse), last.heapInuse/first.heapInuse, mib(maxH))
	}
}
