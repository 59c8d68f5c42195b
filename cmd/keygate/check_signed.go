package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/session"
)

// signedExplain is what keygate check says about a signed session token:
// who signed it with which key, what it claims and why it was refused. It
// never holds the token.
type signedExplain struct {
	Issuer   string         `json:"issuer,omitempty"` // the session_issuers entry, or "(keygate)"
	Iss      string         `json:"iss,omitempty"`
	KID      string         `json:"kid,omitempty"`
	Alg      string         `json:"alg,omitempty"`
	Claims   map[string]any `json:"claims,omitempty"`
	Verified bool           `json:"verified"`
	Refused  string         `json:"refused,omitempty"` // why, when it did not verify or is revoked
}

// checkVerifier is the verifier keygate check decides with: the policy's
// issuers (jwks_url fetched once, for up to 5 s) and keygate's own keys.
func checkVerifier(snap *policy.Snapshot, verifyKey, signingKey string) (*session.Verifier, error) {
	var own []jose.JSONWebKey
	if verifyKey != "" {
		keys, err := session.LoadVerifyKeys(verifyKey)
		if err != nil {
			return nil, err
		}
		own = append(own, keys...)
	}
	if signingKey != "" {
		s, err := session.LoadSigner(signingKey)
		if err != nil {
			return nil, err
		}
		own = append(own, s.PublicKey())
	}
	v := session.NewVerifier(session.Options{OwnKeys: own})
	v.Sync(snap)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	v.WaitForKeys(ctx, snap)
	return v, nil
}

// explainSigned explains the session header's value when it is a signed
// token, as of at.
func explainSigned(v *session.Verifier, snap *policy.Snapshot, value string, at time.Time) *signedExplain {
	value = strings.TrimSpace(value)
	if !session.IsJWT(value) {
		return nil
	}
	r := v.Explain(snap, value, at)
	e := &signedExplain{KID: r.KID, Alg: r.Alg, Claims: r.Claims, Verified: r.Refusal == session.Verified && r.Principal != nil && !r.Principal.Disabled, Refused: r.Why}
	if r.Issuer != nil {
		e.Issuer, e.Iss = r.Issuer.Name, r.Issuer.Issuer
	}
	return e
}

func printSigned(w io.Writer, e *signedExplain) {
	if e == nil {
		return
	}
	fmt.Fprintln(w, "signed session (the token itself is not shown):")
	for _, kv := range [][2]string{{"issuer", e.Issuer}, {"iss", e.Iss}, {"kid", e.KID}, {"alg", e.Alg}} {
		fmt.Fprintf(w, "  %-8s %s\n", kv[0]+":", firstOf(kv[1], "-"))
	}
	if len(e.Claims) > 0 {
		fmt.Fprintln(w, "  claims:")
		names := make([]string, 0, len(e.Claims))
		for n := range e.Claims {
			names = append(names, n)
		}
		slices.Sort(names)
		for _, n := range names {
			v, _ := json.Marshal(e.Claims[n])
			if t, ok := e.Claims[n].(json.Number); ok && (n == "exp" || n == "iat" || n == "nbf") {
				if secs, err := t.Int64(); err == nil {
					v = fmt.Appendf(v, " (%s)", time.Unix(secs, 0).UTC().Format(time.RFC3339))
				}
			}
			fmt.Fprintf(w, "    %s: %s\n", n, v)
		}
	}
	switch {
	case e.Verified:
		fmt.Fprintln(w, "  verified: yes")
	default:
		fmt.Fprintf(w, "  refused: %s\n", firstOf(e.Refused, "-"))
	}
}
