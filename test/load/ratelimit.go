package main

import (
	"fmt"
	"io"

	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/test/internal/harness"
)

// setupRateLimit gives the load's key its own rate limit when -ratelimit
// asks, large enough never to run out (a million a second): the run
// measures what counting costs, not 429s. For redis it starts a
// redis-server (unpinned: its CPU is not keygate's) and returns its stop.
func setupRateLimit(cfg *config, bp *benchPolicy, tmp string, progress io.Writer) (stop func(), err error) {
	stop = func() {}
	switch cfg.rateLimit {
	case "":
		return stop, nil
	case "local", "redis":
	default:
		return stop, fmt.Errorf("-ratelimit must be local or redis, not %q", cfg.rateLimit)
	}
	per := policy.Duration{Duration: 1e9}
	bp.doc.RateLimits = []policy.RateLimit{{Name: "load", Requests: policy.MaxRateLimitPerSecond, Per: &per}}
	for i := range bp.doc.APIKeys {
		bp.doc.APIKeys[i].RateLimit = "load"
	}
	if cfg.rateLimit == "local" {
		cfg.keygateArgs = append(cfg.keygateArgs, "--ratelimit-store", "local")
		fmt.Fprintln(progress, "rate limit: every key has its own, counted in keygate (--ratelimit-store local)")
		return stop, nil
	}
	rs, err := harness.StartRedis(tmp)
	if err != nil {
		return stop, fmt.Errorf("-ratelimit redis: %w", err)
	}
	// Closed with a roomy timeout: a slow answer is measured, not let through.
	cfg.keygateArgs = append(cfg.keygateArgs, "--ratelimit-store", rs.URL(), "--ratelimit-failure", "closed", "--ratelimit-timeout", "1s")
	fmt.Fprintf(progress, "rate limit: every key has its own, counted in redis-server at %s\n", rs.Addr)
	return rs.Stop, nil
}
