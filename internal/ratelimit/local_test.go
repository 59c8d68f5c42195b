package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func keyBucket(id string, requests int64, per time.Duration) Bucket {
	return Bucket{Name: "standard", Requests: requests, Per: per, By: "key", ID: id}
}

// step is one request at an offset from t0 and what the limiter must say.
type step struct {
	at      time.Duration
	allowed bool
	retry   time.Duration // when denied: until one more request fits
	reset   time.Duration // when denied: until the budget is full
}

// TestLocalMath runs request sequences against one budget on an injected
// clock: N requests pass at once, then one every period/N.
func TestLocalMath(t *testing.T) {
	cases := []struct {
		name     string
		requests int64
		per      time.Duration
		steps    []step
	}{
		{"3 per minute: three at once, then one every 20s", 3, time.Minute, []step{
			{0, true, 0, 0},
			{0, true, 0, 0},
			{0, true, 0, 0},
			{0, false, 20 * time.Second, time.Minute},
			{10 * time.Second, false, 10 * time.Second, 50 * time.Second},
			{20 * time.Second, true, 0, 0},
			{20 * time.Second, false, 20 * time.Second, time.Minute},
			{40 * time.Second, true, 0, 0},
		}},
		{"an idle budget refills to its size and no further", 2, 10 * time.Second, []step{
			{0, true, 0, 0},
			{0, true, 0, 0},
			{time.Hour, true, 0, 0},
			{time.Hour, true, 0, 0},
			{time.Hour, false, 5 * time.Second, 10 * time.Second},
		}},
		{"1 per day", 1, 24 * time.Hour, []step{
			{0, true, 0, 0},
			{time.Hour, false, 23 * time.Hour, 23 * time.Hour},
			{24 * time.Hour, true, 0, 0},
		}},
		{"a denied request costs nothing", 1, time.Second, []step{
			{0, true, 0, 0},
			{100 * time.Millisecond, false, 900 * time.Millisecond, 900 * time.Millisecond},
			{200 * time.Millisecond, false, 800 * time.Millisecond, 800 * time.Millisecond},
			{time.Second, true, 0, 0},
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewLocal(100)
			if err != nil {
				t.Fatal(err)
			}
			b := []Bucket{keyBucket("k1", tc.requests, tc.per)}
			for i, s := range tc.steps {
				v, err := l.Take(t0.Add(s.at), b)
				if err != nil {
					t.Fatal(err)
				}
				want := Verdict{Allowed: s.allowed, RetryAfter: s.retry, Reset: s.reset}
				if !sameVerdict(v, want) {
					t.Errorf("request %d at +%v: %+v, want %+v", i+1, s.at, v, want)
				}
			}
		})
	}
}

// sameVerdict compares verdicts to within a microsecond: the token bucket counts
// in floating point.
func sameVerdict(got, want Verdict) bool {
	near := func(a, b time.Duration) bool { return (a - b).Abs() <= time.Microsecond }
	return got.Allowed == want.Allowed && got.Denied == want.Denied && near(got.RetryAfter, want.RetryAfter) && near(got.Reset, want.Reset)
}

// TestLocalSeveralBuckets: a request spends from every budget or from
// none, and the verdict names the budget that makes it wait longest.
func TestLocalSeveralBuckets(t *testing.T) {
	l, _ := NewLocal(100)
	own := keyBucket("k1", 10, time.Minute)                                                                   // roomy
	endpoint := Bucket{Name: "search", Requests: 2, Per: time.Second, By: "user", Scope: "acme", ID: "alice"} // tight
	both := []Bucket{own, endpoint}
	for i := range 2 {
		if v, _ := l.Take(t0, both); !v.Allowed {
			t.Fatalf("request %d denied: %+v", i+1, v)
		}
	}
	v, _ := l.Take(t0, both)
	if want := (Verdict{Denied: 1, RetryAfter: 500 * time.Millisecond, Reset: time.Second}); !sameVerdict(v, want) {
		t.Fatalf("third request: %+v, want %+v", v, want)
	}
	// The refused requests did not spend the key's own budget: 8 of its
	// 10 remain.
	for i := range 8 {
		if v, _ := l.Take(t0, []Bucket{own}); !v.Allowed {
			t.Fatalf("own budget, request %d: denied %+v; a refused request was charged to it", i+1, v)
		}
	}
	if v, _ := l.Take(t0, []Bucket{own}); v.Allowed {
		t.Fatal("own budget: an 11th request within the minute was allowed")
	}
	// Both exhausted: the longer wait is named.
	v, _ = l.Take(t0, both)
	if want := (Verdict{Denied: 0, RetryAfter: 6 * time.Second, Reset: time.Minute}); !sameVerdict(v, want) {
		t.Errorf("both exhausted: %+v, want %+v", v, want)
	}
}

// TestLocalBucketsApart: budgets differ by every field of the bucket, and
// a limit whose size changes starts afresh.
func TestLocalBucketsApart(t *testing.T) {
	base := keyBucket("k1", 1, time.Minute)
	others := map[string]Bucket{}
	for name, change := range map[string]func(*Bucket){
		"name":     func(b *Bucket) { b.Name = "other" },
		"requests": func(b *Bucket) { b.Requests = 2 },
		"per":      func(b *Bucket) { b.Per = time.Hour },
		"by":       func(b *Bucket) { b.By = "session" },
		"scope":    func(b *Bucket) { b.Scope = "globex" },
		"id":       func(b *Bucket) { b.ID = "k2" },
		"id split": func(b *Bucket) { b.Scope, b.ID = "k", "1" }, // no concatenation collides
	} {
		b := base
		change(&b)
		others[name] = b
	}
	l, _ := NewLocal(100)
	if v, _ := l.Take(t0, []Bucket{base}); !v.Allowed {
		t.Fatal("first request denied")
	}
	if v, _ := l.Take(t0, []Bucket{base}); v.Allowed {
		t.Fatal("second request within the minute allowed")
	}
	for name, b := range others {
		if v, _ := l.Take(t0, []Bucket{b}); !v.Allowed {
			t.Errorf("a bucket differing by %s shares the spent budget: %+v", name, v)
		}
	}
}

// TestLocalBounded: a million identities cannot grow the store past its
// size; the least recently used budgets are forgotten.
func TestLocalBounded(t *testing.T) {
	const size = 5000
	l, _ := NewLocal(size)
	for i := range 3 * size {
		if v, _ := l.Take(t0, []Bucket{keyBucket(fmt.Sprint("k", i), 1, time.Minute)}); !v.Allowed {
			t.Fatalf("first request of k%d denied", i)
		}
	}
	st := l.Stats()
	if st.Buckets > size {
		t.Errorf("%d budgets held, size %d", st.Buckets, size)
	}
	if st.Evictions != uint64(3*size-st.Buckets) || st.Allowed != 3*size {
		t.Errorf("stats %+v, want %d allowed and every budget past the size evicted", st, 3*size)
	}
	// The most recent budget is still held: its second request is refused.
	if v, _ := l.Take(t0, []Bucket{keyBucket(fmt.Sprint("k", 3*size-1), 1, time.Minute)}); v.Allowed {
		t.Error("the most recently used budget was forgotten")
	}
}

func TestLocalConcurrent(t *testing.T) {
	l, _ := NewLocal(1000)
	b := []Bucket{keyBucket("shared", 100, time.Hour)}
	allowed := make(chan int, 8)
	for range 8 {
		go func() {
			n := 0
			for range 50 {
				if v, _ := l.Take(t0, b); v.Allowed {
					n++
				}
			}
			allowed <- n
		}()
	}
	total := 0
	for range 8 {
		total += <-allowed
	}
	if total != 100 {
		t.Errorf("%d of 400 concurrent requests allowed by a budget of 100", total)
	}
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int64{0: 0, -time.Second: 0, time.Nanosecond: 1, time.Second: 1, 1500 * time.Millisecond: 2, time.Minute: 60} {
		if got := Seconds(d); got != want {
			t.Errorf("Seconds(%v) = %d, want %d", d, got, want)
		}
	}
}

func TestBucketKey(t *testing.T) {
	b := Bucket{Name: "search", Requests: 10, Per: time.Minute, By: "user", Scope: "acme", ID: "alice:x"}
	if got, want := b.key(), "keygate:rl:search:10/60000ms:user:acme/alice:x"; got != want {
		t.Errorf("key %q, want %q", got, want)
	}
}
