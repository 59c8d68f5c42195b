package ratelimit

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/redistest"
)

// startRedis runs a real redis-server until the test ends and returns its
// address and a kill switch (internal/redistest).
func startRedis(t *testing.T) (addr string, kill func()) {
	t.Helper()
	s := redistest.New(t)
	return s.Addr, s.Kill
}

func newRedis(t *testing.T, addr string, timeout time.Duration) *Limiter {
	t.Helper()
	l, err := NewRedis("redis://"+addr+"/0", timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// TestRedisMath: the GCRA script answers as the local token bucket does.
// Redis keeps its own clock, so the budgets are an hour long and the
// waits are compared to within a second.
func TestRedisMath(t *testing.T) {
	addr, _ := startRedis(t)
	rl := newRedis(t, addr, time.Second)
	loc, _ := NewLocal(100)
	own := Bucket{Name: "standard", Requests: 3, Per: time.Hour, By: "key", ID: "k1"}
	endpoint := Bucket{Name: "search", Requests: 5, Per: time.Hour, By: "user", Scope: "acme", ID: "alice"}
	steps := []struct {
		buckets []Bucket
		want    Verdict
	}{
		{[]Bucket{own}, Verdict{Allowed: true}},
		{[]Bucket{own, endpoint}, Verdict{Allowed: true}},
		{[]Bucket{own, endpoint}, Verdict{Allowed: true}},
		// own is spent (3 of 3): one more every 20 minutes.
		{[]Bucket{own, endpoint}, Verdict{Denied: 0, RetryAfter: 20 * time.Minute, Reset: time.Hour}},
		// The refused request did not spend the endpoint's budget: 2 of 5 so far.
		{[]Bucket{endpoint}, Verdict{Allowed: true}},
		{[]Bucket{endpoint}, Verdict{Allowed: true}},
		{[]Bucket{endpoint}, Verdict{Allowed: true}},
		{[]Bucket{endpoint}, Verdict{Denied: 0, RetryAfter: 12 * time.Minute, Reset: time.Hour}},
		// Both spent: the verdict names the longer wait.
		{[]Bucket{endpoint, own}, Verdict{Denied: 1, RetryAfter: 20 * time.Minute, Reset: time.Hour}},
	}
	now := time.Now()
	for i, s := range steps {
		for _, store := range []struct {
			name string
			l    *Limiter
		}{{"redis", rl}, {"local", loc}} {
			v, err := store.l.Take(now, s.buckets)
			if err != nil {
				t.Fatalf("%s, request %d: %v", store.name, i+1, err)
			}
			near := func(a, b time.Duration) bool { return (a - b).Abs() < time.Second }
			if v.Allowed != s.want.Allowed || v.Denied != s.want.Denied || !near(v.RetryAfter, s.want.RetryAfter) || !near(v.Reset, s.want.Reset) {
				t.Errorf("%s, request %d: %+v, want %+v", store.name, i+1, v, s.want)
			}
		}
	}
	st := rl.Stats()
	if st.Allowed != 6 || st.Limited != 3 || st.Errors != 0 {
		t.Errorf("redis stats %+v, want 6 allowed, 3 limited", st)
	}
}

// TestRedisKeys: budgets live under keygate:rl: and expire when they would
// be full again, so an idle budget takes no memory in Redis.
func TestRedisKeys(t *testing.T) {
	addr, _ := startRedis(t)
	rl := newRedis(t, addr, time.Second)
	b := Bucket{Name: "standard", Requests: 10, Per: time.Minute, By: "key", ID: "k1"}
	for range 4 {
		if v, err := rl.Take(time.Now(), []Bucket{b}); err != nil || !v.Allowed {
			t.Fatalf("%+v %v", v, err)
		}
	}
	keys := redisCmd(t, addr, "KEYS", "*")
	if want := "keygate:rl:standard:10/60000ms:key:/k1"; keys != want {
		t.Fatalf("keys %q, want %q", keys, want)
	}
	// Four requests of 10 a minute: full again in 24 s.
	ttl := redisCmd(t, addr, "PTTL", "keygate:rl:standard:10/60000ms:key:/k1")
	var ms int
	fmt.Sscan(ttl, &ms)
	if ms < 23_000 || ms > 24_000 {
		t.Errorf("PTTL %s ms, want about 24000", ttl)
	}
}

// TestRedisShared: two limiters (two replicas) on one Redis let exactly the
// budget through between them, however their requests interleave.
func TestRedisShared(t *testing.T) {
	addr, _ := startRedis(t)
	a, b := newRedis(t, addr, time.Second), newRedis(t, addr, time.Second)
	bucket := []Bucket{{Name: "standard", Requests: 50, Per: time.Hour, By: "key", ID: "k1"}}
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for i := range 8 {
		l := a
		if i%2 == 1 {
			l = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 25 {
				v, err := l.Take(time.Now(), bucket)
				if err != nil {
					t.Error(err)
					return
				}
				if v.Allowed {
					mu.Lock()
					allowed++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if allowed != 50 {
		t.Errorf("%d of 200 requests allowed across two limiters, want exactly 50", allowed)
	}
}

// TestRedisUnreachable: with Redis gone, Take fails within about its
// timeout instead of waiting or retrying, and counts the error; it
// recovers when Redis returns.
func TestRedisUnreachable(t *testing.T) {
	addr, kill := startRedis(t)
	const timeout = 50 * time.Millisecond
	rl := newRedis(t, addr, timeout)
	b := []Bucket{{Name: "standard", Requests: 100, Per: time.Minute, By: "key", ID: "k1"}}
	if _, err := rl.Take(time.Now(), b); err != nil {
		t.Fatal(err)
	}
	kill()
	for i := range 5 {
		start := time.Now()
		_, err := rl.Take(time.Now(), b)
		took := time.Since(start)
		if err == nil {
			t.Fatalf("request %d answered with Redis killed", i+1)
		}
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("error %q does not say which Redis", err)
		}
		if took > 10*timeout {
			t.Errorf("request %d took %v to fail, timeout %v", i+1, took, timeout)
		}
	}
	if st := rl.Stats(); st.Errors != 5 {
		t.Errorf("errors counted %d, want 5", st.Errors)
	}
}

// TestRedisAddressErrors: a bad address is refused at start, and its
// password is not repeated.
func TestRedisAddressErrors(t *testing.T) {
	for _, url := range []string{"http://cache:6379/0", "redis://:hunter2-secret@cache:6379/notadb"} {
		_, err := NewRedis(url, time.Second)
		if err == nil {
			t.Errorf("%s: accepted", url)
			continue
		}
		if strings.Contains(err.Error(), "hunter2-secret") {
			t.Errorf("%s: the error shows the password: %v", url, err)
		}
	}
	if _, err := NewRedis("redis://cache:6379/0", 0); err == nil {
		t.Error("a zero timeout was accepted")
	}
}

// redisCmd runs a command with redis-cli-like simplicity over RESP and
// returns the reply's values joined by spaces.
func redisCmd(t *testing.T, addr string, args ...string) string {
	t.Helper()
	l := newRedis(t, addr, time.Second)
	ctx := context.Background()
	cmdArgs := make([]any, len(args))
	for i, a := range args {
		cmdArgs[i] = a
	}
	v, err := l.redis.client.Do(ctx, cmdArgs...).Result()
	if err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	switch v := v.(type) {
	case []any:
		var s []string
		for _, e := range v {
			s = append(s, fmt.Sprint(e))
		}
		return strings.Join(s, " ")
	default:
		return fmt.Sprint(v)
	}
}

func TestMain(m *testing.M) {
	// A killed Redis makes the client say so on every dial: quiet in tests.
	SetRedisLogger(func(string) {})
	os.Exit(m.Run())
}

// TestRedisHighRate: at the policy's highest rate (a million a second, one
// request a microsecond) the script still counts. Counted from 1970 in a
// double, a microsecond's step was lost to rounding and the key got a TTL
// of 0 ms, which Redis refuses.
func TestRedisHighRate(t *testing.T) {
	addr, _ := startRedis(t)
	rl := newRedis(t, addr, time.Second)
	b := []Bucket{{Name: "firehose", Requests: 1_000_000, Per: time.Second, By: "key", ID: "k1"}}
	for i := range 10 {
		if v, err := rl.Take(time.Now(), b); err != nil || !v.Allowed {
			t.Fatalf("request %d: %+v %v", i+1, v, err)
		}
	}
}
