package redissessions

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
)

// health is what the store knows of Redis from its last round trips and
// its subscription, without a lock on the lookup path.
type health struct {
	down       atomic.Bool
	retryAt    atomic.Int64 // UnixNano: lookups fail at once before it while down
	subscribed atomic.Bool  // Watch receives invalidations

	mu      sync.Mutex // the fields below: written on transitions only
	lastErr string
	since   time.Time
}

func (h *health) init() {
	h.since = time.Now()
}

// skip reports whether a lookup should fail at once: Redis failed a
// moment ago. One lookup per retryEvery tries again.
func (h *health) skip() bool {
	if !h.down.Load() {
		return false
	}
	now, at := time.Now().UnixNano(), h.retryAt.Load()
	return now < at || !h.retryAt.CompareAndSwap(at, now+int64(retryEvery))
}

// observe records the outcome of a round trip and returns err. redis.Nil
// (no such key) is an answer, not a failure.
func (s *Store) observe(err error) error {
	h := &s.health
	if err == nil || errors.Is(err, redis.Nil) {
		if h.down.Load() && h.down.CompareAndSwap(true, false) {
			h.mu.Lock()
			down := time.Since(h.since)
			h.since, h.lastErr = time.Now(), ""
			h.mu.Unlock()
			s.log.Info("session store reachable again", zap.String("addr", s.addr), zap.Duration("was_down", down))
		}
		return err
	}
	if errors.Is(err, ErrUnavailable) || errors.Is(err, context.Canceled) {
		return err // not news of Redis: known already, or the caller gave up
	}
	h.retryAt.Store(time.Now().Add(retryEvery).UnixNano())
	msg := err.Error()
	if errors.Is(err, context.DeadlineExceeded) {
		msg = "no answer within the timeout: " + msg
	}
	if !strings.Contains(msg, s.addr) {
		msg = "redis at " + s.addr + ": " + msg // "EOF" alone says nothing
	}
	h.mu.Lock()
	h.lastErr = msg
	if !h.down.Load() {
		h.since = time.Now()
	}
	h.mu.Unlock()
	if h.down.CompareAndSwap(false, true) {
		s.log.Warn("session store unreachable: sessions only it can verify are denied (503, session_store_unavailable) until it answers",
			zap.String("addr", s.addr), zap.Error(err))
	}
	return err
}

// Status is the store's state, for /readyz?verbose.
type Status struct {
	Addr       string    `json:"addr"`
	Up         bool      `json:"up"`         // the last round trip was answered
	Subscribed bool      `json:"subscribed"` // invalidations from other replicas are received
	LastError  string    `json:"last_error,omitempty"`
	Since      time.Time `json:"since"` // when Up last changed
}

// Status returns the store's state.
func (s *Store) Status() Status {
	h := &s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	return Status{Addr: s.addr, Up: !h.down.Load(), Subscribed: h.subscribed.Load(), LastError: h.lastErr, Since: h.since}
}
