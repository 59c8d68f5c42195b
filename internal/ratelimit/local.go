package ratelimit

import (
	"fmt"
	"hash/maphash"
	"runtime"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"golang.org/x/time/rate"
)

// DefaultLocalSize is how many budgets the local store holds by default:
// a million, about 210 MB when every one is in use (BenchmarkLocalMemory;
// docs/ratelimits.md).
const DefaultLocalSize = 1_000_000

// The local store keeps a token bucket (golang.org/x/time/rate.Limiter)
// per budget in LRUs sharded by the budget's hash, like the credential
// cache: four shards per P, each with its own lock and counters, so that
// cores counting different budgets do not wait on one another. It is
// bounded: past its size the least recently used budget is forgotten, and
// a forgotten budget starts full again when it is next used (the LRU's
// oldest budgets are mostly full already: idle for a period, a budget has
// refilled). Nothing a reload does takes one of its locks.
type local struct {
	seed   maphash.Seed
	shards []localShard
	mask   uint64
}

type localShard struct {
	lru                         *lru.Cache[uint64, *bucket]
	allowed, limited, evictions atomic.Uint64
	_                           [128 - 8 - 3*8]byte // two shards' counters never share a cache line
}

type bucket struct {
	lim      *rate.Limiter
	promoted atomic.Int64 // UnixNano it was last made most recent
}

// promoteEvery is how often a use moves a budget to the front of its LRU:
// a use reads it under the shard's read lock, which cores share, and only
// a use whose budget was not promoted for this long takes the write lock.
const promoteEvery = int64(time.Second)

const minShardSize = 1024

// NewLocal returns a limiter that counts in this process and holds at most
// size budgets.
func NewLocal(size int) (*Limiter, error) {
	if size < 1 {
		return nil, fmt.Errorf("ratelimit: the local store must hold at least one budget, not %d", size)
	}
	n := 1
	for n < 4*runtime.GOMAXPROCS(0) && (2*n)*minShardSize <= size {
		n *= 2
	}
	l := &local{seed: maphash.MakeSeed(), shards: make([]localShard, n), mask: uint64(n - 1)}
	for i := range l.shards {
		s := &l.shards[i]
		shardSize := size / n
		if i < size%n {
			shardSize++
		}
		var err error
		if s.lru, err = lru.NewWithEvict(shardSize, func(uint64, *bucket) { s.evictions.Add(1) }); err != nil {
			return nil, fmt.Errorf("ratelimit: local store of %d budgets: %w", size, err)
		}
	}
	return &Limiter{local: l}, nil
}

// hash identifies a bucket in this process: each field's maphash, mixed
// in order by a multiplication, so that a field moved to another place
// hashes apart. Two buckets share a budget only if their 64-bit hashes
// collide: among a million budgets, odds of about one in 30 million; the
// seed is random per process, so no client can aim for a collision.
func (l *local) hash(b *Bucket) uint64 {
	const mix = 0x9e3779b97f4a7c15 // odd: multiplying by it loses nothing
	h := (uint64(b.Requests)*mix ^ uint64(b.Per)) * mix
	for _, s := range [...]string{b.Name, b.By, b.Scope, b.ID} {
		h = (h ^ maphash.String(l.seed, s)) * mix
	}
	return h ^ h>>29 // the shard is picked by the low bits: give them the high bits' mixing
}

// bucket returns b's token bucket, made full when it is new, and its shard.
func (l *local) bucket(b *Bucket, now int64) (*rate.Limiter, *localShard) {
	k := l.hash(b)
	s := &l.shards[k&l.mask]
	if e, ok := s.lru.Peek(k); ok {
		if now-e.promoted.Load() >= promoteEvery {
			e.promoted.Store(now)
			s.lru.Get(k)
		}
		return e.lim, s
	}
	e := &bucket{lim: rate.NewLimiter(rate.Limit(float64(b.Requests)/b.Per.Seconds()), int(b.Requests))}
	e.promoted.Store(now)
	if prev, found, _ := s.lru.PeekOrAdd(k, e); found { // another request made it first
		return prev.lim, s
	}
	return e.lim, s
}

func (l *local) take(now time.Time, bs []Bucket) Verdict {
	ns := now.UnixNano()
	if len(bs) == 1 {
		lim, s := l.bucket(&bs[0], ns)
		if lim.AllowN(now, 1) {
			s.allowed.Add(1)
			return Verdict{Allowed: true}
		}
		s.limited.Add(1)
		return denied(0, lim, now)
	}
	// Several budgets: reserve one request from each, and give them all
	// back when any has no room, so a refused request costs none of them.
	var lims [MaxBuckets]*rate.Limiter
	var rs [MaxBuckets]rate.Reservation // values: a pointer kept past the loop would be a heap allocation each
	var first *localShard
	worst, wait := -1, time.Duration(0)
	for i := range bs {
		lim, s := l.bucket(&bs[i], ns)
		if i == 0 {
			first = s
		}
		lims[i], rs[i] = lim, *lim.ReserveN(now, 1)
		if d := rs[i].DelayFrom(now); d > 0 && (worst < 0 || d > wait) {
			worst, wait = i, d
		}
	}
	if worst < 0 {
		first.allowed.Add(1)
		return Verdict{Allowed: true}
	}
	for i := range bs {
		rs[i].CancelAt(now)
	}
	first.limited.Add(1)
	return denied(worst, lims[worst], now)
}

// denied is the verdict of a bucket without room: how long until it has
// room for one request, and until it is full.
func denied(i int, lim *rate.Limiter, now time.Time) Verdict {
	tokens, perSecond := lim.TokensAt(now), float64(lim.Limit())
	return Verdict{
		Denied:     i,
		RetryAfter: time.Duration((1 - tokens) / perSecond * float64(time.Second)),
		Reset:      time.Duration((float64(lim.Burst()) - tokens) / perSecond * float64(time.Second)),
	}
}

func (l *local) stats() Stats {
	var st Stats
	for i := range l.shards {
		s := &l.shards[i]
		st.Allowed += s.allowed.Load()
		st.Limited += s.limited.Load()
		st.Evictions += s.evictions.Load()
		st.Buckets += s.lru.Len()
	}
	return st
}
