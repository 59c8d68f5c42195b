package cache_test

import (
	"errors"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
)

// fakeStore stands in for the Redis session store (its own tests use a
// real redis-server): it knows one principal per digest, and counts the
// lookups that reach it.
type fakeStore struct {
	known    map[policy.Digest]*policy.Principal
	cacheFor time.Duration
	err      error
	calls    int
	during   func() // runs inside a lookup, as an invalidation arriving mid-flight would
}

func (f *fakeStore) ResolveStored(_ *policy.Snapshot, k cache.Key) (*policy.Principal, time.Duration, error) {
	f.calls++
	if f.during != nil {
		f.during()
	}
	if f.err != nil {
		return nil, 0, f.err
	}
	return f.known[k.Digest], f.cacheFor, nil
}

func sessionKey(s string) cache.Key {
	return cache.Key{Kind: policy.KindSession, Digest: apikey.Digest(s)}
}

func TestResolveStored(t *testing.T) {
	now := time.Now().UnixNano()
	snap := snapshot(t, 1, "listed")
	stored, err := snap.SignedSession(policy.SignedClaims{ID: "kg_s1", User: "alice", Tenant: "acme", ExpiresAt: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	type step struct {
		name      string
		do        func(c *cache.Cache, f *fakeStore) // before the lookup
		key       cache.Key
		at        time.Duration // after now
		wantID    string
		wantOut   cache.Outcome
		wantErr   bool
		wantCalls int // lookups that reached the store so far
	}
	tok := sessionKey("tok")
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"a store resolution is cached for as long as the store says", []step{
			{name: "miss asks the store", key: tok, wantID: "kg_s1", wantOut: cache.Miss, wantCalls: 1},
			{name: "hit", key: tok, at: 4 * time.Second, wantID: "kg_s1", wantOut: cache.Hit, wantCalls: 1},
			{name: "stale after cacheFor", key: tok, at: 5 * time.Second, wantID: "kg_s1", wantOut: cache.Miss, wantCalls: 2},
		}},
		{"the policy answers first", []step{
			{name: "listed key", key: key("listed"), wantID: "k0", wantOut: cache.Miss, wantCalls: 0},
			{name: "still listed after ForgetStored", do: func(c *cache.Cache, _ *fakeStore) { c.ForgetStored() }, key: key("listed"), at: time.Hour, wantID: "k0", wantOut: cache.Hit, wantCalls: 0},
		}},
		{"unknown to the store is remembered as long as a resolution", []step{
			{name: "miss", key: sessionKey("nope"), wantOut: cache.Miss, wantCalls: 1},
			{name: "negative hit", key: sessionKey("nope"), at: time.Second, wantOut: cache.NegativeHit, wantCalls: 1},
			{name: "asked again after cacheFor", key: sessionKey("nope"), at: 6 * time.Second, wantOut: cache.Miss, wantCalls: 2},
		}},
		{"Forget drops one credential", []step{
			{name: "miss", key: tok, wantID: "kg_s1", wantOut: cache.Miss, wantCalls: 1},
			{name: "forgotten: asked again", do: func(c *cache.Cache, f *fakeStore) { c.Forget(tok); delete(f.known, tok.Digest) }, key: tok, wantOut: cache.Miss, wantCalls: 2},
		}},
		{"ForgetStored drops every store resolution", []step{
			{name: "miss", key: tok, wantID: "kg_s1", wantOut: cache.Miss, wantCalls: 1},
			{name: "asked again", do: func(c *cache.Cache, _ *fakeStore) { c.ForgetStored() }, key: tok, wantID: "kg_s1", wantOut: cache.Miss, wantCalls: 2},
			{name: "then cached again", key: tok, wantID: "kg_s1", wantOut: cache.Hit, wantCalls: 2},
		}},
		{"an error is never cached", []step{
			{name: "store down", do: func(_ *cache.Cache, f *fakeStore) { f.err = errors.New("down") }, key: tok, wantOut: cache.Miss, wantErr: true, wantCalls: 1},
			{name: "store back", do: func(_ *cache.Cache, f *fakeStore) { f.err = nil }, key: tok, wantID: "kg_s1", wantOut: cache.Miss, wantCalls: 2},
		}},
		{"cacheFor 0 is not cached", []step{
			{name: "miss", do: func(_ *cache.Cache, f *fakeStore) { f.cacheFor = 0 }, key: tok, wantID: "kg_s1", wantOut: cache.Miss, wantCalls: 1},
			{name: "miss again", key: tok, wantID: "kg_s1", wantOut: cache.Miss, wantCalls: 2},
		}},
		{"an invalidation during the lookup keeps its answer out of the cache", []step{
			{name: "revoked mid-flight", do: func(c *cache.Cache, f *fakeStore) { f.during = func() { c.Forget(tok) } }, key: tok, wantID: "kg_s1", wantOut: cache.Miss, wantCalls: 1},
			{name: "not cached", do: func(_ *cache.Cache, f *fakeStore) { f.during = nil }, key: tok, wantID: "kg_s1", wantOut: cache.Miss, wantCalls: 2},
		}},
		{"a new snapshot makes a store resolution stale", []step{
			{name: "miss", key: tok, wantID: "kg_s1", wantOut: cache.Miss, wantCalls: 1},
			{name: "new generation", do: func(*cache.Cache, *fakeStore) { snap = snapshot(t, 2, "listed") }, key: tok, wantID: "kg_s1", wantOut: cache.Miss, wantCalls: 2},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			snap = snapshot(t, 1, "listed")
			c, err := cache.New(10, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			f := &fakeStore{known: map[policy.Digest]*policy.Principal{tok.Digest: stored}, cacheFor: 5 * time.Second}
			for _, s := range tc.steps {
				if s.do != nil {
					s.do(c, f)
				}
				p, out, err := c.ResolveStored(snap, s.key, now+int64(s.at), f)
				id := ""
				if p != nil {
					id = p.ID
				}
				if id != s.wantID || out != s.wantOut || (err != nil) != s.wantErr || f.calls != s.wantCalls {
					t.Fatalf("%s: got %q, outcome %d, err %v, %d store lookups; want %q, outcome %d, error %v, %d lookups",
						s.name, id, out, err, f.calls, s.wantID, s.wantOut, s.wantErr, s.wantCalls)
				}
			}
		})
	}
}
