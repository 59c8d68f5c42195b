package session

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// TestSignerRoundTrip: a key from GenerateKey, written as keygate sessions
// keygen writes it, signs tokens that verify with the JWKS the API serves
// (saved to a file, as --session-verify-key reads it) and with the public
// PEM: the kid is the same on both sides.
func TestSignerRoundTrip(t *testing.T) {
	priv, pub, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "session.key")
	if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadSigner(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	fromPEM, err := ParseVerifyKeys(pub)
	if err != nil {
		t.Fatal(err)
	}
	fromJWKS, err := ParseVerifyKeys(s.JWKS())
	if err != nil {
		t.Fatal(err)
	}
	if fromPEM[0].KeyID != s.KID() || fromJWKS[0].KeyID != s.KID() {
		t.Fatalf("kids: signer %s, PEM %s, JWKS %s", s.KID(), fromPEM[0].KeyID, fromJWKS[0].KeyID)
	}
	if strings.Contains(string(s.JWKS()), `"d"`) {
		t.Fatal("the JWKS holds the private key")
	}
	snap := loadSnap(t, `"management": {}`)
	now := time.Now()
	tok, err := s.Sign(Claims{User: "alice", Tenant: "acme", Groups: []string{"sales"}, ExpiresAt: now.Add(8 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for name, keys := range map[string][]jose.JSONWebKey{"public PEM": fromPEM, "JWKS": fromJWKS} {
		v := NewVerifier(Options{OwnKeys: keys})
		r := v.Verify(snap, tok, now.UnixNano())
		v.Close()
		if p := r.Principal; p == nil || p.User != "alice" || p.GroupsHeader() != "sales" || r.KID != s.KID() {
			t.Errorf("verified with the %s: %v %s", name, r.Refusal, r.Why)
		}
	}
	for _, bad := range []struct{ data, msg string }{
		{string(pub), `PEM block is "PUBLIC KEY"`},
		{"not a key", "no PEM block"},
	} {
		if _, err := ParsePrivateKey([]byte(bad.data)); err == nil || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("ParsePrivateKey(%.20q): %v, want %q", bad.data, err, bad.msg)
		}
	}
}
