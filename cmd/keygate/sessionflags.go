package main

import (
	"flag"
	"fmt"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/session"
)

// sessionFlags are serve's flags for signed session tokens.
type sessionFlags struct {
	signingKey     string
	verifyKey      string
	jwksRefresh    time.Duration
	jwksMinRefresh time.Duration
}

func (f *sessionFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.signingKey, "session-signing-key", "", "PKCS#8 PEM Ed25519 private key that signs the sessions POST /v1/sessions issues (keygate sessions keygen makes one); without it the API signs with an ephemeral key, useless across replicas or restarts. Only the API process needs it")
	fs.StringVar(&f.verifyKey, "session-verify-key", "", "public keys that verify keygate's own signed sessions on replicas that do not sign: PEM \"PUBLIC KEY\" blocks or a JSON Web Key Set (the API's /.well-known/jwks.json)")
	fs.DurationVar(&f.jwksRefresh, "session-jwks-refresh", session.DefaultRefresh, "how often the session_issuers' jwks_url are fetched again")
	fs.DurationVar(&f.jwksMinRefresh, "session-jwks-min-refresh", session.DefaultMinRefresh, "at most one fetch per issuer this often when tokens name an unknown kid or a fetch failed")
}

// open makes the signer (from --session-signing-key; an ephemeral one when
// the API is on without it; none otherwise) and the verifier, which trusts
// the signer's public key and the --session-verify-key keys as keygate's
// own issuer, and the policy's session_issuers.
func (f *sessionFlags) open(apiOn bool, reg prometheus.Registerer, log *zap.Logger) (*session.Signer, *session.Verifier, error) {
	if f.jwksRefresh < time.Second || f.jwksMinRefresh <= 0 {
		return nil, nil, fmt.Errorf("--session-jwks-refresh must be at least 1s and --session-jwks-min-refresh positive")
	}
	var signer *session.Signer
	var own []jose.JSONWebKey
	var err error
	switch {
	case f.signingKey != "":
		if signer, err = session.LoadSigner(f.signingKey); err != nil {
			return nil, nil, err
		}
		log.Info("signing sessions", zap.String("key_file", f.signingKey), zap.String("kid", signer.KID()))
	case apiOn:
		if signer, err = session.NewEphemeralSigner(); err != nil {
			return nil, nil, err
		}
		log.Warn("no --session-signing-key: sessions are signed with an ephemeral key made at start-up; they verify on this process only and stop at its restart (fine for trying keygate; give a key file to run replicas)",
			zap.String("kid", signer.KID()))
	}
	if signer != nil {
		own = append(own, signer.PublicKey())
	}
	if f.verifyKey != "" {
		keys, err := session.LoadVerifyKeys(f.verifyKey)
		if err != nil {
			return nil, nil, err
		}
		kids := make([]string, len(keys))
		for i, k := range keys {
			kids[i] = k.KeyID
		}
		log.Info("verifying keygate's own sessions", zap.String("key_file", f.verifyKey), zap.Strings("kids", kids))
		own = append(own, keys...)
	}
	v := session.NewVerifier(session.Options{Log: log, Refresh: f.jwksRefresh, MinRefresh: f.jwksMinRefresh, OwnKeys: own})
	if err := reg.Register(v.Collector()); err != nil {
		v.Close()
		return nil, nil, fmt.Errorf("register metrics: %w", err)
	}
	return signer, v, nil
}
