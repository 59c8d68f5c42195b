package cache

import (
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
)

func TestShardsFor(t *testing.T) {
	cases := []struct{ size, procs, want int }{
		{3, 64, 1},   // a small cache is one LRU, bounded exactly
		{2047, 8, 1}, // two shards would be under minShardSize
		{2048, 8, 2},
		{100_000, 1, 4}, // four per P
		{100_000, 2, 8},
		{100_000, 3, 16},  // rounded up to a power of two
		{100_000, 64, 64}, // capped by minShardSize: 97 would fit, 64 is the power of two
		{10_000_000, 64, 256},
		{0, 4, 1}, // New refuses it, with one shard's error
	}
	for _, c := range cases {
		if got := shardsFor(c.size, c.procs); got != c.want {
			t.Errorf("shardsFor(%d, %d) = %d, want %d", c.size, c.procs, got, c.want)
		}
	}
}

func snap(t testing.TB, gen uint64, keys ...string) *policy.Snapshot {
	t.Helper()
	doc := "version: 1\ntenants: [{id: acme}]\nendpoints: [{name: e, match: {path: /}}]\napi_keys:\n"
	for i, k := range keys {
		doc += fmt.Sprintf("  - {id: k%d, hash: %q, tenant: acme, user: u%d}\n", i, policy.FormatDigest(apikey.Digest(k)), i)
	}
	if len(keys) == 0 {
		doc += "  []\n"
	}
	s, err := policy.Load([]policy.Input{{Name: "t.yaml", Data: []byte(doc)}}, policy.Options{Generation: gen})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func digestKey(s string) Key { return Key{Kind: policy.KindAPIKey, Digest: apikey.Digest(s)} }

// A sharded cache keeps the whole cache's promises: at most size entries in
// all (exactly size once full), every eviction counted, and a publish seen
// by every shard on the next request.
func TestShardedCacheKeepsItsPromises(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	const size = 8192
	c, err := New(size, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(c.counts); n != 8 {
		t.Fatalf("%d shards, want 8 (size %d, 4 Ps)", n, size)
	}
	known := make([]string, 64)
	for i := range known {
		known[i] = fmt.Sprint("known-", i)
	}
	s1 := snap(t, 1, known...)
	const n = 4 * size
	for i := 0; i < n; i++ {
		c.Resolve(s1, digestKey(fmt.Sprint("unknown-", i)), 0)
	}
	st := c.Stats()
	if st.Entries != size || st.Evictions != n-size || st.Misses != n {
		t.Fatalf("after %d distinct lookups: %d entries, %d evictions, %d misses; want %d, %d, %d",
			n, st.Entries, st.Evictions, st.Misses, size, n-size, n)
	}
	for _, k := range known {
		c.Resolve(s1, digestKey(k), 0)
	}
	for _, k := range known {
		if p, out := c.Resolve(s1, digestKey(k), 0); p == nil || out != Hit {
			t.Fatalf("%s: got %v %v, want a hit", k, p, out)
		}
	}
	// The new generation revokes every key but the first, in whichever shard.
	s2 := snap(t, 2, known[0])
	for i, k := range known {
		p, out := c.Resolve(s2, digestKey(k), 0)
		if (p != nil) != (i == 0) || out != Miss {
			t.Errorf("%s after publish: got %v %v, want a miss that resolves only known-0", k, p, out)
		}
	}
	c.Reset()
	if st := c.Stats(); st.Entries != 0 {
		t.Errorf("%d entries after Reset", st.Entries)
	}
}

// The per-shard counters sum to every resolution, however many goroutines
// resolve at once (run with -race).
func TestCountersUnderConcurrency(t *testing.T) {
	c, _ := New(DefaultSize, time.Minute)
	s := snap(t, 1, "a", "b", "c")
	const goroutines, each = 8, 2000
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				c.Resolve(s, digestKey([]string{"a", "b", "c", "zzz"}[i%4]), 0)
			}
		}()
	}
	wg.Wait()
	st := c.Stats()
	if got := st.Hits + st.NegativeHits + st.Misses; got != goroutines*each {
		t.Errorf("counters sum to %d, want %d (%+v)", got, goroutines*each, st)
	}
	if st.Entries != 4 || st.Misses < 4 || st.NegativeHits == 0 {
		t.Errorf("stats %+v: want 4 entries, at least 4 misses, some negative hits", st)
	}
}

// A hit keeps its entry recent, though it takes the write lock at most once
// per promoteEvery: the entry used after the others were added outlives them.
func TestHitKeepsEntryRecent(t *testing.T) {
	c, _ := New(3, time.Minute)
	s := snap(t, 1, "a", "b", "c", "d")
	for _, k := range []string{"a", "b", "c"} {
		c.Resolve(s, digestKey(k), 0)
	}
	if _, out := c.Resolve(s, digestKey("a"), promoteEvery); out != Hit {
		t.Fatalf("a: %v, want a hit", out)
	}
	c.Resolve(s, digestKey("d"), promoteEvery) // evicts the least recent: b
	for _, w := range []struct {
		key string
		out Outcome
	}{{"a", Hit}, {"c", Hit}, {"d", Hit}, {"b", Miss}} {
		if _, out := c.Resolve(s, digestKey(w.key), promoteEvery); out != w.out {
			t.Errorf("%s: %v, want %v", w.key, out, w.out)
		}
	}
}
