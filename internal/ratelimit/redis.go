package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The Redis store counts with GCRA (the generic cell rate algorithm, as
// in ATM networks and go-redis/redis_rate), which keeps one number per
// budget: its theoretical arrival time (TAT), the time at which the budget
// would be full again. With N requests per period P, each request moves
// the TAT on by the interval I = P/N; a request is allowed when the TAT it
// would set is at most P ahead of now, so N requests fit at once and one
// more every I after. Times are microseconds since 2025-01-01 (Lua numbers
// are doubles: counted from 1970 they would keep a quarter of a
// microsecond, from 2025 a few nanoseconds for decades to come); the policy
// keeps I at 1 µs or more. It gives the same answers as a token bucket of N
// tokens refilled one every I (the local store).
//
// One script does a request's whole decision atomically, in one round
// trip: it reads every budget's TAT, and either moves them all on or, when
// one has no room, none of them. Time is Redis's own (TIME), so replicas
// whose clocks differ count alike. A TAT is stored in microseconds with a
// TTL of the time until its budget is full again: an idle budget takes no
// memory in Redis, and a key is never kept longer than one period.
//
// KEYS[i] is a budget; ARGV[2i-1] and ARGV[2i] its requests and period in
// microseconds. The answer is {1} when allowed, else {0, i, wait, reset}:
// the budget that makes the request wait longest, how long until it has
// room for one request and until it is full, in microseconds.
const gcraScript = `
local t = redis.call('TIME')
local now = (tonumber(t[1]) - 1735689600) * 1000000 + tonumber(t[2])
local tats = {}
local worst, wait, reset = 0, 0, 0
for i, key in ipairs(KEYS) do
  local per = tonumber(ARGV[2 * i])
  local interval = per / tonumber(ARGV[2 * i - 1])
  local tat = tonumber(redis.call('GET', key)) or now
  if tat < now then tat = now end
  local allow_at = tat + interval - per
  if allow_at > now and (worst == 0 or allow_at - now > wait) then
    worst, wait, reset = i, allow_at - now, tat - now
  end
  tats[i] = tat + interval
end
if worst > 0 then
  return {0, worst, math.ceil(wait), math.ceil(reset)}
end
for i, key in ipairs(KEYS) do
  redis.call('SET', key, string.format('%.17g', tats[i]), 'PX', math.max(1, math.ceil((tats[i] - now) / 1000)))
end
return {1}
`

var gcra = redis.NewScript(gcraScript)

// DefaultRedisTimeout bounds one decision's round trip to Redis: Check
// waits no longer for a slow or unreachable Redis before
// --ratelimit-failure applies.
const DefaultRedisTimeout = 10 * time.Millisecond

type redisStore struct {
	client  *redis.Client
	ap      *redis.AutoPipeliner
	addr    string
	timeout time.Duration
}

// NewRedis returns a limiter that counts in the Redis at url
// (redis://[:PASSWORD@]HOST:PORT/DB, or rediss:// for TLS), shared by every
// replica that names it. A decision waits at most timeout for Redis: past
// it, or when Redis cannot be reached, Take returns an error at once
// rather than retrying. It does not connect until the first decision.
func NewRedis(rawURL string, timeout time.Duration) (*Limiter, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("ratelimit: redis address: %w", redactURLError(err, rawURL))
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("ratelimit: the Redis timeout must be positive, not %v", timeout)
	}
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = timeout, timeout, timeout, timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1   // a retry would outlast the timeout: the failure mode answers instead
	opt.DialerRetries = 1 // likewise for a connection that cannot be made
	opt.MinIdleConns = 2  // a connection ready when the first checks come
	client := redis.NewClient(opt)
	ap, err := client.AutoPipeline()
	if err != nil {
		return nil, fmt.Errorf("ratelimit: redis: %w", err)
	}
	return &Limiter{redis: &redisStore{client: client, ap: ap, addr: opt.Addr, timeout: timeout}}, nil
}

// redactURLError keeps a password in the URL out of the error.
func redactURLError(err error, raw string) error {
	u, perr := url.Parse(raw)
	if perr != nil || u.User == nil {
		return errors.New(strings.ReplaceAll(err.Error(), raw, "(the URL)"))
	}
	return errors.New(strings.ReplaceAll(err.Error(), raw, u.Redacted()))
}

// SetRedisLogger sends the Redis client's own messages (a failed dial, a
// pool event) to log instead of to stderr unstructured. The client keeps
// one logger for the process.
func SetRedisLogger(log func(msg string)) { redis.SetLogger(redisLogger(log)) }

type redisLogger func(string)

func (l redisLogger) Printf(_ context.Context, format string, v ...any) { l(fmt.Sprintf(format, v...)) }

// Ping checks that Redis answers, within timeout, and loads the script.
func (l *Limiter) Ping(ctx context.Context) error {
	if l.redis == nil {
		return nil
	}
	if err := l.redis.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis at %s: %w", l.redis.addr, err)
	}
	if err := gcra.Load(ctx, l.redis.client).Err(); err != nil {
		return fmt.Errorf("redis at %s: loading the rate-limit script: %w", l.redis.addr, err)
	}
	return nil
}

func (r *redisStore) take(bs []Bucket) (Verdict, error) {
	keys := make([]string, len(bs))
	args := make([]any, 0, 2*len(bs))
	for i := range bs {
		b := &bs[i]
		keys[i] = b.key()
		args = append(args, b.Requests, b.Per.Microseconds())
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	res, err := gcra.Run(ctx, r.ap, keys, args...).Int64Slice()
	if err != nil {
		return Verdict{}, fmt.Errorf("redis at %s: %w", r.addr, err)
	}
	switch {
	case len(res) == 1 && res[0] == 1:
		return Verdict{Allowed: true}, nil
	case len(res) == 4 && res[0] == 0 && res[1] >= 1 && int(res[1]) <= len(bs):
		return Verdict{Denied: int(res[1] - 1), RetryAfter: time.Duration(res[2]) * time.Microsecond, Reset: time.Duration(res[3]) * time.Microsecond}, nil
	}
	return Verdict{}, fmt.Errorf("redis at %s: the rate-limit script answered %v", r.addr, res)
}
