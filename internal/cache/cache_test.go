package cache_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
)

func snapshot(t *testing.T, gen uint64, keys ...string) *policy.Snapshot {
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

func key(s string) cache.Key { return cache.Key{Kind: policy.KindAPIKey, Digest: apikey.Digest(s)} }

func TestResolve(t *testing.T) {
	now := time.Now().UnixNano()
	c, err := cache.New(10, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s1 := snapshot(t, 1, "a", "b")
	steps := []struct {
		name    string
		snap    *policy.Snapshot
		key     string
		now     int64
		wantID  string
		outcome cache.Outcome
	}{
		{"first lookup misses", s1, "a", now, "k0", cache.Miss},
		{"second lookup hits", s1, "a", now, "k0", cache.Hit},
		{"unknown misses", s1, "zzz", now, "", cache.Miss},
		{"unknown is remembered", s1, "zzz", now, "", cache.NegativeHit},
		{"unknown expires after the negative TTL", s1, "zzz", now + int64(2*time.Second), "", cache.Miss},
		{"a new generation misses however warm", snapshot(t, 2, "b"), "a", now, "", cache.Miss},
		{"and resolves against the new snapshot", snapshot(t, 3, "a"), "a", now, "k0", cache.Miss},
	}
	for _, s := range steps {
		p, out := c.Resolve(s.snap, key(s.key), s.now)
		id := ""
		if p != nil {
			id = p.ID
		}
		if id != s.wantID || out != s.outcome {
			t.Errorf("%s: got %q/%v, want %q/%v", s.name, id, out, s.wantID, s.outcome)
		}
	}
	st := c.Stats()
	if st.Hits != 1 || st.NegativeHits != 1 || st.Misses != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestBoundedWithEvictions(t *testing.T) {
	c, _ := cache.New(3, time.Second)
	s := snapshot(t, 1)
	for i := 0; i < 10; i++ {
		c.Resolve(s, key(fmt.Sprint(i)), 0)
	}
	st := c.Stats()
	if st.Entries != 3 || st.Evictions != 7 {
		t.Errorf("entries %d evictions %d, want 3 and 7", st.Entries, st.Evictions)
	}
}

func TestNewRejectsZeroSize(t *testing.T) {
	if _, err := cache.New(0, time.Second); err == nil {
		t.Error("a zero-size cache must be refused")
	}
}

func TestResetDropsOldGenerations(t *testing.T) {
	c, _ := cache.New(10, time.Second)
	s1 := snapshot(t, 1, "a", "b")
	c.Resolve(s1, key("a"), 0)
	c.Resolve(s1, key("b"), 0)
	c.Reset()
	if n := c.Stats().Entries; n != 0 {
		t.Fatalf("%d entries after Reset", n)
	}
	if p, out := c.Resolve(snapshot(t, 2, "a"), key("a"), 0); p == nil || out != cache.Miss {
		t.Errorf("after Reset: got %v %v, want a miss that resolves", p, out)
	}
	if st := c.Stats(); st.Evictions != 0 {
		t.Errorf("Reset is not eviction: %d counted", st.Evictions)
	}
}
