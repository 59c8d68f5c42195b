// Package session verifies and signs signed session tokens (JWTs, RFC 7519,
// compact form): a session header value with exactly two dots is verified
// against the policy's session_issuers (and keygate's own key) instead of
// being looked up by digest. It uses go-jose v4 for JWS parsing, JWK sets
// and signatures, and holds the issuers' key sets, fetching and refreshing
// those given by jwks_url. It does not import authz or server: authz calls
// it on a cache miss.
package session

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/go-jose/go-jose/v4"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
)

// MaxTokenSize bounds a signed session token: a larger one is refused
// before anything in it is decoded.
const MaxTokenSize = 8 << 10

// Leeway is the clock skew allowed on exp, nbf and iat.
const Leeway = 60 * time.Second

// keygate's own tokens: the issuer and audience POST /v1/sessions and
// `keygate sessions issue` write by default, and that the key given by
// --session-signing-key or --session-verify-key verifies.
const (
	DefaultIssuer   = "keygate"
	DefaultAudience = "keygate"
)

// Refusal says why a token did not verify: a closed set that authz maps
// onto its reasons. A revoked or signed-out session verifies, and its
// principal is Disabled.
type Refusal uint8

const (
	Verified  Refusal = iota
	Malformed         // size, segments, encoding, JSON, a required claim missing
	Unknown           // issuer, algorithm, key, signature, audience, max_ttl, or a user, tenant or org the policy cannot place
	Expired           // exp passed, or nbf or iat still to come
)

func (r Refusal) String() string {
	switch r {
	case Verified:
		return "verified"
	case Malformed:
		return "malformed"
	case Unknown:
		return "unknown"
	case Expired:
		return "expired"
	}
	return "refused"
}

// IsJWT tells whether a session value is read as a signed token: exactly
// two dots.
func IsJWT(v string) bool { return strings.Count(v, ".") == 2 }

// Digest is the SHA-256 of a token: the cache key, computed on every
// request. It reads the string's bytes in place (sha256.Sum256 neither
// keeps nor changes its input), so a warm check copies and allocates
// nothing however long the token.
func Digest(token string) policy.Digest {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// signatureAlgorithms are every algorithm an issuer may list; go-jose
// refuses any other (none, HS*) while parsing.
var signatureAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512, jose.EdDSA,
}

// Result is the outcome of verifying one token.
type Result struct {
	Principal *policy.Principal // nil unless Refusal is Verified
	Refusal   Refusal
	Why       string         // one line for logs and keygate check; never the token
	Issuer    *policy.Issuer // the issuer the token named, when declared
	KID, Alg  string
	Claims    map[string]any // the verified claims, with Explain only

	// Keys is what the result depends on besides the snapshot: the issuer's
	// key set (or the verifier, while the set does not exist yet), at
	// generation KeyGen. A cached result is stale once it moves on.
	Keys   cache.Versioned
	KeyGen uint64
}

// Verifier verifies signed session tokens against a snapshot's issuers. It
// is safe for concurrent use; Verify takes no lock that Sync holds.
type Verifier struct {
	log     *zap.Logger
	fetch   *fetcher
	ctx     context.Context
	cancel  context.CancelFunc
	sets    keySets
	syncGen atomic.Uint64 // moves on at every Sync: results without a key set wait on it
	own     *policy.Issuer
	ownKeys *KeySet
}

// Options configure a Verifier.
type Options struct {
	Log        *zap.Logger
	Client     *http.Client  // for jwks_url; default: a client with a 10 s timeout
	Refresh    time.Duration // default DefaultRefresh
	MinRefresh time.Duration // default DefaultMinRefresh
	// OwnKeys verify keygate's own tokens (iss and aud "keygate", EdDSA):
	// the signing key's public half and the --session-verify-key keys.
	OwnKeys []jose.JSONWebKey
}

// NewVerifier returns a verifier. Call Sync with every snapshot published
// (and the one in force), and Close when done.
func NewVerifier(opt Options) *Verifier {
	if opt.Log == nil {
		opt.Log = zap.NewNop()
	}
	if opt.Client == nil {
		opt.Client = &http.Client{Timeout: fetchTimeout}
	}
	if opt.Refresh <= 0 {
		opt.Refresh = DefaultRefresh
	}
	if opt.MinRefresh <= 0 {
		opt.MinRefresh = DefaultMinRefresh
	}
	v := &Verifier{log: opt.Log, fetch: &fetcher{client: opt.Client, log: opt.Log, refresh: opt.Refresh, minRefresh: opt.MinRefresh}}
	v.ctx, v.cancel = context.WithCancel(context.Background())
	if len(opt.OwnKeys) > 0 {
		v.own = OwnIssuer()
		v.ownKeys = staticKeySet(v.own.Name, "flag", opt.OwnKeys)
	}
	empty := map[string]*KeySet{}
	v.sets.sets.Store(&empty)
	return v
}

// OwnIssuer is the issuer entry of keygate's own tokens; its name is no
// policy name, so its metrics and stats never collide with an entry's.
func OwnIssuer() *policy.Issuer {
	return &policy.Issuer{Name: "(keygate)", Issuer: DefaultIssuer, Audiences: []string{DefaultAudience},
		Algorithms: []string{string(jose.EdDSA)}, Claims: policy.DefaultClaimNames}
}

// Generation implements cache.Versioned for results that found no key set
// (the snapshot's issuers not synced yet).
func (v *Verifier) Generation() uint64 { return v.syncGen.Load() }

// Sync makes the key sets match snap's issuers: new ones are loaded (inline)
// or start fetching (jwks_url), and those no issuer reads any more stop.
// A set whose issuer entry reads the same keys is kept with its keys.
func (v *Verifier) Sync(snap *policy.Snapshot) {
	if snap == nil {
		return
	}
	v.sets.mu.Lock()
	defer v.sets.mu.Unlock()
	old := *v.sets.sets.Load()
	next := make(map[string]*KeySet, len(snap.SessionIssuers()))
	for _, is := range snap.SessionIssuers() {
		src := is.KeySource()
		if k := old[src]; k != nil {
			next[src] = k
			continue
		}
		if is.JWKSURL != "" {
			next[src] = v.fetch.startURL(v.ctx, is.Name, is.JWKSURL)
			continue
		}
		keys, err := parseJWKS(is.JWKS)
		if err != nil { // the policy's own check passed: this is go-jose refusing a key
			v.log.Error("session issuer's inline keys refused; its tokens are refused", zap.String("issuer", is.Name), zap.Error(err))
			keys = nil
		}
		next[src] = staticKeySet(is.Name, "inline", keys)
	}
	v.sets.sets.Store(&next)
	v.syncGen.Add(1)
	for src, k := range old {
		if next[src] == nil {
			go k.close()
		}
	}
}

// WaitForKeys waits until every jwks_url key set of the snapshot has been
// fetched once (or failed), for one-shot tools such as keygate check.
func (v *Verifier) WaitForKeys(ctx context.Context, snap *policy.Snapshot) {
	for _, is := range snap.SessionIssuers() {
		k := v.sets.get(is.KeySource())
		for k != nil && k.source == "url" && k.fetchOK.Load()+k.fetchFailed.Load() == 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// Close stops every fetch loop.
func (v *Verifier) Close() {
	v.cancel()
	for _, k := range *v.sets.sets.Load() {
		k.close()
	}
}

// Verify checks a token against snap at now (UnixNano), in the order of
// the design: size and segments before any decoding; alg in the issuer's
// list; key by kid; signature; iss; aud; exp, nbf and iat with Leeway;
// max_ttl; then the claims mapped and placed in the policy's tenants,
// organizations and groups.
func (v *Verifier) Verify(snap *policy.Snapshot, token string, now int64) Result {
	return v.verify(snap, token, now, false)
}

// Explain is Verify that also returns the verified claims, for keygate
// check.
func (v *Verifier) Explain(snap *policy.Snapshot, token string, now time.Time) Result {
	return v.verify(snap, token, now.UnixNano(), true)
}

func (v *Verifier) verify(snap *policy.Snapshot, token string, now int64, explain bool) (r Result) {
	r.Keys = v
	r.KeyGen = v.syncGen.Load()
	refuse := func(why Refusal, format string, args ...any) Result {
		r.Refusal, r.Why, r.Principal = why, oneLine(fmt.Sprintf(format, args...)), nil
		return r
	}
	if len(token) > MaxTokenSize {
		return refuse(Malformed, "the token is %d bytes; signed session tokens are %d at most", len(token), MaxTokenSize)
	}
	if msg := segmentProblem(token); msg != "" {
		return refuse(Malformed, "%s", msg)
	}
	jws, err := jose.ParseSignedCompact(token, signatureAlgorithms)
	if err != nil {
		var alg *jose.ErrUnexpectedSignatureAlgorithm
		if errors.As(err, &alg) {
			return refuse(Unknown, "algorithm %q is never accepted (only RS*, PS*, ES* and EdDSA)", alg.Got)
		}
		return refuse(Malformed, "the token does not parse as a signed JWT (JWS compact form)")
	}
	if len(jws.Signatures) != 1 {
		return refuse(Malformed, "the token has %d signatures; a JWT has one", len(jws.Signatures))
	}
	h := jws.Signatures[0].Header
	r.KID, r.Alg = h.KeyID, h.Algorithm
	if len(h.ExtraHeaders) > 0 {
		if _, ok := h.ExtraHeaders["crit"]; ok {
			return refuse(Malformed, "the token has critical header parameters keygate does not understand")
		}
	}
	// The issuer is picked by the unverified iss; the same claim is checked
	// again once the signature has verified.
	var unverified struct {
		Iss any `json:"iss"`
	}
	if err := json.Unmarshal(jws.UnsafePayloadWithoutVerification(), &unverified); err != nil {
		return refuse(Malformed, "the token's claims are not a JSON object")
	}
	iss, _ := unverified.Iss.(string)
	is := snap.IssuerOf(iss)
	keys := (*KeySet)(nil)
	if is != nil {
		keys = v.sets.get(is.KeySource())
	} else if v.own != nil && iss == v.own.Issuer {
		is, keys = v.own, v.ownKeys
	}
	if is == nil {
		switch iss {
		case "":
			return refuse(Unknown, "the token has no iss claim")
		case DefaultIssuer:
			return refuse(Unknown, "issuer %q (keygate's own sessions) has no keys here: give --session-verify-key (or --session-signing-key), or declare it under session_issuers", iss)
		}
		return refuse(Unknown, "issuer %s is not declared under session_issuers", quoteClaim(iss))
	}
	r.Issuer = is
	if !slices.Contains(is.Algorithms, r.Alg) {
		return refuse(Unknown, "algorithm %s is not among issuer %s's algorithms (%s)", r.Alg, is.Name, strings.Join(is.Algorithms, ", "))
	}
	if keys == nil {
		return refuse(Unknown, "issuer %s's keys are not loaded yet", is.Name)
	}
	r.Keys, r.KeyGen = keys, keys.Generation()
	key, ok := keys.key(r.KID, r.Alg)
	if !ok {
		keys.requestRefresh()
		if keys.Len() == 0 {
			return refuse(Unknown, "issuer %s has no keys yet (%s)", is.Name, keys.status())
		}
		return refuse(Unknown, "no key with kid %s for %s in issuer %s's key set (kids: %s)", quoteClaim(r.KID), r.Alg, is.Name, strings.Join(keys.kids(), ", "))
	}
	payload, err := jws.Verify(key.Key)
	if err != nil {
		return refuse(Unknown, "the signature does not verify with key %s of issuer %s", quoteClaim(key.KeyID), is.Name)
	}
	claims := map[string]any{}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return refuse(Malformed, "the token's claims are not a JSON object")
	}
	if explain {
		r.Claims = claims
	}
	if s, _ := claims["iss"].(string); s != is.Issuer {
		return refuse(Unknown, "iss %s is not issuer %s's %s", quoteClaim(s), is.Name, quoteClaim(is.Issuer))
	}
	if !audienceOK(claims["aud"], is.Audiences) {
		return refuse(Unknown, "aud does not hold one of issuer %s's audiences (%s)", is.Name, strings.Join(is.Audiences, ", "))
	}
	leeway := int64(Leeway)
	exp, hasExp, okExp := numericDate(claims, "exp")
	nbf, hasNbf, okNbf := numericDate(claims, "nbf")
	iat, hasIat, okIat := numericDate(claims, "iat")
	switch {
	case !okExp || !okNbf || !okIat:
		return refuse(Malformed, "exp, nbf and iat must be numbers of seconds")
	case !hasExp:
		return refuse(Malformed, "the token has no exp: a session token must expire")
	case now > exp+leeway:
		return refuse(Expired, "the token expired at %s", time.Unix(0, exp).UTC().Format(time.RFC3339))
	case hasNbf && nbf > now+leeway:
		return refuse(Expired, "the token is not valid before %s (nbf)", time.Unix(0, nbf).UTC().Format(time.RFC3339))
	case hasIat && iat > now+leeway:
		return refuse(Expired, "the token was issued in the future (iat %s)", time.Unix(0, iat).UTC().Format(time.RFC3339))
	}
	if is.MaxTTL > 0 {
		switch {
		case !hasIat:
			return refuse(Unknown, "the token has no iat, and issuer %s has a max_ttl", is.Name)
		case exp-iat > int64(is.MaxTTL):
			return refuse(Unknown, "the token lives %s (exp - iat); issuer %s's max_ttl is %s", time.Duration(exp-iat), is.Name, is.MaxTTL)
		}
	}
	sc, why := mapClaims(is, claims)
	if why != "" {
		return refuse(Malformed, "%s", why)
	}
	if hasIat {
		sc.IssuedAt = time.Unix(0, iat)
	}
	sc.ExpiresAt = time.Unix(0, exp+leeway)
	p, err := snap.SignedSession(sc)
	if err != nil {
		return refuse(Unknown, "%v", err)
	}
	r.Principal, r.Refusal = p, Verified
	switch {
	case snap.SessionRevoked(sc.Tenant, sc.ID):
		r.Why = fmt.Sprintf("session %s is listed under revoked_sessions", quoteClaim(sc.ID))
	case p.Disabled:
		r.Why = fmt.Sprintf("user %s of tenant %s was signed out everywhere at %s (sessions_not_before)", quoteClaim(sc.User), quoteClaim(sc.Tenant),
			snap.SignedOutBefore(sc.Tenant, sc.User).Format(time.RFC3339))
	}
	return r
}

// segmentProblem checks the token's shape without decoding it: three
// non-empty segments of base64url characters.
func segmentProblem(token string) string {
	n := 0
	segLen := 0
	for i := 0; i < len(token); i++ {
		c := token[i]
		switch {
		case c == '.':
			if segLen == 0 {
				return "the token has an empty segment"
			}
			n++
			segLen = 0
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			segLen++
		default:
			return "the token has a character outside base64url"
		}
	}
	switch {
	case n != 2:
		return fmt.Sprintf("the token has %d segments; a JWT has 3", n+1)
	case segLen == 0:
		return "the token has an empty segment"
	}
	return ""
}

// numericDate reads a NumericDate claim as UnixNano: has is false when the
// claim is absent, ok false when it is not a number.
func numericDate(claims map[string]any, name string) (at int64, has, ok bool) {
	v, present := claims[name]
	if !present || v == nil {
		return 0, false, true
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return 0, true, false
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > float64(math.MaxInt64/int64(time.Second)) {
		return 0, true, false
	}
	return int64(f * float64(time.Second)), true, true
}

// audienceOK reports whether aud (a string or a list of them) holds one of
// want.
func audienceOK(aud any, want []string) bool {
	switch a := aud.(type) {
	case string:
		return slices.Contains(want, a)
	case []any:
		for _, x := range a {
			if s, ok := x.(string); ok && slices.Contains(want, s) {
				return true
			}
		}
	}
	return false
}

// mapClaims reads user, tenant, org, groups and session id through the
// issuer's claim names and groups_map.
func mapClaims(is *policy.Issuer, claims map[string]any) (policy.SignedClaims, string) {
	var sc policy.SignedClaims
	str := func(name string) (string, bool) {
		v, ok := claims[name]
		if !ok || v == nil {
			return "", true
		}
		s, ok := v.(string)
		return s, ok
	}
	var ok bool
	if sc.User, ok = str(is.Claims.User); !ok {
		return sc, fmt.Sprintf("claim %s (the user) is not a string", is.Claims.User)
	}
	tenant, ok := str(is.Claims.Tenant)
	if !ok {
		return sc, fmt.Sprintf("claim %s (the tenant) is not a string", is.Claims.Tenant)
	}
	sc.Tenant = tenant
	if is.Tenant != "" {
		if tenant != "" && tenant != is.Tenant {
			return sc, fmt.Sprintf("the token's tenant %s is not issuer %s's tenant %s", quoteClaim(tenant), is.Name, quoteClaim(is.Tenant))
		}
		sc.Tenant = is.Tenant
	}
	if sc.Org, ok = str(is.Claims.Org); !ok {
		return sc, fmt.Sprintf("claim %s (the organization) is not a string", is.Claims.Org)
	}
	if sc.ID, ok = str(is.Claims.SessionID); !ok {
		return sc, fmt.Sprintf("claim %s (the session id) is not a string", is.Claims.SessionID)
	}
	if sc.ID == "" {
		sc.ID, _ = str("jti")
	}
	switch g := claims[is.Claims.Groups].(type) {
	case nil:
	case string:
		sc.Groups = []string{g}
	case []any:
		for _, x := range g {
			if s, ok := x.(string); ok {
				sc.Groups = append(sc.Groups, s)
			}
		}
	default:
		return sc, fmt.Sprintf("claim %s (the groups) is not a list of strings", is.Claims.Groups)
	}
	for i, g := range sc.Groups {
		if to, ok := is.GroupsMap[g]; ok {
			sc.Groups[i] = to
		}
	}
	return sc, ""
}

// quoteClaim quotes a value from a token for a message, bounded: a token
// is not trusted to be short.
func quoteClaim(s string) string {
	const max = 64
	if len(s) > max {
		return fmt.Sprintf("%q… (%d bytes)", s[:max], len(s))
	}
	return fmt.Sprintf("%q", s)
}

// status is a key set's fetch state in one line, for explanations.
func (k *KeySet) status() string {
	switch {
	case k.source != "url":
		return "no usable key in its key set"
	case k.fetchOK.Load()+k.fetchFailed.Load() == 0:
		return "the first fetch of " + k.url + " has not finished"
	}
	if e := k.lastErr.Load(); e != nil && *e != "" {
		return *e
	}
	return "fetched from " + k.url
}

// VerifyToken is Verify in the form the credential cache calls on a miss
// (cache.SignedVerifier).
func (v *Verifier) VerifyToken(snap *policy.Snapshot, token string, now int64) (*policy.Principal, uint8, cache.Versioned, uint64) {
	r := v.verify(snap, token, now, false)
	return r.Principal, uint8(r.Refusal), r.Keys, r.KeyGen
}
