package redissessions_test

import (
	"context"
	"encoding/hex"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/store/redissessions"
)

func open(t testing.TB, r *redisServer, reg prometheus.Registerer) *redissessions.Store {
	t.Helper()
	s, err := redissessions.Open(r.URL(), redissessions.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func rawClient(t testing.TB, r *redisServer) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func newSession(user, org string, ttl time.Duration, groups ...string) redissessions.Session {
	now := time.Now().UTC().Truncate(time.Second)
	return redissessions.Session{User: user, Tenant: "acme", Org: org, Groups: groups, CreatedAt: now, ExpiresAt: now.Add(ttl)}
}

// dump is every key of Redis with its value (strings, and set members).
func dump(t testing.TB, c *redis.Client) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	iter := c.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		switch typ := c.Type(ctx, k).Val(); typ {
		case "string":
			out[k] = c.Get(ctx, k).Val()
		case "set":
			m := c.SMembers(ctx, k).Val()
			slices.Sort(m)
			out[k] = strings.Join(m, " ")
		default:
			out[k] = "(" + typ + ")"
		}
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCreateLookup: a session is stored by digest with its principal and
// Redis's expiry at its expires_at; the token is nowhere in Redis.
func TestCreateLookup(t *testing.T) {
	r := startRedis(t)
	s := open(t, r, nil)
	rc := rawClient(t, r)
	ctx := context.Background()

	tok, sess, err := s.Create(ctx, newSession("alice", "acme-eu", time.Hour, "sales", "support"))
	if err != nil {
		t.Fatal(err)
	}
	id, ours, valid := apikey.Check(tok)
	if !ours || !valid || id != sess.ID {
		t.Fatalf("token is not keygate's format for id %s (id %q, ours %v, valid %v)", sess.ID, id, ours, valid)
	}
	c, cacheFor, err := s.Lookup(ctx, apikey.Digest(tok))
	if err != nil || c == nil {
		t.Fatalf("lookup: %v, %v", c, err)
	}
	if c.ID != sess.ID || c.User != "alice" || c.Tenant != "acme" || c.Org != "acme-eu" || !slices.Equal(c.Groups, []string{"sales", "support"}) ||
		!c.ExpiresAt.Equal(sess.ExpiresAt) || !c.IssuedAt.Equal(sess.CreatedAt) {
		t.Errorf("lookup = %+v, want the session created %+v", c, sess)
	}
	if cacheFor != 0 {
		t.Errorf("cacheFor = %v before Watch subscribed, want 0: invalidations would not be heard", cacheFor)
	}
	if c, _, err := s.Lookup(ctx, apikey.Digest(tok+"x")); c != nil || err != nil {
		t.Errorf("an unknown digest: %v, %v; want nil, nil", c, err)
	}

	digest := hex.EncodeToString(func() []byte { d := apikey.Digest(tok); return d[:] }())
	keys := dump(t, rc)
	want := map[string]string{
		"keygate:session:" + digest:        "",
		"keygate:session-id:" + sess.ID:    digest,
		"keygate:user-sessions:acme:alice": digest,
	}
	if len(keys) != len(want) {
		t.Errorf("keys %v, want exactly %v", keys, want)
	}
	for k, v := range want {
		got, ok := keys[k]
		if !ok || v != "" && got != v {
			t.Errorf("key %s = %q (present %v), want %q", k, got, ok, v)
		}
	}
	for k, v := range keys {
		if strings.Contains(k, tok) || strings.Contains(v, tok) || strings.Contains(v, tok[len(sess.ID)+1:]) {
			t.Errorf("the token (or its secret) is in Redis under %s", k)
		}
		at := rc.ExpireTime(ctx, k).Val()
		if at != time.Duration(sess.ExpiresAt.Unix())*time.Second {
			t.Errorf("%s expires at %v, want the session's expires_at %d", k, at, sess.ExpiresAt.Unix())
		}
	}

	// A later session of the same user extends the index to its expiry; an
	// earlier one leaves it.
	_, later, err := s.Create(ctx, newSession("alice", "", 2*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(ctx, newSession("alice", "", time.Minute)); err != nil {
		t.Fatal(err)
	}
	if at := rc.ExpireTime(ctx, "keygate:user-sessions:acme:alice").Val(); at != time.Duration(later.ExpiresAt.Unix())*time.Second {
		t.Errorf("the index expires at %v, want the latest session's %d", at, later.ExpiresAt.Unix())
	}
}

// TestListRevoke: listing by user (tenants apart), revoking one, and
// signing a user out everywhere.
func TestListRevoke(t *testing.T) {
	r := startRedis(t)
	reg := prometheus.NewRegistry()
	s := open(t, r, reg)
	ctx := context.Background()

	var toks []string
	for i := range 5 {
		sess := newSession("bob", "acme-eu", time.Hour, "sales")
		sess.CreatedAt = sess.CreatedAt.Add(time.Duration(i) * time.Second)
		tok, _, err := s.Create(ctx, sess)
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	other := newSession("bob", "", time.Hour)
	other.Tenant = "globex"
	if _, _, err := s.Create(ctx, other); err != nil {
		t.Fatal(err)
	}

	list, err := s.List(ctx, "acme", "bob")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 5 {
		t.Fatalf("listed %d sessions of bob in acme, want 5 (globex's bob is another user)", len(list))
	}
	for i := 1; i < len(list); i++ {
		if !list[i-1].CreatedAt.Before(list[i].CreatedAt) {
			t.Errorf("not oldest first: %v then %v", list[i-1].CreatedAt, list[i].CreatedAt)
		}
	}

	one, err := s.Get(ctx, list[0].ID)
	if err != nil || one == nil || one.ID != list[0].ID {
		t.Fatalf("get %s: %v, %v", list[0].ID, one, err)
	}
	if n, err := s.Revoke(ctx, *one); n != 1 || err != nil {
		t.Fatalf("revoke: %d, %v", n, err)
	}
	if n, err := s.Revoke(ctx, *one); n != 0 || err != nil {
		t.Errorf("revoking again: %d, %v; want 0 revoked, no error", n, err)
	}
	if c, _, err := s.Lookup(ctx, apikey.Digest(toks[0])); c != nil || err != nil {
		t.Errorf("a revoked session still looks up: %v, %v", c, err)
	}
	if g, err := s.Get(ctx, list[0].ID); g != nil || err != nil {
		t.Errorf("a revoked session still gets: %v, %v", g, err)
	}

	rest, _ := s.List(ctx, "acme", "bob")
	if n, err := s.Revoke(ctx, rest...); n != 4 || err != nil {
		t.Fatalf("sign-out everywhere revoked %d, %v; want 4", n, err)
	}
	if l, _ := s.List(ctx, "acme", "bob"); len(l) != 0 {
		t.Errorf("after sign-out everywhere %d sessions listed", len(l))
	}
	if l, _ := s.List(ctx, "globex", "bob"); len(l) != 1 {
		t.Errorf("globex's bob has %d sessions, want his 1 untouched", len(l))
	}
	if got := metricValue(t, reg, "keygate_session_store_requests_total", "revoke", "ok"); got != 3 {
		t.Errorf("revoke ok counted %v, want 3", got)
	}
}

// TestExpiry: Redis drops a session at its expires_at; listing drops it
// from the index.
func TestExpiry(t *testing.T) {
	r := startRedis(t)
	s := open(t, r, nil)
	rc := rawClient(t, r)
	ctx := context.Background()
	now := time.Now().UTC().Truncate(time.Second)
	short := redissessions.Session{User: "carol", Tenant: "acme", CreatedAt: now, ExpiresAt: now.Add(time.Second)}
	tok, _, err := s.Create(ctx, short)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Create(ctx, newSession("carol", "", time.Hour)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(short.ExpiresAt) + 100*time.Millisecond)
	if c, _, _ := s.Lookup(ctx, apikey.Digest(tok)); c != nil {
		t.Errorf("an expired session looks up: %+v", c)
	}
	if l, _ := s.List(ctx, "acme", "carol"); len(l) != 1 {
		t.Errorf("%d listed, want the live one", len(l))
	}
	if n := rc.SCard(ctx, "keygate:user-sessions:acme:carol").Val(); n != 1 {
		t.Errorf("the index holds %d digests after listing, want 1", n)
	}
}

// TestWatch: a revoke on one store reaches another's Watch; the answers
// of a subscribed store may be cached.
func TestWatch(t *testing.T) {
	r := startRedis(t)
	a, b := open(t, r, nil), open(t, r, nil)
	ctx := context.Background()
	w := watchSubscribed(t, b)

	tok, sess, err := a.Create(ctx, newSession("dave", "", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, cacheFor, _ := b.Lookup(ctx, apikey.Digest(tok)); cacheFor != redissessions.DefaultCacheFor {
		t.Errorf("cacheFor %v while subscribed, want %v", cacheFor, redissessions.DefaultCacheFor)
	}
	got, _ := a.Get(ctx, sess.ID)
	start := time.Now()
	if _, err := a.Revoke(ctx, *got); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-w.forgot:
		t.Logf("invalidation heard %v after the revoke returned", time.Since(start))
		if d != apikey.Digest(tok) {
			t.Errorf("forgot another digest")
		}
	case <-time.After(time.Second):
		t.Fatal("the revoke did not reach the other store within 1 s")
	}
}

// TestRevokeForgetsHere: the replica that revokes has forgotten the session
// when Revoke returns, without waiting for its own invalidation to come
// back from Redis (a Check right after the DELETE must be refused there).
func TestRevokeForgetsHere(t *testing.T) {
	r := startRedis(t)
	s := open(t, r, nil)
	ctx := context.Background()
	w := watchSubscribed(t, s)

	tok, sess, err := s.Create(ctx, newSession("frank", "", time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := s.Get(ctx, sess.ID)
	if _, err := s.Revoke(ctx, *got); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-w.forgot:
		if d != apikey.Digest(tok) {
			t.Errorf("forgot another digest")
		}
	default:
		t.Fatal("Revoke returned before this replica forgot the session")
	}
}

// TestOutage: with Redis gone, lookups fail (fast after the first), the
// store says it is down, and Watch resyncs; when Redis is back everything
// recovers by itself.
func TestOutage(t *testing.T) {
	r := startRedis(t)
	reg := prometheus.NewRegistry()
	s := open(t, r, reg)
	ctx := context.Background()
	w := watchSubscribed(t, s)
	resyncs := w.resyncs()

	r.Kill()
	start := time.Now()
	for time.Since(start) < 2*time.Second {
		if _, _, err := s.Lookup(ctx, policy.Digest{1}); err != nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, _, err := s.Lookup(ctx, policy.Digest{1}); err == nil {
		t.Fatal("lookups succeed with Redis killed")
	}
	t0 := time.Now()
	for range 100 {
		_, _, _ = s.Lookup(ctx, policy.Digest{1})
	}
	if took := time.Since(t0); took > 2*redissessions.DefaultLookupTimeout {
		t.Errorf("100 lookups with Redis down took %v: they should fail at once between retries", took)
	}
	// The subscription learns of the outage on its own connection, a moment
	// after the lookups may have.
	deadline := time.Now().Add(2 * time.Second)
	for (s.Status().Subscribed || w.resyncs() == resyncs) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := s.Status()
	if st.Up || st.Subscribed || !strings.Contains(st.LastError, r.Addr) {
		t.Errorf("status %+v with Redis down, want down, unsubscribed, an error naming Redis' address", st)
	}
	if up := metricValue(t, reg, "keygate_session_store_up"); up != 0 {
		t.Errorf("keygate_session_store_up %v, want 0", up)
	}
	if w.resyncs() == resyncs {
		t.Error("Watch did not resync when its subscription dropped")
	}

	r.Restart()
	deadline = time.Now().Add(5 * time.Second)
	for !(s.Status().Up && s.Status().Subscribed) && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if st := s.Status(); !st.Up || !st.Subscribed {
		t.Fatalf("status %+v 5 s after Redis is back, want up and subscribed", st)
	}
	if _, _, err := s.Create(ctx, newSession("erin", "", time.Hour)); err != nil {
		t.Errorf("create after recovery: %v", err)
	}
}

// watchSubscribed runs s.Watch until the test ends and returns once it is
// subscribed.
func watchSubscribed(t testing.TB, s *redissessions.Store) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := watch(ctx, s)
	t.Cleanup(func() { cancel(); w.wg.Wait() })
	w.waitSubscribed(t, s)
	return w
}

type watcher struct {
	wg     sync.WaitGroup
	forgot chan policy.Digest
	mu     sync.Mutex
	n      int
}

func watch(ctx context.Context, s *redissessions.Store) *watcher {
	w := &watcher{forgot: make(chan policy.Digest, 100)}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		s.Watch(ctx, func(d policy.Digest) { w.forgot <- d }, func() { w.mu.Lock(); w.n++; w.mu.Unlock() })
	}()
	return w
}

func (w *watcher) resyncs() int { w.mu.Lock(); defer w.mu.Unlock(); return w.n }

func (w *watcher) waitSubscribed(t testing.TB, s *redissessions.Store) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !s.Status().Subscribed; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("not subscribed after 5 s: %+v", s.Status())
		}
	}
}

// metricValue is the value of the series of name whose label values are
// labels, in order.
func metricValue(t testing.TB, g prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var vals []string
			for _, l := range m.GetLabel() {
				vals = append(vals, l.GetValue())
			}
			if !slices.Equal(vals, labels) && len(labels) > 0 {
				continue
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	t.Fatalf("no series %s%v", name, labels)
	return 0
}

// TestMetricNames: the store's series follow Prometheus' conventions.
func TestMetricNames(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := redissessions.Open("redis://127.0.0.1:1/0", redissessions.Options{Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// TestCanceledIsNotDown: a management call its client abandoned fails,
// but says nothing about Redis: the store stays up.
func TestCanceledIsNotDown(t *testing.T) {
	r := startRedis(t)
	s := open(t, r, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.List(ctx, "acme", "alice"); err == nil {
		t.Fatal("a canceled call succeeded")
	}
	if st := s.Status(); !st.Up {
		t.Errorf("a canceled call marked the store down: %+v", st)
	}
}
