package session

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keygate/keygate/internal/policy"
)

// jwksServer is an identity provider's JWKS endpoint over real HTTP: its
// keys can be rotated and it can be made to fail.
type jwksServer struct {
	*httptest.Server
	mu      sync.Mutex
	body    string
	status  int
	fetches atomic.Int64
}

func newJWKSServer(t *testing.T, keys ...testKey) *jwksServer {
	s := &jwksServer{body: jwksJSON(keys...), status: 200}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		s.fetches.Add(1)
		s.mu.Lock()
		defer s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.status)
		fmt.Fprint(w, s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) serve(status int, keys ...testKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, jwksJSON(keys...)
}

// eventually polls cond for up to 5 s: the fetch loop runs on its own.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func urlIssuerSnap(t *testing.T, url string) *policy.Snapshot {
	return loadSnap(t, fmt.Sprintf(`"session_issuers": [{"name": "idp", "issuer": "https://idp.test", "audiences": ["api"], "jwks_url": %q}]`, url))
}

func idpClaims(sub string) map[string]any {
	return map[string]any{"iss": "https://idp.test", "aud": "api", "sub": sub, "tid": "acme", "exp": time.Now().Add(time.Hour).Unix()}
}

func TestJWKSRotation(t *testing.T) {
	k1 := newTestKey(t, "k1", jose.RS256)
	k2 := newTestKey(t, "k2", jose.ES256)
	srv := newJWKSServer(t, k1)
	snap := urlIssuerSnap(t, srv.URL)
	const minRefresh = 300 * time.Millisecond
	v := NewVerifier(Options{MinRefresh: minRefresh, Refresh: time.Hour})
	defer v.Close()
	v.Sync(snap)
	verify := func(tok string) Result { return v.Verify(snap, tok, time.Now().UnixNano()) }

	tok1 := k1.sign(t, idpClaims("alice"))
	eventually(t, "the first fetch verifies k1's token", func() bool { return verify(tok1).Refusal == Verified })
	gen1 := verify(tok1).KeyGen

	// The IdP rotates: k2 is added. A token signed with it names an unknown
	// kid, which fetches at once or after minRefresh, not once per token.
	srv.serve(200, k1, k2)
	tok2 := k2.sign(t, idpClaims("bob"))
	before := srv.fetches.Load()
	for range 50 {
		if r := verify(tok2); r.Refusal == Verified {
			break
		}
	}
	eventually(t, "k2's token verifies after the unknown kid's refresh", func() bool { return verify(tok2).Refusal == Verified })
	if n := srv.fetches.Load() - before; n > 2 {
		t.Errorf("%d fetches for one unknown kid presented 50 times; refreshes are rate-limited", n)
	}
	r := verify(tok2)
	if r.KeyGen <= gen1 {
		t.Errorf("key generation %d after a change, was %d", r.KeyGen, gen1)
	}
	// A flood of tokens with kids that never exist: at most one fetch per
	// minRefresh.
	start, fetched := time.Now(), srv.fetches.Load()
	for i := 0; time.Since(start) < 3*minRefresh; i++ {
		verify(newTestKeyCached(t, "ed").signKID(t, fmt.Sprintf("nope-%d", i%7), idpClaims("x")))
		time.Sleep(time.Millisecond)
	}
	elapsed := time.Since(start)
	if n, most := srv.fetches.Load()-fetched, int64(elapsed/minRefresh)+1; n > most {
		t.Errorf("%d fetches in %v of unknown kids; at most %d at one per %v", n, elapsed, most, minRefresh)
	}

	// The endpoint fails: the last good keys stay in force.
	srv.serve(500)
	failed := v.Stats()[0].FetchFailed
	verify(newTestKeyCached(t, "ed").signKID(t, "k3", idpClaims("x"))) // asks for a refresh
	eventually(t, "a failed fetch", func() bool { return v.Stats()[0].FetchFailed > failed })
	if r := verify(tok1); r.Refusal != Verified {
		t.Errorf("k1 after a failed fetch: %v %s", r.Refusal, r.Why)
	}
	if st := v.Stats()[0]; st.Keys != 2 || !strings.Contains(st.LastError, "HTTP 500") {
		t.Errorf("stats after a failed fetch: %+v", st)
	}

	// k1 is removed at the IdP: it stops verifying at the next refresh, and
	// the generation a cache tags its results with moves on.
	srv.serve(200, k2)
	genBefore := verify(tok1).KeyGen
	verify(newTestKeyCached(t, "ed").signKID(t, "k4", idpClaims("x")))
	eventually(t, "k1 refused once removed", func() bool { return verify(tok1).Refusal == Unknown })
	if r := verify(tok2); r.Refusal != Verified || r.KeyGen == genBefore {
		t.Errorf("k2 after k1's removal: %v gen %d (was %d)", r.Refusal, r.KeyGen, genBefore)
	}
}

// TestJWKSUnreachableAtStart: tokens are refused while the first fetch has
// not succeeded, and verify once it does, without a new snapshot.
func TestJWKSUnreachableAtStart(t *testing.T) {
	k1 := newTestKey(t, "k1", jose.EdDSA)
	srv := newJWKSServer(t)
	srv.serve(503)
	snap := urlIssuerSnap(t, srv.URL)
	v := NewVerifier(Options{MinRefresh: 100 * time.Millisecond})
	defer v.Close()
	v.Sync(snap)
	tok := k1.sign(t, idpClaims("alice"))
	eventually(t, "the first fetch fails", func() bool { return v.Stats()[0].FetchFailed > 0 })
	r := v.Verify(snap, tok, time.Now().UnixNano())
	if r.Refusal != Unknown || !strings.Contains(r.Why, "has no keys yet") {
		t.Fatalf("%v %s", r.Refusal, r.Why)
	}
	srv.serve(200, k1)
	eventually(t, "the retry verifies", func() bool { return v.Verify(snap, tok, time.Now().UnixNano()).Refusal == Verified })
}

// TestSyncKeepsKeys: a new snapshot with the same issuer keeps its fetched
// keys (no refetch, same generation); a removed issuer's loop stops.
func TestSyncKeepsKeys(t *testing.T) {
	k1 := newTestKey(t, "k1", jose.EdDSA)
	srv := newJWKSServer(t, k1)
	v := NewVerifier(Options{})
	defer v.Close()
	snap := urlIssuerSnap(t, srv.URL)
	v.Sync(snap)
	tok := k1.sign(t, idpClaims("alice"))
	eventually(t, "fetched", func() bool { return v.Verify(snap, tok, time.Now().UnixNano()).Refusal == Verified })
	fetches := srv.fetches.Load()
	snap2 := urlIssuerSnap(t, srv.URL)
	v.Sync(snap2)
	if r := v.Verify(snap2, tok, time.Now().UnixNano()); r.Refusal != Verified {
		t.Fatalf("after a reload: %v %s", r.Refusal, r.Why)
	}
	if srv.fetches.Load() != fetches {
		t.Error("a reload with the same issuer fetched its keys again")
	}
	none := loadSnap(t, `"management": {}`)
	v.Sync(none)
	if r := v.Verify(none, tok, time.Now().UnixNano()); r.Refusal != Unknown {
		t.Errorf("issuer removed: %v", r.Refusal)
	}
	if len(v.Stats()) != 0 {
		t.Errorf("stats of a removed issuer: %+v", v.Stats())
	}
}

var cachedKeys sync.Map

// newTestKeyCached is one key per name for the whole test binary: the
// flood tests sign many tokens.
func newTestKeyCached(t *testing.T, name string) testKey {
	if k, ok := cachedKeys.Load(name); ok {
		return k.(testKey)
	}
	k := newTestKey(t, name, jose.EdDSA)
	cachedKeys.Store(name, k)
	return k
}

func (k testKey) signKID(t *testing.T, kid string, claims map[string]any) string {
	k.kid = kid
	return k.sign(t, claims)
}
