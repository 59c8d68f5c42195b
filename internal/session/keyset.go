package session

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"
)

// Defaults of the JWKS refresh.
const (
	// DefaultRefresh is how often a jwks_url is fetched again.
	DefaultRefresh = 10 * time.Minute
	// DefaultMinRefresh bounds the fetches a token with an unknown kid
	// (or a failing URL) can cause: at most one per issuer this often.
	DefaultMinRefresh = 30 * time.Second
	// maxJWKSSize bounds what a JWKS endpoint can make keygate read.
	maxJWKSSize  = 1 << 20
	fetchTimeout = 10 * time.Second
)

// KeySet is the public keys of one issuer: inline, from keygate's own key
// files, or fetched from a jwks_url and refreshed. Its generation moves on
// whenever the keys change, so that a result cached with an older
// generation is not used again: a key removed from a JWKS stops verifying
// at the next refresh, however warm the cache.
type KeySet struct {
	name   string // the issuer's, for logs and metrics
	source string // "url", "inline" or "flag"
	url    string

	keys atomic.Pointer[keyMap]
	gen  atomic.Uint64

	refresh chan struct{} // a token named a kid the set does not hold
	stop    context.CancelFunc
	done    chan struct{}

	fetchOK, fetchFailed, fetchChanged atomic.Uint64
	lastOK                             atomic.Int64 // UnixNano of the last good fetch
	lastErr                            atomic.Pointer[string]
}

// keyMap is one generation of keys. Read only once published.
type keyMap struct {
	byKID map[string][]jose.JSONWebKey
	all   []jose.JSONWebKey
	sum   [32]byte // identifies the content: a fetch that returns the same keys changes nothing
}

// Generation implements cache.Versioned.
func (k *KeySet) Generation() uint64 { return k.gen.Load() }

// Len is the number of keys in force.
func (k *KeySet) Len() int {
	if m := k.keys.Load(); m != nil {
		return len(m.all)
	}
	return 0
}

// key returns the key a token names: by kid, or the only key of the set
// when the token names none. The key's own alg, when it has one, must be
// the token's.
func (k *KeySet) key(kid, alg string) (jose.JSONWebKey, bool) {
	m := k.keys.Load()
	if m == nil {
		return jose.JSONWebKey{}, false
	}
	cands := m.byKID[kid]
	if kid == "" && len(m.all) == 1 {
		cands = m.all
	}
	for _, c := range cands {
		if c.Algorithm == "" || c.Algorithm == alg {
			return c, true
		}
	}
	return jose.JSONWebKey{}, false
}

// kids lists the key ids in force, for explanations.
func (k *KeySet) kids() []string {
	m := k.keys.Load()
	if m == nil {
		return nil
	}
	out := make([]string, 0, len(m.all))
	for _, c := range m.all {
		out = append(out, c.KeyID)
	}
	return out
}

// set publishes keys; the generation moves on only if they differ from
// the keys in force. It reports whether they did.
func (k *KeySet) set(keys []jose.JSONWebKey) bool {
	m := &keyMap{byKID: map[string][]jose.JSONWebKey{}, all: keys}
	h := sha256.New()
	for _, c := range keys {
		m.byKID[c.KeyID] = append(m.byKID[c.KeyID], c)
		b, _ := c.MarshalJSON()
		h.Write(b)
	}
	h.Sum(m.sum[:0])
	if old := k.keys.Load(); old != nil && old.sum == m.sum {
		return false
	}
	k.keys.Store(m)
	k.gen.Add(1)
	return true
}

// requestRefresh asks the fetch loop for a new fetch; it never blocks.
func (k *KeySet) requestRefresh() {
	if k.refresh == nil {
		return
	}
	select {
	case k.refresh <- struct{}{}:
	default:
	}
}

// usableKeys keeps the public signing keys of a set: a private key is
// used for its public half, and symmetric keys and encryption keys are
// dropped (keygate never accepts HMAC-signed tokens).
func usableKeys(set jose.JSONWebKeySet) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if _, sym := k.Key.([]byte); sym || !k.Valid() {
			continue
		}
		out = append(out, k.Public())
	}
	return out
}

// parseJWKS reads a JSON Web Key Set and keeps its usable keys.
func parseJWKS(data []byte) ([]jose.JSONWebKey, error) {
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(data, &set); err != nil {
		return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	keys := usableKeys(set)
	if len(keys) == 0 {
		return nil, errors.New("no public signing keys (RSA, EC or OKP with use sig) in the key set")
	}
	return keys, nil
}

// fetcher runs the fetches of URL key sets.
type fetcher struct {
	client     *http.Client
	log        *zap.Logger
	refresh    time.Duration
	minRefresh time.Duration
}

// startURL makes the key set of a jwks_url and starts its fetch loop: at
// once, then every refresh, and when a token names an unknown kid, never
// more often than minRefresh. A failed fetch keeps the keys in force.
func (f *fetcher) startURL(ctx context.Context, name, url string) *KeySet {
	ctx, cancel := context.WithCancel(ctx)
	k := &KeySet{name: name, source: "url", url: url, refresh: make(chan struct{}, 1), stop: cancel, done: make(chan struct{})}
	go f.loop(ctx, k)
	return k
}

func (f *fetcher) loop(ctx context.Context, k *KeySet) {
	defer close(k.done)
	var last time.Time
	for {
		last = time.Now()
		wait := f.refresh
		if err := f.fetch(ctx, k); err != nil {
			if ctx.Err() != nil {
				return
			}
			wait = f.minRefresh // no keys yet, or stale ones: try again soon
		}
		timer := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-k.refresh:
			timer.Stop()
			if d := f.minRefresh - time.Since(last); d > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(d):
				}
			}
		}
	}
}

// fetch gets the key set once.
func (f *fetcher) fetch(ctx context.Context, k *KeySet) error {
	err := func() error {
		ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "application/json")
		resp, err := f.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSSize+1))
		if err != nil {
			return err
		}
		if len(body) > maxJWKSSize {
			return fmt.Errorf("key set is larger than %d bytes", maxJWKSSize)
		}
		keys, err := parseJWKS(body)
		if err != nil {
			return err
		}
		if k.set(keys) {
			k.fetchChanged.Add(1)
			f.log.Info("session issuer keys loaded", zap.String("issuer", k.name), zap.String("jwks_url", k.url),
				zap.Int("keys", len(keys)), zap.Strings("kids", k.kids()), zap.Uint64("key_generation", k.Generation()))
		}
		return nil
	}()
	if err != nil {
		if ctx.Err() != nil {
			return err
		}
		k.fetchFailed.Add(1)
		msg := fmt.Sprintf("fetch %s: %v", k.url, err)
		k.lastErr.Store(&msg)
		f.log.Warn("session issuer keys not fetched; the last good keys stay in force", zap.String("issuer", k.name),
			zap.String("jwks_url", k.url), zap.Int("keys_in_force", k.Len()), zap.Error(err))
		return err
	}
	k.fetchOK.Add(1)
	k.lastOK.Store(time.Now().UnixNano())
	empty := ""
	k.lastErr.Store(&empty)
	return nil
}

// close stops the fetch loop, if any, and waits for it.
func (k *KeySet) close() {
	if k.stop != nil {
		k.stop()
		<-k.done
	}
}

// staticKeySet holds keys that never change.
func staticKeySet(name, source string, keys []jose.JSONWebKey) *KeySet {
	k := &KeySet{name: name, source: source}
	k.set(keys)
	return k
}

// keySets are the verifier's key sets by the issuer's key source.
type keySets struct {
	mu   sync.Mutex // held by Sync only, never by Verify
	sets atomic.Pointer[map[string]*KeySet]
}

func (s *keySets) get(source string) *KeySet {
	if m := s.sets.Load(); m != nil {
		return (*m)[source]
	}
	return nil
}

func sortedNames(m map[string]*KeySet) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
