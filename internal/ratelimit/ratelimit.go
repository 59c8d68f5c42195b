// Package ratelimit counts requests against budgets: in this process
// (NewLocal, a token bucket per budget from golang.org/x/time/rate) or in
// Redis, shared by every replica (NewRedis, GCRA in one Lua script). Both
// give the same answers: a budget of N requests per period lets N through
// at once and then one more every period/N.
//
// It knows nothing of policies or credentials: the caller names each
// budget (Bucket) by the limit and by the identity it counts, never by a
// secret.
package ratelimit

import (
	"fmt"
	"strings"
	"sync/atomic"
	"time"
)

// Bucket names one budget a request spends from: a limit (its name and
// size) and whose requests it counts. Two equal Buckets are one budget, in
// this process and across replicas; a change of Requests or Per starts a
// budget afresh.
type Bucket struct {
	Name     string        // the limit's name
	Requests int64         // how many requests per Per, all of which may come at once
	Per      time.Duration // at least a millisecond
	By       string        // what ID is: key, session, user, org, tenant
	Scope    string        // where ID is unique, when it is not everywhere: the tenant of a user
	ID       string
}

// MaxBuckets is the most buckets one request may spend from.
const MaxBuckets = 4

// Verdict is the answer for one request.
type Verdict struct {
	Allowed bool
	// Denied is the index of the bucket that refused, the one that makes
	// the request wait longest, when not Allowed.
	Denied int
	// RetryAfter is how long until that bucket has room for one more
	// request; Reset how long until it is full again.
	RetryAfter, Reset time.Duration
}

// Limiter takes requests from buckets, in this process or in Redis. It is
// safe for concurrent use. Its one method is on the concrete type, so the
// caller's buckets stay on its stack.
type Limiter struct {
	local *local
	redis *redisStore
	stats stats // the Redis store's counters; the local store counts per shard
}

// Take spends one request from every bucket, or from none when any of them
// has no room left. The buckets must be distinct (MaxBuckets at most).
// now is the local store's clock; Redis uses its own, which every replica
// shares. An error means the store could not answer (Redis unreachable or
// slower than its timeout): nothing is known about the budgets.
func (l *Limiter) Take(now time.Time, bs []Bucket) (Verdict, error) {
	if len(bs) == 0 {
		return Verdict{Allowed: true}, nil
	}
	if len(bs) > MaxBuckets {
		return Verdict{}, fmt.Errorf("ratelimit: %d buckets for one request; %d at most", len(bs), MaxBuckets)
	}
	if l.local != nil {
		return l.local.take(now, bs), nil
	}
	v, err := l.redis.take(bs)
	switch {
	case err != nil:
		l.stats.errors.Add(1)
	case v.Allowed:
		l.stats.allowed.Add(1)
	default:
		l.stats.limited.Add(1)
	}
	return v, err
}

// Stats are a limiter's counters since start.
type Stats struct {
	Allowed, Limited, Errors uint64
	Buckets                  int    // budgets held in memory (local store)
	Evictions                uint64 // budgets forgotten to stay within the local store's size
}

// Stats returns the counters.
func (l *Limiter) Stats() Stats {
	if l.local != nil {
		return l.local.stats()
	}
	return Stats{Allowed: l.stats.allowed.Load(), Limited: l.stats.limited.Load(), Errors: l.stats.errors.Load()}
}

// Store says where the limiter counts, for logs: "local" or the Redis
// address (never its password).
func (l *Limiter) Store() string {
	if l.local != nil {
		return "local"
	}
	return "redis://" + l.redis.addr
}

// Close releases the store's connections.
func (l *Limiter) Close() error {
	if l.redis != nil {
		return l.redis.client.Close()
	}
	return nil
}

type stats struct {
	allowed, limited, errors atomic.Uint64
}

// key is a bucket's name in Redis: keygate:rl:NAME:REQUESTS/PERms:BY:SCOPE/ID.
// Every part before ID is a policy name or a number, without ':', so the
// key names one bucket whatever ID holds.
func (b *Bucket) key() string {
	var s strings.Builder
	s.Grow(32 + len(b.Name) + len(b.By) + len(b.Scope) + len(b.ID))
	fmt.Fprintf(&s, "keygate:rl:%s:%d/%dms:%s:%s/%s", b.Name, b.Requests, b.Per.Milliseconds(), b.By, b.Scope, b.ID)
	return s.String()
}

// Seconds is d in whole seconds, rounded up, as the retry-after and
// ratelimit headers give it: a client that waits less than the budget
// needs is refused again.
func Seconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}
