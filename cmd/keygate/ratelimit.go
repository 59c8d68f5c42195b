package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/ratelimit"
)

// rateLimitFlags say where keygate serve counts requests against the
// policy's rate limits, and what it does when it cannot.
type rateLimitFlags struct {
	store     string
	failure   string
	timeout   time.Duration
	localSize int
}

func (f *rateLimitFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.store, "ratelimit-store", "local", "where rate limits are counted: local (this process), redis://[:PASSWORD@]HOST:PORT/DB (shared by every replica; rediss:// for TLS), or none (not counted: the dynamic metadata still names the limit, for Envoy's rate limit service)")
	fs.StringVar(&f.failure, "ratelimit-failure", "open", "when the Redis store cannot answer within --ratelimit-timeout: open (allow, counted in keygate_ratelimit_errors_total) or closed (deny: HTTP 503, reason ratelimit_unavailable)")
	fs.DurationVar(&f.timeout, "ratelimit-timeout", ratelimit.DefaultRedisTimeout, "the longest a check waits for the Redis store before --ratelimit-failure applies")
	fs.IntVar(&f.localSize, "ratelimit-local-size", ratelimit.DefaultLocalSize, "budgets the local store holds; past it the least recently used is forgotten")
}

// open checks the flags and returns the limiter (nil for none) and whether
// it fails open. A Redis that does not answer yet is logged, not fatal:
// the failure mode covers it until it does.
func (f *rateLimitFlags) open(log *zap.Logger) (*ratelimit.Limiter, bool, error) {
	var failOpen bool
	switch f.failure {
	case "open":
		failOpen = true
	case "closed":
	default:
		return nil, false, fmt.Errorf("--ratelimit-failure must be open or closed, not %q", f.failure)
	}
	switch {
	case f.store == "none":
		log.Info("rate limits are not counted (--ratelimit-store none)")
		return nil, failOpen, nil
	case f.store == "local":
		l, err := ratelimit.NewLocal(f.localSize)
		if err != nil {
			return nil, false, fmt.Errorf("--ratelimit-local-size: %w", err)
		}
		log.Info("rate limits are counted in this process", zap.String("store", "local"), zap.Int("size", f.localSize))
		return l, failOpen, nil
	case strings.HasPrefix(f.store, "redis://"), strings.HasPrefix(f.store, "rediss://"):
		ratelimit.SetRedisLogger(func(msg string) { log.Debug("redis client", zap.String("message", msg)) })
		l, err := ratelimit.NewRedis(f.store, f.timeout)
		if err != nil {
			return nil, false, fmt.Errorf("--ratelimit-store: %w", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := l.Ping(ctx); err != nil {
			log.Warn("the rate-limit store does not answer yet; --ratelimit-failure applies until it does",
				zap.String("store", l.Store()), zap.String("failure", f.failure), zap.Error(err))
		} else {
			log.Info("rate limits are counted in Redis, shared by every replica", zap.String("store", l.Store()),
				zap.Duration("timeout", f.timeout), zap.String("failure", f.failure))
		}
		return l, failOpen, nil
	}
	return nil, false, fmt.Errorf("--ratelimit-store must be local, none or a redis:// URL, not %q", redactStore(f.store))
}

// redactStore keeps a password out of an error about the flag's value.
func redactStore(s string) string {
	if at := strings.LastIndexByte(s, '@'); at >= 0 {
		if scheme := strings.Index(s, "://"); scheme >= 0 && scheme < at {
			return s[:scheme+3] + "xxxxx" + s[at:]
		}
		return "xxxxx" + s[at:]
	}
	return s
}
