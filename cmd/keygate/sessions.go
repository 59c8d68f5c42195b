package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/policyedit"
	"github.com/keygate/keygate/internal/store"
)

const sessionsUsage = `usage: keygate sessions COMMAND [flags]

Commands:
  create --user U --tenant T [--org O] [--groups a,b] [--ttl 8h] [--policy FILE|DIR]
      make a session token; stdout: the token, then (without --policy) its sessions entry
  revoke ID --policy FILE|DIR [--note TEXT]
      set disabled: true on session ID; the entry stays
` + sessionsSignedUsage + `
With a directory, sessions are written to its managed.yaml.

Run 'keygate sessions COMMAND -h' for a command's flags.
`

func sessionsCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, sessionsUsage)
		return errUsage
	}
	switch args[0] {
	case "create":
		return sessionsCreate(args[1:], stdout, stderr)
	case "issue":
		return sessionsIssue(args[1:], stdout, stderr) // sessions_signed.go
	case "keygen":
		return sessionsKeygen(args[1:], stderr)
	case "revoke":
		return sessionsRevoke(args[1:], stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, sessionsUsage)
		return nil
	}
	fmt.Fprintf(stderr, "keygate sessions: unknown command %q\n\n%s", args[0], sessionsUsage)
	return errUsage
}

func sessionsCreate(args []string, stdout, stderr io.Writer) error {
	c := newCommand("keygate sessions create", "keygate sessions create --user U --tenant T [--org O] [--groups a,b] [--ttl 8h] [--policy FILE|DIR]", stderr)
	user := c.fs.String("user", "", "the person the session belongs to (required)")
	tenant := c.fs.String("tenant", "", "tenant (required)")
	org := c.fs.String("org", "", "organization: limits the session to it (default: every organization of the tenant)")
	groups := c.fs.String("groups", "", "access groups, comma-separated")
	ttl := c.fs.String("ttl", "8h", "lifetime (8h, 30m, 7d) or an RFC 3339 expiry")
	path := c.fs.String("policy", "", "policy file, or directory (its managed.yaml), to add the entry to (default: print the entry)")
	if pos, err := c.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return c.fail("unexpected argument %q", pos[0])
	}
	switch {
	case *user == "":
		return c.fail("--user is required")
	case *tenant == "":
		return c.fail("--tenant is required")
	case strings.ContainsAny(*user, "\r\n"):
		return c.fail("--user must be one line")
	}
	t := now()
	at, err := parseExpiry(*ttl, t)
	if err != nil {
		return c.fail("--ttl: %v", err)
	}
	id, token, hash, err := newCredential()
	if err != nil {
		return err
	}
	s := policy.Session{ID: id, Hash: hash, User: *user, Tenant: *tenant, Org: *org, Groups: listFlag(*groups), ExpiresAt: timestamp(at)}
	what := fmt.Sprintf("user %s, tenant %s", s.User, s.Tenant)
	if s.Org != "" {
		what += ", organization " + s.Org
	}
	if len(s.Groups) > 0 {
		what += ", groups " + strings.Join(s.Groups, ",")
	}
	what += ", expires " + at.Format(time.RFC3339)
	if *path != "" {
		st, err := store.NewFile(*path)
		if err != nil {
			return err
		}
		ctx, cancel := cliContext()
		defer cancel()
		if err := st.Update(ctx, store.Scope{Tenant: s.Tenant, Org: s.Org}, func(tx *store.Tx) error { return tx.Doc.AddSession(s) }); err != nil {
			return editError(*path, err)
		}
		fmt.Fprintln(stdout, token)
		notef(stderr, "Added session %s to %s: %s.", id, st.Target(store.Scope{}), what)
		notef(stderr, "The token is on standard output. %s", shownOnce)
		return nil
	}
	fmt.Fprintln(stdout, token)
	fmt.Fprintf(stdout, "# sessions entry for %s; the token above will not be shown again\n%s", id, policyedit.FormatSession(s))
	notef(stderr, "Created session %s: %s.", id, what)
	notef(stderr, "The token is the first line of standard output. %s", shownOnce)
	notef(stderr, "Add the entry after it under sessions: in your policy (or use --policy FILE next time).")
	return nil
}

func sessionsRevoke(args []string, stderr io.Writer) error {
	c := newCommand("keygate sessions revoke", "keygate sessions revoke ID --policy FILE|DIR [--note TEXT]", stderr)
	path := c.fs.String("policy", "", "policy file, or directory (its managed.yaml), holding the entry (required)")
	note := c.fs.String("note", "", "why, recorded in a comment on the disabled line")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 1:
		return c.fail("name exactly one id to revoke")
	case *path == "":
		return c.fail("--policy is required")
	case strings.ContainsAny(*note, "\r\n"):
		return c.fail("--note must be one line")
	}
	ctx, cancel := cliContext()
	defer cancel()
	return revokeSession(ctx, *path, pos[0], revokeComment(*note), true, stderr)
}
