package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/policyedit"
)

const keysUsage = `usage: keygate keys COMMAND [flags]

Commands:
  create --tenant T [--org O] [--groups a,b] [--user U] [--name N] [--env E]
         [--expires 90d|RFC3339] [--policy FILE]
      make a key; stdout: the key, then (without --policy) its api_keys entry
  import --tenant T [same flags as create] [--policy FILE] < keys.txt
      list existing keys (one a line) by digest; stdout: the entries (or ids)
  list --policy FILE|DIR [--format text|json]
      a table of the policy's keys and their state
  revoke ID --policy FILE [--note TEXT]
      set disabled: true on key (or session) ID; the entry stays
  rotate ID --policy FILE [--overlap 24h] [--expires D]
      add a successor with the same scope; the old key expires after --overlap

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
		return revoke("keygate keys revoke", false, args[1:], stderr)
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
	tenant, org, groups, user, name, env, expires, policy string
}

func (k *keyFlags) register(c *command) {
	c.fs.StringVar(&k.tenant, "tenant", "", "tenant the key belongs to (required)")
	c.fs.StringVar(&k.org, "org", "", "organization: makes an organization-level key (default: tenant-level)")
	c.fs.StringVar(&k.groups, "groups", "", "access groups, comma-separated")
	c.fs.StringVar(&k.user, "user", "", "the user requests run as (default: the key's id)")
	c.fs.StringVar(&k.name, "name", "", "a name for people")
	c.fs.StringVar(&k.env, "env", "", "environment tag, e.g. production")
	c.fs.StringVar(&k.expires, "expires", "", "expiry: a lifetime (90d, 36h) or an RFC 3339 time (default: never)")
	c.fs.StringVar(&k.policy, "policy", "", "policy file to add the entry to (default: print the entry)")
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
		Groups: listFlag(k.groups), Environment: k.env, CreatedAt: timestamp(t)}
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

func describe(e policy.APIKey) string {
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
	return b.String()
}

func keysCreate(args []string, stdout, stderr io.Writer) error {
	c := newCommand("keygate keys create", "keygate keys create --tenant T [--org O] [--groups a,b] [--user U] [--name N] [--env E] [--expires 90d] [--policy FILE]", stderr)
	var kf keyFlags
	kf.register(c)
	if pos, err := c.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return c.fail("unexpected argument %q", pos[0])
	}
	id, key, hash, err := newCredential()
	if err != nil {
		return err
	}
	e, err := kf.entry(c, id, now())
	if err != nil {
		return err
	}
	e.Hash = hash
	if kf.policy != "" {
		if _, err := policyedit.EditFile(kf.policy, func(d *policyedit.Doc) error { return d.AddAPIKey(e) }); err != nil {
			return editError(kf.policy, err)
		}
		fmt.Fprintln(stdout, key)
		notef(stderr, "Added API key %s to %s: %s.", id, kf.policy, describe(e))
		notef(stderr, "The key is on standard output. %s", shownOnce)
		return nil
	}
	fmt.Fprintln(stdout, key)
	fmt.Fprintf(stdout, "# api_keys entry for %s; the key above will not be shown again\n%s", id, policyedit.FormatAPIKey(e))
	notef(stderr, "Created API key %s: %s.", id, describe(e))
	notef(stderr, "The key is the first line of standard output. %s", shownOnce)
	notef(stderr, "Add the entry after it under api_keys: in your policy (or use --policy FILE next time).")
	return nil
}

func keysImport(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	c := newCommand("keygate keys import", "keygate keys import --tenant T [--org O] [--groups a,b] [--user U] [--name N] [--env E] [--expires 90d] [--policy FILE] < keys.txt", stderr)
	var kf keyFlags
	kf.register(c)
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
	if kf.policy != "" {
		if _, err := policyedit.EditFile(kf.policy, func(d *policyedit.Doc) error {
			for _, e := range entries {
				if err := d.AddAPIKey(e); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return editError(kf.policy, err)
		}
		for _, e := range entries {
			fmt.Fprintln(stdout, e.ID)
		}
		notef(stderr, "Imported %s into %s (digests only): %s. Their ids are on standard output, in input order.", count(len(entries), "key", "keys"), kf.policy, describe(entries[0]))
		return nil
	}
	fmt.Fprintf(stdout, "# api_keys entries for %s (digests only), in input order\n", count(len(entries), "imported key", "imported keys"))
	for _, e := range entries {
		fmt.Fprint(stdout, policyedit.FormatAPIKey(e))
	}
	notef(stderr, "Imported %s: %s. Add the entries under api_keys: in your policy.", count(len(entries), "key", "keys"), describe(entries[0]))
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

// revoke is keys revoke (an API key or a session) and sessions revoke
// (sessions only): disabled: true on an id.
func revoke(name string, sessionsOnly bool, args []string, stderr io.Writer) error {
	c := newCommand(name, name+" ID --policy FILE [--note TEXT]", stderr)
	path := c.fs.String("policy", "", "policy file holding the entry (required)")
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
	id := pos[0]
	comment := "revoked " + now().Format(time.RFC3339)
	if *note != "" {
		comment += ": " + *note
	}
	changed := false
	if _, err := policyedit.EditFile(*path, func(d *policyedit.Doc) error {
		if sessionsOnly {
			f, err := policy.Parse(*path, d.Bytes())
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
		changed, err = d.Disable(id, comment)
		return err
	}); err != nil {
		return editError(*path, err)
	}
	if !changed {
		notef(stderr, "%s is already disabled in %s; nothing changed.", id, *path)
		return nil
	}
	notef(stderr, "Revoked %s in %s (disabled: true; the entry stays for the record).", id, *path)
	notef(stderr, "A keygate serving this file refuses it from its next reload.")
	return nil
}

func keysRotate(args []string, stdout, stderr io.Writer) error {
	c := newCommand("keygate keys rotate", "keygate keys rotate ID --policy FILE [--overlap 24h] [--expires 90d]", stderr)
	path := c.fs.String("policy", "", "policy file holding the key (required)")
	overlapFlag := c.fs.String("overlap", "24h", "how long the old key stays valid (e.g. 24h, 7d, 0s)")
	expires := c.fs.String("expires", "", "the new key's expiry (default: the old key's lifetime from now, or never)")
	pos, err := c.parse(args)
	if err != nil {
		return err
	}
	switch {
	case len(pos) != 1:
		return c.fail("name exactly one key id to rotate")
	case *path == "":
		return c.fail("--policy is required")
	}
	overlap, err := parseLifetime(*overlapFlag)
	if err != nil || overlap < 0 {
		return c.fail("--overlap: want a duration such as 24h or 7d, not %q", *overlapFlag)
	}
	oldID, t := pos[0], now()
	var newExpiry *policy.Timestamp
	if *expires != "" {
		at, err := parseExpiry(*expires, t)
		if err != nil {
			return c.fail("--expires: %v", err)
		}
		newExpiry = timestamp(at)
	}
	newID, key, hash, err := newCredential()
	if err != nil {
		return err
	}
	var succ policy.APIKey
	oldUntil := t.Add(overlap)
	keptExpiry := false
	if _, err := policyedit.EditFile(*path, func(d *policyedit.Doc) error {
		f, err := policy.Parse(*path, d.Bytes())
		if err != nil {
			return err
		}
		var old *policy.APIKey
		for i := range f.Doc.APIKeys {
			if f.Doc.APIKeys[i].ID == oldID {
				old = &f.Doc.APIKeys[i]
			}
		}
		if old == nil {
			return &policyedit.NotFoundError{ID: oldID}
		}
		if old.Disabled {
			return fmt.Errorf("%s is disabled; make a new key with keygate keys create", oldID)
		}
		succ = policy.APIKey{ID: newID, Name: old.Name, Hash: hash, Tenant: old.Tenant, Org: old.Org, User: old.User,
			Groups: old.Groups, Environment: old.Environment, CreatedAt: timestamp(t)}
		switch {
		case newExpiry != nil:
			succ.ExpiresAt = newExpiry
		case old.ExpiresAt != nil && old.CreatedAt != nil && old.ExpiresAt.After(old.CreatedAt.Time):
			succ.ExpiresAt = timestamp(t.Add(old.ExpiresAt.Sub(old.CreatedAt.Time)))
		}
		if err := d.AddAPIKey(succ); err != nil {
			return err
		}
		if old.ExpiresAt != nil && !old.ExpiresAt.After(oldUntil) {
			keptExpiry, oldUntil = true, old.ExpiresAt.Time
			return nil
		}
		return d.SetExpiry(oldID, oldUntil)
	}); err != nil {
		return editError(*path, err)
	}
	fmt.Fprintln(stdout, key)
	notef(stderr, "Rotated %s: added its successor %s to %s: %s.", oldID, newID, *path, describe(succ))
	if keptExpiry {
		notef(stderr, "%s keeps its expiry, %s, which comes before the overlap ends.", oldID, oldUntil.Format(time.RFC3339))
	} else {
		notef(stderr, "%s stays valid until %s (--overlap %s), then expires.", oldID, oldUntil.Format(time.RFC3339), *overlapFlag)
	}
	notef(stderr, "The new key is on standard output. %s", shownOnce)
	return nil
}
