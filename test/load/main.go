// Command load measures keygate under gRPC load against a floor: a no-op
// ext_authz server that allows everything, the cost of gRPC alone. With
// -mode http it measures keygate's ext_authz HTTP port instead, against a
// net/http server that answers 200, driven by wrk.
//
//	go run ./test/load [-rounds 5 -duration 10s -concurrency 50 -connections 10 -keys 10000]
//	go run ./test/load -mode http [-rounds 5 -duration 10s -concurrency 50 -keys 10000]
//	go run ./test/load -session signed | -ratelimit local|redis [-rounds 5 ...]
//	go run ./test/load -soak 10m [-keys 5000 -concurrency 20 -connections 4]
//	go run ./test/load -write-policy big.json -keys 1000000
//
// It builds keygate, generates a policy, starts the floor and keygate as
// separate processes pinned to CPU 0 (when taskset exists) and drives them
// in alternating runs from this process pinned to CPU 1. On two cores the
// load generator saturates before a fast server does, so servers are
// compared by their CPU time per request (utime+stime from /proc/PID/stat),
// not by throughput. See docs/performance.md.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/keygate/keygate/test/internal/harness"
)

func main() {
	if code, handled := childMain(os.Args[1:]); handled {
		os.Exit(code)
	}
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	harness.Cleanup()
	if !harness.CheckSecrets(os.Stderr, false) {
		code = 1
	}
	os.Exit(code)
}

// config is the harness's command line.
type config struct {
	rounds         int
	mode           string // grpc or http
	load           load
	keys           int
	keygate        string        // prebuilt binary; empty builds ./cmd/keygate
	pin            bool          // pin servers to CPU 0 and the load to CPU 1
	reloadEvery    time.Duration // > 0 adds a run that swaps the policy this often
	profile        string        // directory for CPU profiles of both servers
	profileSeconds int
	soak           time.Duration // > 0 runs a soak instead of the rounds
	rateLimit      string        // "", local or redis: the key spends from a rate limit (ratelimit.go)
	session        string        // "" or signed: a signed-in user's session instead of the key (session.go)
	keygateArgs    []string      // further serve flags, set by bench
	writePolicy    string        // write the generated policy here and stop
}

func parseConfig(args []string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.mode, "mode", "grpc", "grpc: keygate's gRPC Check against a no-op ext_authz server, driven by grpc-go; http: keygate's ext_authz HTTP port (--http-original-request envoy) against a net/http server that answers 200, driven by wrk (1 thread, -concurrency connections; -connections is not used)")
	fs.IntVar(&c.rounds, "rounds", 5, "rounds; each runs the floor and keygate once, in alternating order")
	fs.DurationVar(&c.load.duration, "duration", 10*time.Second, "measured length of each run")
	fs.DurationVar(&c.load.warmup, "warmup", 2*time.Second, "unmeasured load before each run's window")
	fs.IntVar(&c.load.concurrency, "concurrency", 50, "concurrent requests in flight")
	fs.IntVar(&c.load.connections, "connections", 10, "gRPC connections the requests are spread over")
	fs.IntVar(&c.keys, "keys", 10000, "API keys in the generated policy")
	fs.StringVar(&c.keygate, "keygate", "", "keygate binary to measure (default: build ./cmd/keygate)")
	fs.BoolVar(&c.pin, "pin", true, "pin the servers to CPU 0 and the load generator to CPU 1 (needs taskset and 2 CPUs)")
	fs.DurationVar(&c.reloadEvery, "reload-every", 0, "if set, each round adds a keygate run that swaps the policy file this often")
	fs.StringVar(&c.profile, "profile", "", "after the rounds, write CPU profiles of the floor and keygate under the same load to floor.pprof and keygate.pprof in this directory")
	fs.IntVar(&c.profileSeconds, "profile-seconds", 10, "length of the -profile run")
	fs.StringVar(&c.rateLimit, "ratelimit", "", "local or redis: the load's key has its own rate limit (too large to run out), counted in keygate (--ratelimit-store local) or in a redis-server the harness starts (needs redis-server); empty: no limit")
	fs.StringVar(&c.session, "session", "", "signed: every request carries a signed session (an Ed25519 JWT made per run, verified with --session-verify-key) in the session header instead of the API key, and the load's endpoint requires a session; empty: the API key")
	fs.DurationVar(&c.soak, "soak", 0, "if set, run a soak this long instead of the rounds: load with K_stay while the policy is rewritten every second, alternately with and without K_flip (defaults then: -keys 5000 -concurrency 20 -connections 4)")
	fs.StringVar(&c.writePolicy, "write-policy", "", "write the policy the rounds serve (-keys keys with names and environments, as JSON) to this file and stop: the large policy the load-at-scale figures measure")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if c.soak > 0 {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for _, d := range []struct {
			name string
			v    *int
			soak int
		}{{"keys", &c.keys, 5000}, {"concurrency", &c.load.concurrency, 20}, {"connections", &c.load.connections, 4}} {
			if !set[d.name] {
				*d.v = d.soak
			}
		}
	}
	switch {
	case c.mode != "grpc" && c.mode != "http":
		return nil, fmt.Errorf("-mode must be grpc or http, not %q", c.mode)
	case c.mode == "http" && c.soak > 0:
		return nil, errors.New("-soak runs over gRPC only; drop -mode http")
	case c.session != "" && c.session != "signed":
		return nil, fmt.Errorf("-session must be signed, not %q", c.session)
	case c.session != "" && (c.mode == "http" || c.soak > 0):
		return nil, errors.New("-session runs in the gRPC rounds only; drop -mode http and -soak")
	case c.session != "" && c.rateLimit != "":
		return nil, errors.New("-ratelimit gives the API key its own budget and -session sends no key: run them one at a time")
	case fs.NArg() > 0:
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	case c.rounds < 1, c.load.duration <= 0, c.load.warmup < 0, c.load.concurrency < 1, c.load.connections < 1:
		return nil, errors.New("-rounds, -duration, -concurrency and -connections must be positive")
	case c.mode == "grpc" && c.load.connections > c.load.concurrency:
		return nil, errors.New("-connections must not exceed -concurrency")
	case c.soak < 0, c.soak > 0 && c.soak < 20*time.Second:
		return nil, errors.New("-soak must be at least 20s: memory is sampled from 10s on, every 5s")
	case c.profile != "" && c.profileSeconds < 1:
		return nil, errors.New("-profile-seconds must be at least 1")
	}
	return c, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseConfig(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "load:", err)
		return 2
	}
	if cfg.writePolicy != "" {
		if err := writeGenerated(cfg.writePolicy, cfg.keys); err != nil {
			fmt.Fprintln(stderr, "load:", err)
			return 1
		}
		return 0
	}
	dir, err := os.MkdirTemp("", "keygate-load-")
	if err != nil {
		fmt.Fprintln(stderr, "load:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	// On Ctrl-C the servers die with the harness (Pdeathsig); the policies
	// in dir and the keygate binary are removed here.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	go func() {
		s := <-sig
		os.RemoveAll(dir)
		harness.Cleanup()
		fmt.Fprintln(stderr, "load:", s)
		os.Exit(130)
	}()
	if cfg.soak > 0 {
		return runSoak(cfg, dir, stdout, stderr)
	}
	rep, err := bench(cfg, dir, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "load:", err)
		return 1
	}
	rep.print(stdout)
	if n := rep.errors(); n > 0 {
		fmt.Fprintf(stderr, "load: %d requests failed\n", n)
		return 1
	}
	return 0
}

// runSoak runs the -soak mode and fails when any of its assertions does.
func runSoak(cfg *config, dir string, stdout, stderr io.Writer) int {
	res, err := soak(soakConfig{
		duration:     cfg.soak,
		keys:         cfg.keys,
		concurrency:  cfg.load.concurrency,
		connections:  cfg.load.connections,
		flipEvery:    time.Second,
		sampleEvery:  5 * time.Second,
		warmup:       10 * time.Second,
		reloadWithin: 5 * time.Second,
		keygate:      cfg.keygate,
	}, dir, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "load:", err)
		return 1
	}
	res.print(stdout)
	// One reload a second, with slack for rewrites that land on a slow
	// machine's late generation.
	problems := res.problems(int(cfg.soak/time.Second) / 2)
	for _, p := range problems {
		fmt.Fprintln(stderr, "soak:", p)
	}
	if len(problems) > 0 {
		return 1
	}
	fmt.Fprintln(stdout, "soak: passed")
	return 0
}
