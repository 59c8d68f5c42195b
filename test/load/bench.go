package main

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/test/internal/harness"
)

// Names of the servers in the report.
const (
	floorName  = "floor"
	keygateSrv = "keygate"
	reloadName = "keygate+reload"
)

// bench runs the whole measurement with its files in tmp; progress gets
// one line per step. It fails if keygate does not stop cleanly at the end.
func bench(cfg *config, tmp string, progress io.Writer) (_ *report, err error) {
	rep := &report{cfg: cfg, machine: describeMachine()}
	if _, err := exec.LookPath("wrk"); cfg.mode == "http" && err != nil {
		return nil, errors.New(wrkMissing)
	}
	if err := buildKeygate(cfg.keygate, progress); err != nil {
		return nil, err
	}
	fmt.Fprintf(progress, "generating a policy of %d keys\n", cfg.keys)
	bp, err := generatePolicy(cfg.keys)
	if err != nil {
		return nil, err
	}
	stopRedis, err := setupRateLimit(cfg, bp, tmp, progress)
	if err != nil {
		return nil, err
	}
	defer stopRedis()
	token, err := setupSession(cfg, bp, tmp, progress)
	if err != nil {
		return nil, err
	}
	a, b, err := bp.variants()
	if err != nil {
		return nil, err
	}
	pf, err := newPolicyFile(filepath.Join(tmp, "policy.json"), a, b)
	if err != nil {
		return nil, err
	}
	harness.RegisterSecret(bp.key, "the load's API key")
	req := envoytest.CheckRequest(bp.key)
	check := allowed
	if token != "" {
		req = withSession(req, bp.doc.Settings.SessionHeader, token)
		check = sessionAllowed(bp.doc.Settings.IdentityHeaderPrefix)
	}

	// After the build, which should have both CPUs: what starts from here on
	// inherits CPU 1, and taskset moves the servers to CPU 0.
	if cfg.pin {
		restore, err := pinGenerator()
		if err != nil {
			return nil, err
		}
		if restore != nil {
			defer restore()
			rep.pinned = true
		}
	}

	var floor, kg *target
	if cfg.mode == "http" {
		floor, kg, err = startHTTP(cfg, bp.key, tmp, pf.path, rep.pinned)
	} else {
		floor, kg, err = startGRPC(cfg, req, check, pf.path, rep.pinned)
	}
	if floor != nil {
		defer floor.proc.Stop(10 * time.Second)
	}
	if kg != nil {
		defer func() { err = errors.Join(err, kg.kg.Stop()) }()
	}
	if err != nil {
		return nil, err
	}

	for round := 1; round <= cfg.rounds; round++ {
		order := []string{floorName, keygateSrv}
		if cfg.reloadEvery > 0 {
			order = append(order, reloadName)
		}
		if round%2 == 0 { // ABBA: linear drift weighs on both alike
			for i, j := 0, len(order)-1; i < j; i, j = i+1, j-1 {
				order[i], order[j] = order[j], order[i]
			}
		}
		for _, name := range order {
			t, swap := kg, false
			switch name {
			case floorName:
				t = floor
			case reloadName:
				swap = true
			}
			r, err := measure(t, cfg, pf, swap)
			if err != nil {
				return nil, err
			}
			r.round, r.server = round, name
			rep.runs = append(rep.runs, r)
			fmt.Fprintf(progress, "round %d %-15s %8.0f req/s  p99 %7s  %6.1f µs CPU/req  %d errors\n",
				round, name, r.s.rps(), r.s.quantile(0.99).Round(time.Microsecond), r.s.cpuPerRequest(), r.s.errors)
		}
	}
	rep.rss = maxRSS(kg.proc)

	if cfg.profile != "" {
		if err := os.MkdirAll(cfg.profile, 0o755); err != nil {
			return nil, err
		}
		names := []string{floorName, keygateSrv}
		if cfg.reloadEvery > 0 {
			names = append(names, reloadName)
		}
		for _, name := range names {
			t := kg
			if name == floorName {
				t = floor
			}
			fmt.Fprintf(progress, "profiling %s for %ds\n", name, cfg.profileSeconds)
			path := filepath.Join(cfg.profile, name+".pprof")
			cpu, err := profile(t, cfg, path, pf, name == reloadName)
			if err != nil {
				return nil, err
			}
			rep.profiles = append(rep.profiles, profiled{name, path, cpu})
		}
	}
	return rep, nil
}

// startGRPC starts the gRPC floor and keygate and waits until both allow req,
// keygate's answer passing kgCheck too. The servers it returns are to be
// stopped even with an error.
func startGRPC(cfg *config, req *authv3.CheckRequest, kgCheck func(*authv3.CheckResponse) error, policyPath string, pin bool) (floor, kg *target, err error) {
	if floor, err = startFloor(floorFlag, pin, cfg.profile != ""); err != nil {
		return nil, nil, err
	}
	if kg, err = startKeygate(cfg.keygate, policyPath, false, pin, cfg.profile != "", cfg.keygateArgs...); err != nil {
		return floor, nil, err
	}
	for _, t := range []*target{floor, kg} {
		t.drive = func(l load) (*sample, error) { return drive(t.addr, req, l, t.proc) }
		check := allowed
		if t == kg {
			check = kgCheck
		}
		if err := probe(t.addr, req, check, 10*time.Second); err != nil {
			return floor, kg, errors.Join(err, t.proc.ExitError())
		}
	}
	return floor, kg, nil
}

// startHTTP starts the net/http floor and keygate's HTTP port, with the wrk
// script in tmp, and waits until both allow the load's request.
func startHTTP(cfg *config, key, tmp, policyPath string, pin bool) (floor, kg *target, err error) {
	h := &httpLoad{pin: pin}
	if h.script, err = writeWrkScript(tmp, key); err != nil {
		return nil, nil, err
	}
	if floor, err = startFloor(floorHTTPFlag, pin, cfg.profile != ""); err != nil {
		return nil, nil, err
	}
	if kg, err = startKeygate(cfg.keygate, policyPath, true, pin, cfg.profile != "", cfg.keygateArgs...); err != nil {
		return floor, nil, err
	}
	for _, t := range []*target{floor, kg} {
		t.drive = func(l load) (*sample, error) { return h.drive(t.addr, l, t.proc) }
		if err := probeHTTP(t.addr, key, t.kg != nil, 10*time.Second); err != nil {
			return floor, kg, errors.Join(err, t.proc.ExitError())
		}
	}
	return floor, kg, nil
}

// measure drives one run against t; with swap, the policy file alternates
// between its two variants every cfg.reloadEvery while the load runs.
func measure(t *target, cfg *config, pf *policyFile, swap bool) (result, error) {
	if err := settle(t.proc); err != nil {
		return result{}, err
	}
	var before harness.ReadyStatus
	stopSwap := func() error { return nil }
	if swap {
		var err error
		if _, before, err = t.kg.Status(); err != nil {
			return result{}, err
		}
		stopSwap = pf.swapEvery(cfg.reloadEvery)
	}
	s, err := t.drive(cfg.load)
	if err := errors.Join(stopSwap(), err); err != nil {
		return result{}, errors.Join(fmt.Errorf("%s: %w", t.name, err), t.proc.ExitError())
	}
	r := result{s: s}
	if swap {
		_, after, err := t.kg.Status()
		if err != nil {
			return result{}, err
		}
		r.reloads = int(after.ReloadsOK - before.ReloadsOK)
		if n := after.ReloadsFailed - before.ReloadsFailed; n > 0 {
			return result{}, fmt.Errorf("keygate refused %d policy reloads: %s", n, after.LastError)
		}
	}
	return r, nil
}

// policyFile is the policy keygate serves, in two variants with the same
// keys, each written once to a file beside it; cur is the one in place. A
// swap renames a new hard link to the other variant over the policy, so it
// writes no data: writing the 20 MB of 100,000 keys every second, on the
// load generator's CPU, put the harness's own work into the latencies of
// the reload runs.
type policyFile struct {
	path     string
	variants [2]string
	cur      int
}

func newPolicyFile(path string, a, b []byte) (*policyFile, error) {
	pf := &policyFile{path: path}
	for i, data := range [][]byte{a, b} {
		pf.variants[i] = filepath.Join(filepath.Dir(path), fmt.Sprintf(".variant-%d.json", i))
		if err := os.WriteFile(pf.variants[i], data, 0o644); err != nil {
			return nil, err
		}
	}
	return pf, pf.use(0)
}

// use puts variant i in place, atomically.
func (pf *policyFile) use(i int) error {
	link := pf.path + ".swap"
	if err := os.Remove(link); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Link(pf.variants[i], link); err != nil {
		return err
	}
	if err := os.Rename(link, pf.path); err != nil {
		return err
	}
	pf.cur = i
	return nil
}

// swapEvery puts the other variant in place every period until the
// returned function is called; that function reports the first error.
func (pf *policyFile) swapEvery(period time.Duration) func() error {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var err error
	wg.Go(func() {
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			if err = pf.use(1 - pf.cur); err != nil {
				return
			}
		}
	})
	return func() error {
		close(done)
		wg.Wait()
		return err
	}
}

// profile writes a CPU profile of t under the load to path; with swap, the
// policy file alternates as measure's does. The run is not part of the
// report (profiling costs CPU); it returns the run's CPU time per request,
// to turn the profile's shares into microseconds.
func profile(t *target, cfg *config, path string, pf *policyFile, swap bool) (float64, error) {
	if err := settle(t.proc); err != nil {
		return 0, err
	}
	stopSwap := func() error { return nil }
	if swap {
		stopSwap = pf.swapEvery(cfg.reloadEvery)
	}
	l := cfg.load
	l.duration = time.Duration(cfg.profileSeconds) * time.Second
	var prof []byte
	var perr error
	var wg sync.WaitGroup
	wg.Go(func() {
		time.Sleep(l.warmup)
		resp, err := http.Get(fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", t.pprof, cfg.profileSeconds))
		if err != nil {
			perr = err
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			perr = fmt.Errorf("pprof of %s: %s", t.name, resp.Status)
			return
		}
		prof, perr = io.ReadAll(resp.Body)
	})
	s, err := t.drive(l)
	wg.Wait()
	if err := errors.Join(err, perr, stopSwap()); err != nil {
		return 0, err
	}
	if s.errors > 0 {
		return 0, fmt.Errorf("profile run of %s: %d errors, first: %v", t.name, s.errors, s.firstErr)
	}
	return s.cpuPerRequest(), os.WriteFile(path, prof, 0o644)
}
