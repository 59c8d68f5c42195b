package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"

	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/session"
	"github.com/keygate/keygate/test/internal/harness"
)

// The signed session -session signed puts on every request: a user who
// signed in to the app, in the organization the load's path names, with
// the group the load's endpoint needs. It lives longer than any run.
const (
	sessionUser     = "alice"
	sessionTenant   = "acme"
	sessionOrg      = "acme-eu"
	sessionGroup    = "sales"
	sessionTTL      = 24 * time.Hour
	sessionEndpoint = "sales-read" // the endpoint the load's request matches
)

// setupSession prepares -session signed: a signed-in app user calling an
// endpoint that needs a session, as keygate's own sign-in makes them (POST
// /v1/sessions, the README's "Sessions minted at sign-in"). The request
// carries the token in the session header instead of the API key, as a
// browser does; the load's endpoint requires a session. The Ed25519 key is
// made per run in tmp as `keygate sessions keygen` makes it, and keygate
// gets its public half with --session-verify-key, as a replica that only
// verifies does. It returns the token, "" without -session.
func setupSession(cfg *config, bp *benchPolicy, tmp string, progress io.Writer) (string, error) {
	if cfg.session == "" { // parseConfig allows only "signed" besides
		return "", nil
	}
	i := slices.IndexFunc(bp.doc.Endpoints, func(e policy.EndpointRule) bool { return e.Name == sessionEndpoint })
	if i < 0 {
		return "", fmt.Errorf("-session: the generated policy has no endpoint %s", sessionEndpoint)
	}
	bp.doc.Endpoints[i].Require = []string{"session"}

	private, public, err := session.GenerateKey()
	if err != nil {
		return "", fmt.Errorf("-session: make a signing key: %w", err)
	}
	keyPath := filepath.Join(tmp, "session.key")
	if err := os.WriteFile(keyPath, private, 0o600); err != nil {
		return "", fmt.Errorf("-session: %w", err)
	}
	if err := os.WriteFile(keyPath+".pub", public, 0o644); err != nil {
		return "", fmt.Errorf("-session: %w", err)
	}
	signer, err := session.LoadSigner(keyPath)
	if err != nil {
		return "", fmt.Errorf("-session: %w", err)
	}
	now := time.Now()
	token, err := signer.Sign(session.Claims{User: sessionUser, Tenant: sessionTenant, Org: sessionOrg,
		Groups: []string{sessionGroup}, IssuedAt: now, ExpiresAt: now.Add(sessionTTL)})
	if err != nil {
		return "", fmt.Errorf("-session: %w", err)
	}
	harness.RegisterSecret(token, "the load's signed session")
	cfg.keygateArgs = append(cfg.keygateArgs, "--session-verify-key", keyPath+".pub")
	fmt.Fprintf(progress, "session: every request carries a signed session (EdDSA, kid %s, %d bytes) of %s in %s instead of the API key; endpoint %s requires a session (--session-verify-key)\n",
		signer.KID(), len(token), sessionUser, sessionOrg, sessionEndpoint)
	return token, nil
}

// withSession turns the load's request into a signed-in user's: the session
// header holds token and the API key is gone. The header count stays the
// same, so the floor's work does not change with it.
func withSession(req *authv3.CheckRequest, header, token string) *authv3.CheckRequest {
	h := req.GetAttributes().GetRequest().GetHttp().GetHeaders()
	delete(h, "authorization")
	h[header] = token
	return req
}

// sessionAllowed accepts keygate's allow only if it names the session's
// user and says the session authenticated: a key slipping through instead
// would measure the wrong thing.
func sessionAllowed(prefix string) func(*authv3.CheckResponse) error {
	return func(resp *authv3.CheckResponse) error {
		if err := allowed(resp); err != nil {
			return err
		}
		got := map[string]string{}
		for _, h := range resp.GetOkResponse().GetHeaders() {
			got[h.GetHeader().GetKey()] = h.GetHeader().GetValue()
		}
		if got[prefix+"user"] != sessionUser || got[prefix+"auth"] != "session" {
			return errors.New("allowed, but not as the signed session's user")
		}
		return nil
	}
}
