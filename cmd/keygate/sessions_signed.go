package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/session"
)

// sessionsSignedUsage is the part of keygate sessions' usage about signed
// session tokens.
const sessionsSignedUsage = `  keygen --out FILE [--public FILE]
      make an Ed25519 signing key (PKCS#8 PEM, mode 0600) and its public key
      (default FILE.pub) for serve --session-signing-key and --session-verify-key
  issue --signing-key FILE --user U --tenant T [--org O] [--groups a,b] [--ttl 8h]
        [--issuer keygate] [--audience keygate] [--id SID]
      sign a session token (a JWT, no policy change); stdout: the token
`

// sessionsKeygen writes a new signing key and its public key.
func sessionsKeygen(args []string, stderr io.Writer) error {
	c := newCommand("keygate sessions keygen", "keygate sessions keygen --out FILE [--public FILE]", stderr)
	out := c.fs.String("out", "", "where to write the private key, PKCS#8 PEM (required; never overwritten)")
	pub := c.fs.String("public", "", "where to write the public key, PEM (default: --out with .pub added)")
	if pos, err := c.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return c.fail("unexpected argument %q", pos[0])
	}
	if *out == "" {
		return c.fail("--out is required")
	}
	if *pub == "" {
		*pub = *out + ".pub"
	}
	priv, public, err := session.GenerateKey()
	if err != nil {
		return err
	}
	if err := writeNew(*out, priv, 0o600); err != nil {
		return err
	}
	if err := writeNew(*pub, public, 0o644); err != nil {
		return err
	}
	keys, err := session.ParseVerifyKeys(public)
	if err != nil {
		return err
	}
	notef(stderr, "Wrote the signing key to %s (keep it secret: only the management API's process reads it, with --session-signing-key)", *out)
	notef(stderr, "and its public key to %s (for the replicas that verify: --session-verify-key). Key id (kid): %s.", *pub, keys[0].KeyID)
	notef(stderr, "The same with OpenSSL: openssl genpkey -algorithm ed25519 -out %s && openssl pkey -in %s -pubout -out %s", *out, *out, *pub)
	return nil
}

// writeNew writes a file that must not exist yet.
func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%s exists; keygen never overwrites a key", path)
	}
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// sessionsIssue signs one session token with a key file.
func sessionsIssue(args []string, stdout, stderr io.Writer) error {
	c := newCommand("keygate sessions issue", "keygate sessions issue --signing-key FILE --user U --tenant T [--org O] [--groups a,b] [--ttl 8h] [--issuer keygate] [--audience keygate]", stderr)
	keyFile := c.fs.String("signing-key", "", "PKCS#8 PEM Ed25519 private key (required; keygate sessions keygen makes one)")
	user := c.fs.String("user", "", "the person the session belongs to (required)")
	tenant := c.fs.String("tenant", "", "tenant (required)")
	org := c.fs.String("org", "", "organization: limits the session to it (default: every organization of the tenant)")
	groups := c.fs.String("groups", "", "access groups, comma-separated")
	ttl := c.fs.String("ttl", "8h", "lifetime (8h, 30m, 7d) or an RFC 3339 expiry")
	issuer := c.fs.String("issuer", session.DefaultIssuer, "the iss claim: keygate's own, or a session_issuers entry's issuer whose keys hold this key's public half")
	audience := c.fs.String("audience", session.DefaultAudience, "the aud claim")
	id := c.fs.String("id", "", "the session id (sid) to revoke it by (default: a new one)")
	if pos, err := c.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return c.fail("unexpected argument %q", pos[0])
	}
	switch {
	case *keyFile == "":
		return c.fail("--signing-key is required")
	case *user == "":
		return c.fail("--user is required")
	case *tenant == "":
		return c.fail("--tenant is required")
	case strings.ContainsAny(*user, "\r\n,"):
		return c.fail("--user must be one line without commas")
	}
	t := now()
	exp, err := parseExpiry(*ttl, t)
	if err != nil {
		return c.fail("--ttl: %v", err)
	}
	signer, err := session.LoadSigner(*keyFile)
	if err != nil {
		return err
	}
	if *id == "" {
		if *id, err = session.NewSessionID(); err != nil {
			return err
		}
	}
	tok, err := signer.Sign(session.Claims{Issuer: *issuer, Audience: *audience, ID: *id, User: *user, Tenant: *tenant, Org: *org,
		Groups: listFlag(*groups), IssuedAt: t, ExpiresAt: exp})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	what := fmt.Sprintf("user %s, tenant %s", *user, *tenant)
	if *org != "" {
		what += ", organization " + *org
	}
	if g := listFlag(*groups); len(g) > 0 {
		what += ", groups " + strings.Join(g, ",")
	}
	notef(stderr, "Signed session %s (kid %s, iss %s, aud %s): %s, expires %s.", *id, signer.KID(), *issuer, *audience, what, exp.UTC().Format(time.RFC3339))
	notef(stderr, "The token is on standard output; send it in the session header. Revoke it with a revoked_sessions entry {id: %s} (or DELETE /v1/sessions/%s).", *id, *id)
	return nil
}
