package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/manage"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/server"
	"github.com/keygate/keygate/internal/store/redissessions"
)

// sessionStoreFlags are serve's flags for server-side sessions in Redis;
// store is the opened store, nil when off.
type sessionStoreFlags struct {
	url     string
	timeout time.Duration

	store *redissessions.Store
}

func (f *sessionStoreFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.url, "session-store", "", "redis://[:PASSWORD@]HOST:PORT/DB (rediss:// for TLS): keep server-side sessions in Redis, shared by every replica: POST /v1/sessions returns an opaque kg_ token stored there, sessions can be listed and revoked everywhere within a second; empty: sessions are signed")
	fs.DurationVar(&f.timeout, "session-store-timeout", redissessions.DefaultLookupTimeout, "the longest a check waits for the session store on a cache miss before denying the session 503 (session_store_unavailable)")
}

// open connects to the store when --session-store is set. A Redis that
// does not answer yet is logged, not fatal: its sessions are denied 503
// until it does, and everything else is decided as usual.
func (f *sessionStoreFlags) open(reg prometheus.Registerer, log *zap.Logger) error {
	if f.url == "" {
		return nil
	}
	if !strings.HasPrefix(f.url, "redis://") && !strings.HasPrefix(f.url, "rediss://") {
		return fmt.Errorf("--session-store must be a redis:// or rediss:// URL, not %q", redactStore(f.url))
	}
	if f.timeout <= 0 {
		return fmt.Errorf("--session-store-timeout must be positive, not %v", f.timeout)
	}
	// The Redis client's own messages (a failed dial) go to the log; it
	// keeps one logger for the process, shared with the rate-limit store.
	ratelimit.SetRedisLogger(func(msg string) { log.Debug("redis client", zap.String("message", msg)) })
	s, err := redissessions.Open(f.url, redissessions.Options{LookupTimeout: f.timeout, Log: log, Registerer: reg})
	if err != nil {
		return fmt.Errorf("--session-store: %w", err)
	}
	f.store = s
	if err := s.Ping(context.Background(), time.Second); err != nil {
		log.Warn("the session store does not answer yet: its sessions are denied 503 (session_store_unavailable) until it does",
			zap.String("addr", s.Addr()), zap.Error(err))
	} else {
		log.Info("server-side sessions are kept in Redis, shared by every replica", zap.String("addr", s.Addr()),
			zap.Duration("timeout", f.timeout), zap.Duration("cached_for_at_most", redissessions.DefaultCacheFor))
	}
	return nil
}

func (f *sessionStoreFlags) close() {
	if f.store != nil {
		_ = f.store.Close()
	}
}

// authzOption resolves sessions in the store, when on.
func (f *sessionStoreFlags) authzOption() authz.Option {
	if f.store == nil {
		return func(*authz.Authorizer) {}
	}
	return authz.WithSessionStore(f.store)
}

// manageStore is the store for the management API, or nil (never a nil
// pointer in a non-nil interface).
func (f *sessionStoreFlags) manageStore() manage.SessionStore {
	if f.store == nil {
		return nil
	}
	return f.store
}

// report shows the store's state in /readyz?verbose.
func (f *sessionStoreFlags) report(h *server.Health) {
	if f.store != nil {
		h.Report("session_store", func() any { return f.store.Status() })
	}
}

// watch makes creds forget every session revoked on any replica, until
// ctx ends; a dropped subscription forgets every store resolution, since
// invalidations may be missed until it is back.
func (f *sessionStoreFlags) watch(ctx context.Context, creds *cache.Cache) error {
	if f.store != nil {
		f.store.Watch(ctx, func(d policy.Digest) { creds.Forget(cache.Key{Kind: policy.KindSession, Digest: d}) }, creds.ForgetStored)
	}
	return nil
}
