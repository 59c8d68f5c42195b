package session

import (
	"fmt"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// BenchmarkVerify is the cost of a cache miss on a signed session token:
// parse, one signature verification, claims, and the principal, per
// algorithm.
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256, jose.RS256, jose.PS256} {
		b.Run("alg="+string(alg), func(b *testing.B) {
			k := newTestKey(b, "k1", alg)
			snap := loadSnap(b, fmt.Sprintf(`"session_issuers": [{"name": "idp", "issuer": "https://idp.test", "audiences": ["api"], "jwks": %s, "algorithms": [%q]}]`, jwksJSON(k), alg))
			v := NewVerifier(Options{})
			defer v.Close()
			v.Sync(snap)
			now := time.Now()
			tok := k.sign(b, map[string]any{"iss": "https://idp.test", "aud": "api", "sub": "alice", "tid": "acme", "org": "acme-eu",
				"groups": []string{"sales"}, "sid": "s_1", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix()})
			if r := v.Verify(snap, tok, now.UnixNano()); r.Refusal != Verified {
				b.Fatal(r.Why)
			}
			b.ReportAllocs()
			for b.Loop() {
				if r := v.Verify(snap, tok, now.UnixNano()); r.Refusal != Verified {
					b.Fatal(r.Why)
				}
			}
			b.ReportMetric(float64(len(tok)), "token-bytes")
		})
	}
}
