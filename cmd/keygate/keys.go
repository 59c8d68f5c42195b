package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/policyedit"
	"github.com/keygate/keygate/internal/store"
)

const keysUsage = `usage: keygate keys COMMAND [flags]

Commands:
  create --tenant T [--org O] [--groups a,b] [--user U] [--name N] [--env E]
         [--expires 90d|RFC3339] [--policy FILE|DIR | KUBE]
      make a key; stdout: the key, then (without --policy or KUBE) its api_keys entry
  import --tenant T [same flags as create] [--policy FILE|DIR] < keys.txt
      list existing keys (one a line) by digest; stdout: the entries (or ids)
  list --policy FILE|DIR [--format text|json]
      a table of the policy's keys and their state
  revoke ID --policy FILE|DIR | KUBE [--note TEXT]
      set disabled: true on key (or session) ID; the entry stays
  rotate ID --policy FILE|DIR | KUBE [--overlap 24h] [--expires D]
      add a successor with the same scope; the old key expires after --overlap

KUBE is --kube-namespace NS --kube-selector LABELS [--kubeconfig FILE]: the
ConfigMaps keygate serve reads (each organization's keys in keygate-keys-ORG).
With a directory, keys are written to its managed.yaml. Writers take turns on
an exclusive lock (.keygate.lock beside the policy) shared with keygate serve's
management API, and a create that would exceed max_org_keys is refused.

Run 'keygate keys COMMAND -h' for a command's flags.
`

func keysCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, keysUsage)
		return errUsage
	}
	switch args[0] {
	case "create":
		return keysCreate(args[1:], stdout, stderr)
	case "import":
		return keysImport(args[1:], stdin, stdout, stderr)
	case "list":
		return keysList(args[1:], stdout, stderr)
	case "revoke":
		return keysRevoke(args[1:], stderr)
	case "rotate":
		return keysRotate(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, keysUsage)
		return nil
	}
	fmt.Fprintf(stderr, "keygate keys: unknown command %q\n\n%s", args[0], keysUsage)
	return errUsage
}

// keyFlags are the scope and metadata flags of create and import.
type keyFlags struct {
	tenant, org, groups, user, name, env, expires, rateLimit string
}

func (k *keyFlags) register(c *command) {
	c.fs.StringVar(&k.tenant, "tenant", "", "tenant the key belongs to (required)")
	c.fs.StringVar(&k.org, "org", "", "organization: makes an organization-level key (default: tenant-level)")
	c.fs.StringVar(&k.groups, "groups", "", "access groups, comma-separated")
	c.fs.StringVar(&k.user, "user", "", "the user requests run as (default: the key's id)")
	c.fs.StringVar(&k.name, "name", "", "a name for people")
	c.fs.StringVar(&k.env, "env", "", "environment tag, e.g. production")
	c.fs.StringVar(&k.expires, "expires", "", "expiry: a lifetime (90d, 36h) or an RFC 3339 time (default: never)")
	c.fs.StringVar(&k.rateLimit, "rate-limit", "", "the key's own rate limit: a name under the policy's rate_limits (default: none)")
}

// entry builds the api_keys entry for id; the caller fills Hash.
func (k *keyFlags) entry(c *command, id string, t time.Time) (policy.APIKey, error) {
	if k.tenant == "" {
		return policy.APIKey{}, c.fail("--tenant is required")
	}
	if strings.ContainsAny(k.name+k.env+k.user, "\r\n") {
		return policy.APIKey{}, c.fail("--name, --env and --user must be one line")
	}
	e := policy.APIKey{ID: id, Name: k.name, Tenant: k.tenant, Org: k.org, User: k.user,
		Groups: listFlag(k.groups), Environment: k.env, CreatedAt: timestamp(t), RateLimit: k.rateLimit}
	if e.User == "" {
		e.User = id
	}
	if k.expires != "" {
		at, err := parseExpiry(k.expires, t)
		if err != nil {
			return policy.APIKey{}, c.fail("--expires: %v", err)
		}
		e.ExpiresAt = timestamp(at)
	}
	return e, nil
}

func describe(e keys.Key) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tenant %s", e.Tenant)
	if e.Org != "" {
		fmt.Fprintf(&b, ", organization %s", e.Org)
	} else {
		b.WriteString(" (tenant-level)")
	}
	fmt.Fprintf(&b, ", user %s", e.User)
	if len(e.Groups) > 0 {
		fmt.Fprintf(&b, ", groups %s", strings.Join(e.Groups, ","))
	}
	if e.ExpiresAt != nil {
		fmt.Fprintf(&b, ", expires %s", e.ExpiresAt.Format(time.RFC3339))
	}
	if e.RateLimit != "" {
		fmt.Fprintf(&b, ", rate limit %s", e.RateLimit)
	}
	return b.String()
}

func keysCreate(args []string, stdout, stderr io.Writer) error {
	c := newCommand("keygate keys create", "keygate keys create --tenant T [--org O] [--groups a,b] [--user U] [--name N] [--env E] [--expires 90d] [--rate-limit NAME] [--policy FILE|DIR | --kube-namespace NS --kube-selector LABELS]", stderr)
	var kf keyFlags
	kf.register(c)
	var sf storeFlags
	sf.register(c, true)
	if pos, err := c.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return c.fail("unexpected argument %q", pos[0])
	}
	if sf.given() {
		return keysCreateIn(c, &kf, &sf, stdout, stderr)
	}
	id, key, hash, err := newCredential()
	if err != nil {
		return err
	}
	t := now()
	e, err := kf.entry(c, id, t)
	if err != nil {
		return err
	}
	e.Hash = hash
	fmt.Fprintln(stdout, key)
	fmt.Fprintf(stdout, "# api_keys entry for %s; the key above will not be shown again\n%s", id, policyedit.FormatAPIKey(e))
	notef(stderr, "Created API key %s: %s.", id, describe(keys.FromPolicy(e, t)))
	notef(stderr, "The key is the first line of standard output. %s", shownOnce)
	notef(stderr, "Add the entry after it under api_keys: in your policy (or use --policy FILE next time).")
	return nil
}

// keysCreateIn makes the key through the keys rules and writes it to the
// store, as the management API would for the operator.
func keysCreateIn(c *command, kf *keyFlags, sf *storeFlags, stdout, stderr io.Writer) error {
	if err := sf.check(c); err != nil {
		return err
	}
	// The flags' own checks, on an entry that is not used.
	e, err := kf.entry(c, "", now())
	if err != nil {
		return err
	}
	nk := keys.NewKey{Name: e.Name, Groups: e.Groups, User: kf.user, Environment: e.Environment, RateLimit: e.RateLimit}
	if e.ExpiresAt != nil {
		nk.ExpiresAt = &e.ExpiresAt.Time
	}
	ctx, cancel := cliContext()
	defer cancel()
	svc, st, err := sf.service(ctx)
	if err != nil {
		return err
	}
	scope := store.Scope{Tenant: kf.tenant, Org: kf.org}
	k, err := svc.Create(ctx, keys.Actor{}, scope, nk)
	if err != nil {
		return editError(sf.where(), err)
	}
	fmt.Fprintln(stdout, k.Secret)
	notef(stderr, "Added API key %s to %s: %s.", k.ID, st.Target(scope), describe(k.Key))
	notef(stderr, "The key is on standard output. %s", shownOnce)
	return nil
}

func keysImport(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newCommand("keygate keys import", "keygate keys import --tenant T [--org O] [--groups a,b] [--user U] [--name N] [--env E] [--expires 90d] [--rate-limit NAME] [--policy FILE|DIR] < keys.txt", stderr)
	var kf keyFlags
	kf.register(c)
	var sf storeFlags
	sf.register(c, false)
	if pos, err := c.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return c.fail("unexpected argument %q (the keys are read from standard input)", pos[0])
	}
	if kf.tenant == "" {
		return c.fail("--tenant is required")
	}
	t := now()
	var entries []policy.APIKey
	seen := map[string]int{} // digest -> line
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for line := 1; sc.Scan(); line++ {
		v := strings.TrimSpace(sc.Text())
		if v == "" || strings.HasPrefix(v, "#") {
			continue
		}
		// Never echo v: it is a live credential.
		id, ours, valid := apikey.Check(v)
		switch {
		case ours && !valid:
			return fmt.Errorf("standard input line %d: a kg_ key whose checksum is wrong (mistyped or cut?) can never be accepted; nothing was imported", line)
		case !ours:
			var err error
			if id, err = apikey.NewID(); err != nil {
				return err
			}
		}
		hash := policy.FormatDigest(apikey.Digest(v))
		if first, dup := seen[hash]; dup {
			return fmt.Errorf("standard input line %d: the same key as line %d; nothing was imported", line, first)
		}
		seen[hash] = line
		e, err := kf.entry(c, id, t)
		if err != nil {
			return err
		}
		e.Hash = hash
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read standard input: %w", err)
	}
	if len(entries) == 0 {
		return fmt.Errorf("no keys on standard input (one a line; blank lines and # comments are skipped)")
	}
	if sf.policy != "" {
		st, err := store.NewFile(sf.policy)
		if err != nil {
			return err
		}
		ctx, cancel := cliContext()
		defer cancel()
		if err := st.Update(ctx, store.Scope{Tenant: kf.tenant, Org: kf.org}, func(tx *store.Tx) error {
			for _, e := range entries {
				if err := tx.Doc.AddAPIKey(e); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return editError(sf.policy, err)
		}
		for _, e := range entries {
			fmt.Fprintln(stdout, e.ID)
		}
		notef(stderr, "Imported %s into %s (digests only): %s. Their ids are on standard output, in input order.",
			count(len(entries), "key", "keys"), st.Target(store.Scope{}), describe(keys.FromPolicy(entries[0], t)))
		return nil
	}
	fmt.Fprintf(stdout, "# api_keys entries for %s (digests only), in input order\n", count(len(entries), "imported key", "imported keys"))
	for _, e := range entries {
		fmt.Fprint(stdout, policyedit.FormatAPIKey(e))
	}
	notef(stderr, "Imported %s: %s. Add the entries under api_keys: in your policy.", count(len(entries), "key", "keys"), describe(keys.FromPolicy(entries[0], t)))
	return nil
}

// listed is one row of keys list.
type listed struct {
	ID          string   `json:"id"`
	Name        string   `json:"name,omitempty"`
	Tenant      string   `json:"tenant"`
	Org         string   `json:"org,omitempty"`
	User        string   `json:"user"`
	Groups      []string `json:"groups"`
	Environment string   `json:"environment,omitempty"`
	State       string   `json:"state"`
	ExpiresAt   string   `json:"expires_at,omitempty"`
	Hash        string   `json:"hash_prefix"`
}

// keyState is active, expires in Nd (or Nh, Nm), expired or disabled.
func keyState(k policy.APIKey, t time.Time) string {
	switch {
	case k.Disabled:
		return "disabled"
	case k.ExpiresAt == nil:
		return "active"
	case !k.ExpiresAt.After(t):
		return "expired"
	}
	left := k.ExpiresAt.Sub(t)
	switch {
	case left >= 24*time.Hour:
		return fmt.Sprintf("expires in %dd", (left+12*time.Hour)/(24*time.Hour))
	case left >= time.Hour:
		return fmt.Sprintf("expires in %dh", (left+30*time.Minute)/time.Hour)
	}
	return fmt.Sprintf("expires in %dm", max(left/time.Minute, 1))
}

// shortHash shows a digest's first 8 hex digits, never the whole of it.
func shortHash(h string) string {
	if len(h) > len("sha256:")+8 {
		return h[:len("sha256:")+8] + "…"
	}
	return h
}

func keysList(args []string, stdout, stderr io.Writer) error {
	c := newCommand("keygate keys list", "keygate keys list --policy FILE|DIR [--format text|json]", stderr)
	path := c.fs.String("policy", "", "policy file or directory (required)")
	format := c.fs.String("format", "text", "output: text (a table) or json")
	if pos, err := c.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return c.fail("unexpected argument %q", pos[0])
	}
	if *path == "" {
		return c.fail("--policy is required")
	}
	if *format != "text" && *format != "json" {
		return c.fail("--format must be text or json, not %q", *format)
	}
	inputs, err := policy.ReadPath(*path)
	if err != nil {
		return err
	}
	if _, err := policy.Load(inputs, policy.Options{Source: *path}); err != nil {
		return invalidPolicy(*path, err)
	}
	t := time.Now()
	rows := []listed{}
	for _, in := range inputs {
		f, err := policy.Parse(in.Name, in.Data)
		if err != nil {
			return err
		}
		for _, k := range f.Doc.APIKeys {
			r := listed{ID: k.ID, Name: k.Name, Tenant: k.Tenant, Org: k.Org, User: k.User, Groups: k.Groups,
				Environment: k.Environment, State: keyState(k, t), Hash: shortHash(k.Hash)}
			if r.Groups == nil {
				r.Groups = []string{}
			}
			if k.ExpiresAt != nil {
				r.ExpiresAt = k.ExpiresAt.Format(time.RFC3339)
			}
			rows = append(rows, r)
		}
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	dash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tTENANT\tORG\tUSER\tGROUPS\tENV\tSTATE\tHASH")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, dash(r.Name), r.Tenant, dash(r.Org), r.User,
			dash(strings.Join(r.Groups, ",")), dash(r.Environment), r.State, r.Hash)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	notef(stderr, "%s in %s.", count(len(rows), "API key", "API keys"), *path)
	return nil
}

// invalidPolicy reports every problem of a policy that does not load.
func invalidPolicy(path string, err error) error {
	if pe, ok := err.(policy.Errors); ok {
		return fmt.Errorf("policy %s is not valid:\n  %s", path, strings.Join(pe.Lines(), "\n  "))
	}
	return err
}

// keysRevoke disables an API key through the keys rules; an id that is no
// API key may be a session (keys revoke has always revoked both).
func keysRevoke(args []string, stderr io.Writer) error {
	c := newCommand("keygate keys revoke", "keygate keys revoke ID --policy FILE|DIR | --kube-namespace NS --kube-selector LABELS [--note TEXT]", stderr)
	var sf storeFlags
	sf.register(c, true)
	note := c.fs.String("note", "", "why, recorded in a comment on the disabled line")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 1:
		return c.fail("name exactly one id to revoke")
	case strings.ContainsAny(*note, "\r\n"):
		return c.fail("--note must be one line")
	}
	if err := sf.check(c); err != nil {
		return err
	}
	id, comment := pos[0], revokeComment(*note)
	ctx, cancel := cliContext()
	defer cancel()
	svc, st, err := sf.service(ctx)
	if err != nil {
		return err
	}
	scope, ok := keyScope(svc, id)
	if !ok {
		if sf.policy == "" {
			return fmt.Errorf("%s: %w", sf.where(), &policyedit.NotFoundError{ID: id})
		}
		return revokeSession(ctx, sf.policy, id, comment, false, stderr)
	}
	_, changed, err := svc.RevokeKey(ctx, keys.Actor{}, scope, id, comment)
	if err != nil {
		return editError(sf.where(), err)
	}
	revoked(stderr, id, st.Target(scope), changed, sf.policy != "")
	return nil
}

func revokeComment(note string) string {
	comment := "revoked " + now().Format(time.RFC3339)
	if note != "" {
		comment += ": " + note
	}
	return comment
}

func revoked(stderr io.Writer, id, where string, changed, file bool) {
	if !changed {
		notef(stderr, "%s is already disabled in %s; nothing changed.", id, where)
		return
	}
	notef(stderr, "Revoked %s in %s (disabled: true; the entry stays for the record).", id, where)
	if file {
		notef(stderr, "A keygate serving this file refuses it from its next reload.")
	} else {
		notef(stderr, "Every keygate serving these ConfigMaps refuses it within seconds.")
	}
}

// revokeSession sets disabled: true on the entry id of the policy file (or
// of a directory's managed.yaml), under the writers' lock; sessionsOnly
// refuses an API key.
func revokeSession(ctx context.Context, path, id, comment string, sessionsOnly bool, stderr io.Writer) error {
	st, err := store.NewFile(path)
	if err != nil {
		return err
	}
	changed := false
	if err := st.Update(ctx, store.Scope{}, func(tx *store.Tx) error {
		if sessionsOnly {
			f, err := policy.Parse(tx.Doc.Name(), tx.Doc.Bytes())
			if err != nil {
				return err
			}
			for _, k := range f.Doc.APIKeys {
				if k.ID == id {
					return fmt.Errorf("%s is an API key, not a session; use keygate keys revoke", id)
				}
			}
		}
		var err error
		changed, err = tx.Doc.Disable(id, comment)
		return err
	}); err != nil {
		return editError(path, err)
	}
	revoked(stderr, id, st.Target(store.Scope{}), changed, true)
	return nil
}

func keysRotate(args []string, stdout, stderr io.Writer) error {
	c := newCommand("keygate keys rotate", "keygate keys rotate ID --policy FILE|DIR | --kube-namespace NS --kube-selector LABELS [--overlap 24h] [--expires 90d]", stderr)
	var sf storeFlags
	sf.register(c, true)
	overlapFlag := c.fs.String("overlap", "24h", "how long the old key stays valid (e.g. 24h, 7d, 0s); with the organization at max_org_keys only 0s")
	expires := c.fs.String("expires", "", "the new key's expiry (default: the old key's lifetime from now, or never)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return c.fail("name exactly one key id to rotate")
	}
	if err := sf.check(c); err != nil {
		return err
	}
	overlap, err := parseLifetime(*overlapFlag)
	if err != nil || overlap < 0 {
		return c.fail("--overlap: want a duration such as 24h or 7d, not %q", *overlapFlag)
	}
	id, t := pos[0], now()
	var r keys.Rotation
	r.Overlap = overlap
	if *expires != "" {
		at, err := parseExpiry(*expires, t)
		if err != nil {
			return c.fail("--expires: %v", err)
		}
		r.ExpiresAt = &at
	}
	ctx, cancel := cliContext()
	defer cancel()
	svc, st, err := sf.service(ctx)
	if err != nil {
		return err
	}
	scope, ok := keyScope(svc, id)
	if !ok {
		return fmt.Errorf("%s: %w", sf.where(), &policyedit.NotFoundError{ID: id})
	}
	rot, err := svc.RotateKey(ctx, keys.Actor{}, scope, id, r)
	if err != nil {
		return editError(sf.where(), err)
	}
	fmt.Fprintln(stdout, rot.Secret)
	notef(stderr, "Rotated %s: added its successor %s to %s: %s.", id, rot.ID, st.Target(scope), describe(rot.Key))
	switch until := rot.Old.ExpiresAt; {
	case until != nil && until.Before(t.Add(overlap)):
		notef(stderr, "%s keeps its expiry, %s, which comes before the overlap ends.", id, until.Format(time.RFC3339))
	case until != nil:
		notef(stderr, "%s stays valid until %s (--overlap %s), then expires.", id, until.Format(time.RFC3339), *overlapFlag)
	}
	notef(stderr, "The new key is on standard output. %s", shownOnce)
	return nil
}
