package session

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Signer signs keygate's own session tokens with an Ed25519 key (alg
// EdDSA, a kid in the header). Only the process that issues sessions (the
// management API, or keygate sessions issue) holds it.
type Signer struct {
	key    ed25519.PrivateKey
	kid    string
	signer jose.Signer
}

// Claims are what a keygate session token says.
type Claims struct {
	Issuer    string // default DefaultIssuer
	Audience  string // default DefaultAudience
	ID        string // sid; default a new session id
	User      string
	Tenant    string
	Org       string
	Groups    []string
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// NewSigner signs with key.
func NewSigner(key ed25519.PrivateKey) (*Signer, error) {
	kid := KeyID(key.Public().(ed25519.PublicKey))
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: key, KeyID: kid, Algorithm: string(jose.EdDSA)}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, fmt.Errorf("session signer: %w", err)
	}
	return &Signer{key: key, kid: kid, signer: sig}, nil
}

// NewEphemeralSigner signs with a key made now and kept in memory only:
// fine for trying keygate, useless across replicas or restarts.
func NewEphemeralSigner() (*Signer, error) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return NewSigner(key)
}

// LoadSigner reads a PKCS#8 PEM Ed25519 private key ("PRIVATE KEY"), as
// keygate sessions keygen or `openssl genpkey -algorithm ed25519` write it.
func LoadSigner(path string) (*Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("session signing key: %w", err)
	}
	key, err := ParsePrivateKey(data)
	if err != nil {
		return nil, fmt.Errorf("session signing key %s: %w", path, err)
	}
	return NewSigner(key)
}

// ParsePrivateKey reads a PKCS#8 PEM Ed25519 private key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block: want a PKCS#8 \"PRIVATE KEY\" (keygate sessions keygen writes one)")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("PEM block is %q; want a PKCS#8 \"PRIVATE KEY\" of an Ed25519 key", block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("not a PKCS#8 private key: %w", err)
	}
	ed, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is %T; keygate signs sessions with Ed25519", k)
	}
	return ed, nil
}

// GenerateKey makes an Ed25519 key and returns it as PKCS#8 PEM, with its
// public half as PKIX PEM.
func GenerateKey() (private, public []byte, err error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}

// KeyID is the kid of a public key: the start of its RFC 7638 thumbprint,
// so that a verifier holding only the public key names it the same.
func KeyID(pub crypto.PublicKey) string {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(tp)[:16]
}

// KID is the signer's key id.
func (s *Signer) KID() string { return s.kid }

// PublicKey is the signer's public key as a JWK.
func (s *Signer) PublicKey() jose.JSONWebKey {
	return jose.JSONWebKey{Key: s.key.Public(), KeyID: s.kid, Algorithm: string(jose.EdDSA), Use: "sig"}
}

// JWKS is the JSON Web Key Set of the signer's public key, as GET
// /.well-known/jwks.json serves it.
func (s *Signer) JWKS() []byte {
	b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{s.PublicKey()}})
	return b
}

// Sign makes a token. User, Tenant and ExpiresAt are required.
func (s *Signer) Sign(c Claims) (string, error) {
	switch {
	case c.User == "":
		return "", errors.New("a session needs a user")
	case c.Tenant == "":
		return "", errors.New("a session needs a tenant")
	case c.ExpiresAt.IsZero():
		return "", errors.New("a session needs an expiry")
	}
	if c.Issuer == "" {
		c.Issuer = DefaultIssuer
	}
	if c.Audience == "" {
		c.Audience = DefaultAudience
	}
	if c.IssuedAt.IsZero() {
		c.IssuedAt = time.Now()
	}
	if c.ID == "" {
		id, err := NewSessionID()
		if err != nil {
			return "", err
		}
		c.ID = id
	}
	body := map[string]any{
		"iss": c.Issuer, "aud": c.Audience, "sub": c.User, "tid": c.Tenant, "sid": c.ID,
		"iat": c.IssuedAt.Unix(), "exp": c.ExpiresAt.Unix(), "groups": nonNil(c.Groups),
	}
	if c.Org != "" {
		body["org"] = c.Org
	}
	payload, err := json.Marshal(body)
	if err != nil {
		return "", err
	}
	obj, err := s.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("sign session: %w", err)
	}
	return obj.CompactSerialize()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// NewSessionID returns a fresh session id such as s_4kQ9Xz2mPa7LwR1c.
func NewSessionID() (string, error) {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	var b strings.Builder
	b.WriteString("s_")
	buf := make([]byte, 32)
	for b.Len() < 18 {
		if _, err := rand.Read(buf); err != nil {
			return "", err
		}
		for _, c := range buf {
			if c < 248 && b.Len() < 18 { // 248 = 4*62: no modulo bias
				b.WriteByte(alphabet[c%62])
			}
		}
	}
	return b.String(), nil
}

// LoadVerifyKeys reads the public keys that verify keygate's own tokens on
// replicas that do not sign: PEM "PUBLIC KEY" blocks, or a JSON Web Key
// Set (the API's /.well-known/jwks.json saved to a file). A private key is
// refused: the replicas that only verify must not hold one.
func LoadVerifyKeys(path string) ([]jose.JSONWebKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("session verify key: %w", err)
	}
	keys, err := ParseVerifyKeys(data)
	if err != nil {
		return nil, fmt.Errorf("session verify key %s: %w", path, err)
	}
	return keys, nil
}

// ParseVerifyKeys is LoadVerifyKeys on the file's contents.
func ParseVerifyKeys(data []byte) ([]jose.JSONWebKey, error) {
	if t := strings.TrimSpace(string(data)); strings.HasPrefix(t, "{") {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(data, &set); err != nil {
			return nil, fmt.Errorf("not a JSON Web Key Set: %w", err)
		}
		for _, k := range set.Keys {
			if !k.IsPublic() {
				return nil, errors.New("the key set holds a private key; give only public keys to the replicas that verify")
			}
		}
		return parseJWKS(data)
	}
	var keys []jose.JSONWebKey
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		switch block.Type {
		case "PUBLIC KEY":
			pub, err := x509.ParsePKIXPublicKey(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("public key: %w", err)
			}
			ed, ok := pub.(ed25519.PublicKey)
			if !ok {
				return nil, fmt.Errorf("the public key is %T; keygate's own sessions are signed with Ed25519", pub)
			}
			keys = append(keys, jose.JSONWebKey{Key: ed, KeyID: KeyID(ed), Algorithm: string(jose.EdDSA), Use: "sig"})
		case "PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY":
			return nil, errors.New("this is a private key; give the replicas that verify the public key (keygate sessions keygen writes both; or openssl pkey -in KEY -pubout)")
		}
	}
	if len(keys) == 0 {
		return nil, errors.New("no PEM \"PUBLIC KEY\" block and not a JSON Web Key Set")
	}
	return keys, nil
}
