// Package redissessions keeps server-side sessions in Redis, shared by
// every replica: an opaque token in keygate's format (kg_<id>_<secret>…)
// is stored by its SHA-256 digest, never the token, with the principal it
// stands for; Redis expires it at its expires_at (EXPIREAT). Revoking one
// deletes it and publishes its digest, so that every replica's cache
// forgets it (Watch).
//
// Keys, all with the session's expiry:
//
//	keygate:session:<digest hex>            the session, JSON (Session)
//	keygate:session-id:<id>                 its digest, to revoke by id
//	keygate:user-sessions:<tenant>:<user>   a set of the user's session digests, to list
//	                                        without scanning; it expires with the last one
//
// Tenant ids hold no ':', so a user set's name cannot be another's.
package redissessions

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
)

const (
	sessionPrefix = "keygate:session:"
	idPrefix      = "keygate:session-id:"
	userPrefix    = "keygate:user-sessions:"
	// Channel carries invalidations: digests in hex, separated by spaces.
	Channel = "keygate:session-invalidations"
)

// Defaults for Options.
const (
	// DefaultLookupTimeout bounds the one round trip a Check makes on a
	// cache miss; past it the session is denied 503, not waited for.
	DefaultLookupTimeout = 100 * time.Millisecond
	// DefaultCacheFor is how long a replica may cache a store resolution
	// without hearing of an invalidation.
	DefaultCacheFor = 5 * time.Second
	// callTimeout bounds the management calls (create, list, revoke).
	callTimeout = time.Second
	// retryEvery is how often a lookup tries Redis again once one failed;
	// in between lookups fail at once instead of each waiting its timeout.
	retryEvery = 250 * time.Millisecond
)

// ErrUnavailable is returned while Redis is known to be unreachable and
// not yet due to be tried again.
var ErrUnavailable = errors.New("the session store is unreachable")

// Session is one server-side session as the store keeps and lists it.
type Session struct {
	ID        string    `json:"id"`
	User      string    `json:"user"`
	Tenant    string    `json:"tenant"`
	Org       string    `json:"org,omitempty"`
	Groups    []string  `json:"groups"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`

	digest string // hex; set by Get and List, for Revoke
}

// Options configure a Store.
type Options struct {
	LookupTimeout time.Duration // default DefaultLookupTimeout
	CacheFor      time.Duration // default DefaultCacheFor
	Log           *zap.Logger
	Registerer    prometheus.Registerer // nil: metrics are not registered
}

// Store is the Redis session store. It is safe for concurrent use.
type Store struct {
	client   *redis.Client
	addr     string
	timeout  time.Duration
	cacheFor time.Duration
	log      *zap.Logger
	health   health
	m        storeMetrics

	// forget is Watch's, so that Revoke forgets on this replica before it
	// returns instead of when its own message comes back.
	forget atomic.Pointer[func(policy.Digest)]
}

// Open returns a store for the Redis at rawURL
// (redis://[:PASSWORD@]HOST:PORT/DB, or rediss:// for TLS). It does not
// wait for Redis: a store that cannot be reached yet is reported down
// (Status, metrics) and used as soon as it answers.
func Open(rawURL string, o Options) (*Store, error) {
	opt, err := redis.ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("session store: %w", redactURLError(err, rawURL))
	}
	if o.LookupTimeout <= 0 {
		o.LookupTimeout = DefaultLookupTimeout
	}
	if o.CacheFor <= 0 {
		o.CacheFor = DefaultCacheFor
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	// Every call carries its own deadline (a lookup's is short); these
	// bound what a call without one could wait.
	opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout, opt.PoolTimeout = callTimeout, callTimeout, callTimeout, callTimeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = 1    // one retry, for a pooled connection Redis closed; within the call's deadline
	opt.MinIdleConns = 2  // a connection ready for the first miss
	opt.DialerRetries = 1 // a refused connection fails the call at once
	s := &Store{client: redis.NewClient(opt), addr: opt.Addr, timeout: o.LookupTimeout, cacheFor: o.CacheFor, log: o.Log}
	s.health.init()
	if err := s.m.register(o.Registerer, s); err != nil {
		_ = s.client.Close()
		return nil, err
	}
	return s, nil
}

// Close closes the connections.
func (s *Store) Close() error { return s.client.Close() }

// Addr is Redis's host:port, for logs.
func (s *Store) Addr() string { return s.addr }

// Ping checks that Redis answers within timeout.
func (s *Store) Ping(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return s.observe(s.client.Ping(ctx).Err())
}

func sessionKey(digest string) string    { return sessionPrefix + digest }
func idKey(id string) string             { return idPrefix + id }
func userKey(tenant, user string) string { return userPrefix + tenant + ":" + user }
func digestHex(d policy.Digest) string   { return hex.EncodeToString(d[:]) }
func (s *Session) userKey() string       { return userKey(s.Tenant, s.User) }
func (s *Session) expireAt() time.Time   { return s.ExpiresAt.Truncate(time.Second) }
func (s *Session) claims() *policy.SignedClaims {
	return &policy.SignedClaims{ID: s.ID, User: s.User, Tenant: s.Tenant, Org: s.Org, Groups: s.Groups,
		IssuedAt: s.CreatedAt, ExpiresAt: s.ExpiresAt}
}

// createScript writes a session in one round trip, atomically: the id
// first, so that an id already taken (a collision of random ids) writes
// nothing; then the session and the user's index, which expires with the
// latest of its sessions (EXPIREAT NX sets the first expiry, GT extends
// it). KEYS: id, session, user set. ARGV: digest, session JSON, expiry in
// Unix seconds.
var createScript = redis.NewScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EXAT', ARGV[3]) then return 0 end
redis.call('SET', KEYS[2], ARGV[2], 'EXAT', ARGV[3])
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('EXPIREAT', KEYS[3], ARGV[3], 'NX')
redis.call('EXPIREAT', KEYS[3], ARGV[3], 'GT')
return 1
`)

// Create makes a session for sess's user, tenant, org and groups, from
// sess.CreatedAt until sess.ExpiresAt, and returns its token (shown once:
// the store keeps its digest) and the session with its new id.
func (s *Store) Create(ctx context.Context, sess Session) (token string, _ Session, err error) {
	if !sess.ExpiresAt.After(sess.CreatedAt) {
		return "", Session{}, fmt.Errorf("session store: a session must expire after it is created")
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	for attempt := 0; attempt < 3; attempt++ {
		if sess.ID, err = apikey.NewID(); err != nil {
			return "", Session{}, err
		}
		if token, err = apikey.New(sess.ID); err != nil {
			return "", Session{}, err
		}
		sess.digest = digestHex(apikey.Digest(token))
		data, err := json.Marshal(&sess)
		if err != nil {
			return "", Session{}, fmt.Errorf("session store: %w", err)
		}
		ok, err := createScript.Run(ctx, s.client, []string{idKey(sess.ID), sessionKey(sess.digest), sess.userKey()},
			sess.digest, data, sess.expireAt().Unix()).Int()
		if err := s.observe(err); err != nil {
			s.m.count(opCreate, resultError)
			return "", Session{}, s.wrap("creating a session", err)
		}
		if ok == 1 {
			s.m.count(opCreate, resultOK)
			return token, sess, nil
		}
	}
	s.m.count(opCreate, resultError)
	return "", Session{}, fmt.Errorf("session store: three random session ids in a row were taken")
}

// Lookup returns the session whose token has digest d as claims, or nil
// when the store does not know it (never made, expired or revoked), with
// how long a replica may cache the answer: DefaultCacheFor while Watch
// receives invalidations, 0 while it does not. An error means Redis did
// not answer within the lookup timeout (or is known to be down): the
// caller cannot tell.
func (s *Store) Lookup(ctx context.Context, d policy.Digest) (*policy.SignedClaims, time.Duration, error) {
	if s.health.skip() {
		s.m.count(opLookup, resultError)
		return nil, 0, ErrUnavailable
	}
	cacheFor := time.Duration(0)
	if s.health.subscribed.Load() { // read first: an invalidation after it is heard
		cacheFor = s.cacheFor
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	start := time.Now()
	data, err := s.client.Get(ctx, sessionKey(digestHex(d))).Bytes()
	s.m.lookupSeconds.Observe(time.Since(start).Seconds())
	switch {
	case errors.Is(err, redis.Nil):
		s.observe(nil)
		s.m.count(opLookup, resultNotFound)
		return nil, cacheFor, nil
	case s.observe(err) != nil:
		s.m.count(opLookup, resultError)
		return nil, 0, s.wrap("looking up a session", err)
	}
	var sess Session
	if err := json.Unmarshal(data, &sess); err != nil {
		s.log.Warn("a session in Redis does not decode; refused as unknown", zap.Error(err))
		s.m.count(opLookup, resultNotFound)
		return nil, cacheFor, nil
	}
	s.m.count(opLookup, resultOK)
	return sess.claims(), cacheFor, nil
}

// Get returns the live session with this id, or nil.
func (s *Store) Get(ctx context.Context, id string) (*Session, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	digest, err := s.client.Get(ctx, idKey(id)).Result()
	if errors.Is(err, redis.Nil) {
		s.m.count(opGet, resultNotFound)
		return nil, s.observe(nil)
	}
	if err := s.observe(err); err != nil {
		s.m.count(opGet, resultError)
		return nil, s.wrap("reading a session", err)
	}
	sessions, err := s.load(ctx, []string{digest})
	if err != nil {
		s.m.count(opGet, resultError)
		return nil, err
	}
	if len(sessions) == 0 || sessions[0].ID != id {
		s.m.count(opGet, resultNotFound)
		return nil, nil
	}
	s.m.count(opGet, resultOK)
	return &sessions[0], nil
}

// List returns the user's live sessions in the tenant, oldest first. It
// reads the user's index and the sessions it names (two round trips), and
// drops from the index those that have expired.
func (s *Store) List(ctx context.Context, tenant, user string) ([]Session, error) {
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	key := userKey(tenant, user)
	digests, err := s.client.SMembers(ctx, key).Result()
	if err := s.observe(err); err != nil {
		s.m.count(opList, resultError)
		return nil, s.wrap("listing sessions", err)
	}
	sessions, err := s.load(ctx, digests)
	if err != nil {
		s.m.count(opList, resultError)
		return nil, err
	}
	if len(sessions) < len(digests) {
		live := make(map[string]bool, len(sessions))
		for i := range sessions {
			live[sessions[i].digest] = true
		}
		var gone []any
		for _, d := range digests {
			if !live[d] {
				gone = append(gone, d)
			}
		}
		_ = s.client.SRem(ctx, key, gone...).Err() // tidying only: the next list tries again
	}
	s.m.count(opList, resultOK)
	return sessions, nil
}

// load reads the sessions of these digests (one MGET); those gone are
// left out.
func (s *Store) load(ctx context.Context, digests []string) ([]Session, error) {
	if len(digests) == 0 {
		return nil, nil
	}
	keys := make([]string, len(digests))
	for i, d := range digests {
		keys[i] = sessionKey(d)
	}
	vals, err := s.client.MGet(ctx, keys...).Result()
	if err := s.observe(err); err != nil {
		return nil, s.wrap("reading sessions", err)
	}
	out := make([]Session, 0, len(vals))
	for i, v := range vals {
		str, ok := v.(string)
		if !ok {
			continue // expired since the index was read
		}
		var sess Session
		if err := json.Unmarshal([]byte(str), &sess); err != nil {
			s.log.Warn("a session in Redis does not decode; left out", zap.Error(err))
			continue
		}
		sess.digest = digests[i]
		out = append(out, sess)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].CreatedAt.Equal(out[j].CreatedAt) {
			return out[i].CreatedAt.Before(out[j].CreatedAt)
		}
		return out[i].ID < out[j].ID
	})
	return out, nil
}

// Revoke deletes sessions read by Get or List, and publishes their
// digests so that every replica forgets them, in one transaction (one
// round trip). It returns how many were still there.
func (s *Store) Revoke(ctx context.Context, sessions ...Session) (int, error) {
	if len(sessions) == 0 {
		return 0, nil
	}
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	dels := make([]*redis.IntCmd, len(sessions))
	digests := make([]string, len(sessions))
	_, err := s.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for i := range sessions {
			sess := &sessions[i]
			dels[i] = p.Del(ctx, sessionKey(sess.digest))
			p.Del(ctx, idKey(sess.ID))
			p.SRem(ctx, sess.userKey(), sess.digest)
			digests[i] = sess.digest
		}
		p.Publish(ctx, Channel, strings.Join(digests, " "))
		return nil
	})
	if err := s.observe(err); err != nil {
		s.m.count(opRevoke, resultError)
		return 0, s.wrap("revoking sessions", err)
	}
	if forget := s.forget.Load(); forget != nil {
		for _, h := range digests {
			if d, ok := parseDigestHex(h); ok {
				(*forget)(d)
			}
		}
	}
	n := 0
	for _, d := range dels {
		n += int(d.Val())
	}
	s.m.count(opRevoke, resultOK)
	return n, nil
}

// wrap names the store in an error, once.
func (s *Store) wrap(what string, err error) error {
	if errors.Is(err, ErrUnavailable) {
		return err
	}
	return fmt.Errorf("session store at %s: %s: %w", s.addr, what, err)
}

// redactURLError keeps a password in the URL out of the error.
func redactURLError(err error, raw string) error {
	u, perr := url.Parse(raw)
	if perr != nil || u.User == nil {
		return errors.New(strings.ReplaceAll(err.Error(), raw, "(the URL)"))
	}
	return errors.New(strings.ReplaceAll(err.Error(), raw, u.Redacted()))
}
