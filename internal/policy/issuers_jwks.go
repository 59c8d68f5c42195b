package policy

import (
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
)

// jwksProblem is a problem with an inline key set, at a path inside it.
type jwksProblem struct {
	path []any
	msg  string
}

// checkJWKS checks an inline JSON Web Key Set with the standard library
// only (the policy package holds no JOSE code): public signing keys of the
// kinds keygate verifies, with well-formed members. The verifier parses the
// same set with its JOSE library; what passes here parses there.
func checkJWKS(data []byte) []jwksProblem {
	var set struct {
		Keys []map[string]any `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err != nil {
		return []jwksProblem{{nil, "jwks must be a JSON Web Key Set: {keys: [{kty: ..., kid: ...}, ...]}"}}
	}
	if len(set.Keys) == 0 {
		return []jwksProblem{{[]any{"keys"}, "jwks has no keys"}}
	}
	var out []jwksProblem
	kids := map[string]bool{}
	for i, k := range set.Keys {
		at := []any{"keys", i}
		bad := func(format string, args ...any) {
			out = append(out, jwksProblem{at, fmt.Sprintf(format, args...)})
		}
		str := func(name string) string { s, _ := k[name].(string); return s }
		if _, private := k["d"]; private {
			bad("key %d holds a private key (d): put only public keys in the policy", i)
			continue
		}
		if use := str("use"); use != "" && use != "sig" {
			bad("key %d has use %s; keygate verifies signatures (use: sig)", i, quote(use))
			continue
		}
		if kid := str("kid"); kid != "" {
			if kids[kid] {
				bad("kid %s is listed twice", quote(kid))
				continue
			}
			kids[kid] = true
		} else if len(set.Keys) > 1 {
			bad("key %d has no kid: with more than one key, tokens pick theirs by kid", i)
			continue
		}
		b64 := func(name string) []byte {
			v, err := base64.RawURLEncoding.DecodeString(str(name))
			if err != nil || len(v) == 0 {
				bad("key %d: %s must be unpadded base64url", i, name)
				return nil
			}
			return v
		}
		switch kty := str("kty"); kty {
		case "RSA":
			n, e := b64("n"), b64("e")
			if n != nil && e != nil && new(big.Int).SetBytes(n).BitLen() < 2048 {
				bad("key %d: an RSA key must have at least 2048 bits, not %d", i, new(big.Int).SetBytes(n).BitLen())
			}
		case "EC":
			curves := map[string]struct {
				c    ecdh.Curve
				size int
			}{"P-256": {ecdh.P256(), 32}, "P-384": {ecdh.P384(), 48}, "P-521": {ecdh.P521(), 66}}
			cv, known := curves[str("crv")]
			if !known {
				bad("key %d: crv must be P-256, P-384 or P-521, not %s", i, quote(str("crv")))
				continue
			}
			x, y := b64("x"), b64("y")
			if x == nil || y == nil {
				continue
			}
			if len(x) != cv.size || len(y) != cv.size {
				bad("key %d: x and y of a %s key are %d bytes each", i, str("crv"), cv.size)
				continue
			}
			if _, err := cv.c.NewPublicKey(append(append([]byte{4}, x...), y...)); err != nil {
				bad("key %d: the point is not on %s", i, str("crv"))
			}
		case "OKP":
			if str("crv") != "Ed25519" {
				bad("key %d: crv must be Ed25519, not %s", i, quote(str("crv")))
				continue
			}
			if x := b64("x"); x != nil && len(x) != 32 {
				bad("key %d: x of an Ed25519 key is 32 bytes, not %d", i, len(x))
			}
		case "oct":
			bad("key %d is a symmetric key (kty oct): keygate never accepts HMAC-signed tokens", i)
		default:
			bad("key %d: kty must be RSA, EC or OKP, not %s", i, quote(kty))
		}
	}
	return out
}
