package policyedit

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/policy"
)

func digest(s string) string {
	d := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(d[:])
}

// fill replaces H1, H2, HN with digests, so the texts below stay readable.
var fill = strings.NewReplacer("HN", digest("new"), "H1", digest("one"), "H2", digest("two")).Replace

func ts(s string) *policy.Timestamp {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return &policy.Timestamp{Time: t}
}

var newKey = policy.APIKey{
	ID: "kg_new", Name: "CI deploy", Hash: digest("new"), Tenant: "acme", Org: "acme-eu",
	User: "ci", Groups: []string{"sales"}, CreatedAt: ts("2026-01-02T03:04:05Z"), ExpiresAt: ts("2026-04-02T03:04:05Z"),
}

const head = `version: 1
groups:
  - name: sales
tenants:
  - id: acme
    orgs: [acme-eu]
`

func TestAddAPIKey(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{
			name: "block list keeps comments and blank lines",
			in: head + `
# keys of the ACME integration
api_keys:
  # the first key
  - id: kg_one   # public id
    hash: "H1"
    tenant: acme
    user: bot

  # a retired key, kept for the record
  - id: kg_two
    hash: 'H2'
    tenant: acme
    user: bot
    disabled: true

# sessions come next
sessions: []
`,
			want: head + `
# keys of the ACME integration
api_keys:
  # the first key
  - id: kg_one   # public id
    hash: "H1"
    tenant: acme
    user: bot

  # a retired key, kept for the record
  - id: kg_two
    hash: 'H2'
    tenant: acme
    user: bot
    disabled: true
  - id: kg_new
    name: CI deploy
    hash: "HN"
    tenant: acme
    org: acme-eu
    user: ci
    groups: [sales]
    created_at: 2026-01-02T03:04:05Z
    expires_at: 2026-04-02T03:04:05Z

# sessions come next
sessions: []
`,
		},
		{
			name: "dashes at the key's column",
			in: head + `api_keys:
- id: kg_one
  hash: "H1"
  tenant: acme
  user: bot
`,
			want: head + `api_keys:
- id: kg_one
  hash: "H1"
  tenant: acme
  user: bot
- id: kg_new
  name: CI deploy
  hash: "HN"
  tenant: acme
  org: acme-eu
  user: ci
  groups: [sales]
  created_at: 2026-01-02T03:04:05Z
  expires_at: 2026-04-02T03:04:05Z
`,
		},
		{
			name: "wide indentation",
			in: head + `api_keys:
    -   id: kg_one
        hash: "H1"
        tenant: acme
        user: bot
`,
			want: head + `api_keys:
    -   id: kg_one
        hash: "H1"
        tenant: acme
        user: bot
    -   id: kg_new
        name: CI deploy
        hash: "HN"
        tenant: acme
        org: acme-eu
        user: ci
        groups: [sales]
        created_at: 2026-01-02T03:04:05Z
        expires_at: 2026-04-02T03:04:05Z
`,
		},
		{
			name: "flow items get a flow item",
			in: head + `api_keys:
  - {id: kg_one, hash: "H1", tenant: acme, user: bot}
sessions:
  - {id: s1, hash: "H2", tenant: acme, user: alice}
`,
			want: head + `api_keys:
  - {id: kg_one, hash: "H1", tenant: acme, user: bot}
  - {id: kg_new, name: CI deploy, hash: "HN", tenant: acme, org: acme-eu, user: ci, groups: [sales], created_at: 2026-01-02T03:04:05Z, expires_at: 2026-04-02T03:04:05Z}
sessions:
  - {id: s1, hash: "H2", tenant: acme, user: alice}
`,
		},
		{
			name: "no api_keys yet",
			in:   head + "\nendpoints:\n  - name: all\n    match: {path: \"/**\"}\n",
			want: head + "\nendpoints:\n  - name: all\n    match: {path: \"/**\"}\n" + `
api_keys:
  - id: kg_new
    name: CI deploy
    hash: "HN"
    tenant: acme
    org: acme-eu
    user: ci
    groups: [sales]
    created_at: 2026-01-02T03:04:05Z
    expires_at: 2026-04-02T03:04:05Z
`,
		},
		{
			name: "no final newline",
			in:   strings.TrimSuffix(head, "\n"),
			want: head + `api_keys:
  - id: kg_new
    name: CI deploy
    hash: "HN"
    tenant: acme
    org: acme-eu
    user: ci
    groups: [sales]
    created_at: 2026-01-02T03:04:05Z
    expires_at: 2026-04-02T03:04:05Z
`,
		},
		{
			name: "empty flow list with a comment",
			in:   head + "api_keys: []  # none yet\nsessions: []\n",
			want: head + `api_keys:  # none yet
  - id: kg_new
    name: CI deploy
    hash: "HN"
    tenant: acme
    org: acme-eu
    user: ci
    groups: [sales]
    created_at: 2026-01-02T03:04:05Z
    expires_at: 2026-04-02T03:04:05Z
sessions: []
`,
		},
		{
			name: "null value",
			in:   head + "api_keys: ~\nsessions:\n",
			want: head + `api_keys:
  - id: kg_new
    name: CI deploy
    hash: "HN"
    tenant: acme
    org: acme-eu
    user: ci
    groups: [sales]
    created_at: 2026-01-02T03:04:05Z
    expires_at: 2026-04-02T03:04:05Z
sessions:
`,
		},
		{
			name: "CRLF line endings",
			in:   strings.ReplaceAll(head+"api_keys:\n  - id: kg_one\n    hash: \"H1\"\n    tenant: acme\n    user: bot\n", "\n", "\r\n"),
			want: strings.ReplaceAll(head+`api_keys:
  - id: kg_one
    hash: "H1"
    tenant: acme
    user: bot
  - id: kg_new
    name: CI deploy
    hash: "HN"
    tenant: acme
    org: acme-eu
    user: ci
    groups: [sales]
    created_at: 2026-01-02T03:04:05Z
    expires_at: 2026-04-02T03:04:05Z
`, "\n", "\r\n"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := New("p.yaml", []byte(fill(tt.in)))
			if err := d.AddAPIKey(newKey); err != nil {
				t.Fatal(err)
			}
			if got := string(d.Bytes()); got != fill(tt.want) {
				t.Errorf("got:\n%s\nwant:\n%s", got, fill(tt.want))
			}
			if err := Validate("p.yaml", d.Bytes()); err != nil {
				t.Errorf("edited policy does not compile: %v", err)
			}
		})
	}
}

func TestAddSession(t *testing.T) {
	in := fill(head + "api_keys:\n  - id: kg_one\n    hash: \"H1\"\n    tenant: acme\n    user: bot\n")
	d := New("p.yaml", []byte(in))
	s := policy.Session{ID: "kg_ses1", Hash: digest("new"), User: "alice", Tenant: "acme", Groups: []string{"sales"}, ExpiresAt: ts("2026-01-02T11:04:05Z")}
	if err := d.AddSession(s); err != nil {
		t.Fatal(err)
	}
	want := in + fill(`sessions:
  - id: kg_ses1
    hash: "HN"
    user: alice
    tenant: acme
    groups: [sales]
    expires_at: 2026-01-02T11:04:05Z
`)
	if got := string(d.Bytes()); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestAddQuotesWhatNeedsQuotes(t *testing.T) {
	k := policy.APIKey{ID: "kg_q", Name: "yes: #1, [beta]", Hash: digest("q"), Tenant: "acme", User: "123", Environment: "null"}
	for _, in := range []string{
		head,
		head + "api_keys:\n  - {id: kg_one, hash: \"" + digest("one") + "\", tenant: acme, user: bot}\n",
	} {
		d := New("p.yaml", []byte(in))
		if err := d.AddAPIKey(k); err != nil {
			t.Fatal(err)
		}
		f, err := policy.Parse("p.yaml", d.Bytes())
		if err != nil {
			t.Fatal(err)
		}
		got := f.Doc.APIKeys[len(f.Doc.APIKeys)-1]
		if got.Name != k.Name || got.User != k.User || got.Environment != k.Environment {
			t.Errorf("read back %+v from:\n%s", got, d.Bytes())
		}
	}
}

func TestAddUnsupported(t *testing.T) {
	for name, in := range map[string]string{
		"JSON":      `{"version": 1, "tenants": [{"id": "acme"}], "api_keys": []}`,
		"flow list": head + "api_keys: [{id: kg_one, hash: \"" + digest("one") + "\", tenant: acme, user: bot}]\n",
	} {
		t.Run(name, func(t *testing.T) {
			d := New("p.yaml", []byte(in))
			err := d.AddAPIKey(newKey)
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("err = %v, want ErrUnsupported", err)
			}
			if string(d.Bytes()) != in {
				t.Error("text changed after a refused edit")
			}
		})
	}
}

const twoKeys = head + `api_keys:
  - id: kg_one
    hash: "H1"
    tenant: acme
    user: bot   # the robot
    disabled: false  # flip to revoke

  # next
  - id: kg_two
    hash: "H2"
    tenant: acme
    user: bot
    expires_at: "2030-01-01T00:00:00Z"
  - {id: kg_flow, hash: "H4", tenant: acme, user: bot, groups: [sales]}
sessions:
  - id: s1
    hash: "` + "H3" + `"
    user: alice
    tenant: acme
`

func twoKeysText() string {
	return strings.NewReplacer("H3", digest("three"), "H4", digest("four")).Replace(fill(twoKeys))
}

func TestDisable(t *testing.T) {
	tests := []struct {
		id, note string
		changed  bool
		edit     func(string) string // from the input to the expected output
	}{
		{"kg_one", "revoked 2026-01-02", true, func(s string) string {
			return strings.Replace(s, "disabled: false  # flip to revoke", "disabled: true  # flip to revoke", 1)
		}},
		{"kg_two", "revoked 2026-01-02", true, func(s string) string {
			return strings.Replace(s, `expires_at: "2030-01-01T00:00:00Z"`+"\n", `expires_at: "2030-01-01T00:00:00Z"`+"\n    disabled: true  # revoked 2026-01-02\n", 1)
		}},
		{"kg_flow", "", true, func(s string) string {
			return strings.Replace(s, "groups: [sales]}", "groups: [sales], disabled: true}", 1)
		}},
		{"s1", "", true, func(s string) string { return s + "    disabled: true\n" }},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			in := twoKeysText()
			d := New("p.yaml", []byte(in))
			changed, err := d.Disable(tt.id, tt.note)
			if err != nil {
				t.Fatal(err)
			}
			if changed != tt.changed {
				t.Errorf("changed = %v", changed)
			}
			if got, want := string(d.Bytes()), tt.edit(in); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
			again, err := d.Disable(tt.id, tt.note)
			if err != nil || again {
				t.Errorf("second Disable = %v, %v; want false, nil", again, err)
			}
		})
	}
}

func TestSetExpiry(t *testing.T) {
	at := time.Date(2026, 3, 4, 5, 6, 7, 890, time.FixedZone("x", 3600))
	tests := []struct {
		id   string
		edit func(string) string
	}{
		{"kg_one", func(s string) string {
			return strings.Replace(s, "flip to revoke\n", "flip to revoke\n    expires_at: 2026-03-04T04:06:07Z\n", 1)
		}},
		{"kg_two", func(s string) string {
			return strings.Replace(s, `expires_at: "2030-01-01T00:00:00Z"`, "expires_at: 2026-03-04T04:06:07Z", 1)
		}},
		{"kg_flow", func(s string) string {
			return strings.Replace(s, "groups: [sales]}", "groups: [sales], expires_at: 2026-03-04T04:06:07Z}", 1)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			in := twoKeysText()
			d := New("p.yaml", []byte(in))
			if err := d.SetExpiry(tt.id, at); err != nil {
				t.Fatal(err)
			}
			if got, want := string(d.Bytes()), tt.edit(in); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

func TestUnknownID(t *testing.T) {
	d := New("p.yaml", []byte(twoKeysText()))
	var nf *NotFoundError
	if _, err := d.Disable("kg_nope", ""); !errors.As(err, &nf) || nf.ID != "kg_nope" {
		t.Errorf("Disable: err = %v", err)
	}
	if err := d.SetExpiry("kg_nope", time.Now()); !errors.As(err, &nf) {
		t.Errorf("SetExpiry: err = %v", err)
	}
}

func TestFormat(t *testing.T) {
	want := fill(`- id: kg_new
  name: CI deploy
  hash: "HN"
  tenant: acme
  org: acme-eu
  user: ci
  groups: [sales]
  created_at: 2026-01-02T03:04:05Z
  expires_at: 2026-04-02T03:04:05Z
`)
	if got := FormatAPIKey(newKey); got != want {
		t.Errorf("FormatAPIKey:\n%s\nwant:\n%s", got, want)
	}
	// created_by, written by the management API, reads back from the text
	// that AddAPIKey writes.
	byAPI := newKey
	byAPI.CreatedBy = "olivia: the org admin"
	want = strings.Replace(want, "  expires_at:", "  created_by: \"olivia: the org admin\"\n  expires_at:", 1)
	if got := FormatAPIKey(byAPI); got != want {
		t.Errorf("FormatAPIKey with created_by:\n%s\nwant:\n%s", got, want)
	}
	d := New("p.yaml", []byte(head))
	if err := d.AddAPIKey(byAPI); err != nil {
		t.Fatalf("AddAPIKey with created_by: %v", err)
	}
	if f, err := policy.Parse("p.yaml", d.Bytes()); err != nil || f.Doc.APIKeys[0].CreatedBy != byAPI.CreatedBy {
		t.Errorf("created_by does not read back: %v\n%s", err, d.Bytes())
	}
	s := policy.Session{ID: "kg_s", Hash: digest("new"), User: "alice", Tenant: "acme", Disabled: true}
	if got, want := FormatSession(s), fill("- id: kg_s\n  hash: \"HN\"\n  user: alice\n  tenant: acme\n  disabled: true\n"); got != want {
		t.Errorf("FormatSession:\n%s\nwant:\n%s", got, want)
	}
}

func writePolicy(t *testing.T, text string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestEditFileWritesAtomically(t *testing.T) {
	path := writePolicy(t, twoKeysText(), 0o640)
	before, _ := os.Stat(path)
	wrote, err := EditFile(path, func(d *Doc) error { return d.AddAPIKey(newKey) })
	if err != nil || !wrote {
		t.Fatalf("EditFile = %v, %v", wrote, err)
	}
	after, _ := os.Stat(path)
	if after.Mode().Perm() != 0o640 {
		t.Errorf("mode = %v, want 0640", after.Mode().Perm())
	}
	if os.SameFile(before, after) {
		t.Error("the file was rewritten in place, not replaced by a rename")
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the policy (no temporary file left)", len(entries))
	}
	snap, err := policy.LoadPath(path, policy.Options{})
	if err != nil {
		t.Fatalf("edited policy does not load: %v", err)
	}
	if snap.Counts().APIKeys != 4 {
		t.Errorf("api keys = %d, want 4", snap.Counts().APIKeys)
	}
	// nothing to change: nothing written
	wrote, err = EditFile(path, func(d *Doc) error { _, err := d.Disable("kg_one", ""); return err })
	if err != nil || !wrote {
		t.Fatalf("Disable: %v, %v", wrote, err)
	}
	wrote, err = EditFile(path, func(d *Doc) error { _, err := d.Disable("kg_one", ""); return err })
	if err != nil || wrote {
		t.Fatalf("Disable again = %v, %v; want false, nil", wrote, err)
	}
}

func TestEditFileKeepsSymlink(t *testing.T) {
	path := writePolicy(t, twoKeysText(), 0o600)
	link := filepath.Join(t.TempDir(), "link.yaml")
	if err := os.Symlink(path, link); err != nil {
		t.Skip(err)
	}
	if _, err := EditFile(link, func(d *Doc) error { return d.AddAPIKey(newKey) }); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symlink was replaced: %v %v", fi.Mode(), err)
	}
	if data, _ := os.ReadFile(path); !strings.Contains(string(data), "kg_new") {
		t.Error("the link's target was not edited")
	}
}

func TestEditFileRefusesInvalidResult(t *testing.T) {
	orgKey := func(id, secret string) string {
		return "  - {id: " + id + ", hash: \"" + digest(secret) + "\", tenant: acme, org: acme-eu, user: bot}\n"
	}
	limited := strings.Replace(head, "version: 1\n", "version: 1\nsettings:\n  max_org_keys: 2\n", 1) +
		"api_keys:\n" + orgKey("kg_a", "a") + orgKey("kg_b", "b")
	tests := []struct {
		name, text string
		edit       func(*Doc) error
		before     bool
		want       string
	}{
		{"org at max_org_keys", limited, func(d *Doc) error {
			k := newKey
			k.ExpiresAt = nil // an expired key would not count
			return d.AddAPIKey(k)
		}, false,
			`api_keys[2]: organization "acme-eu" has more than 2 active organization-level keys (max_org_keys)`},
		{"unknown tenant", head, func(d *Doc) error {
			k := newKey
			k.Tenant, k.Org = "globex", ""
			return d.AddAPIKey(k)
		}, false, `api_keys[0].tenant: tenant "globex" is not declared under tenants`},
		{"unknown org", head, func(d *Doc) error {
			k := newKey
			k.Org = "acme-us"
			return d.AddAPIKey(k)
		}, false, `api_keys[0].org: organization "acme-us" is not declared under tenants`},
		{"invalid before", head + "endpoints:\n  - name: x\n    match: {path: /x}\n    groups: [nope]\n", func(d *Doc) error {
			return d.AddAPIKey(newKey)
		}, true, `group "nope" is not declared`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writePolicy(t, tt.text, 0o644)
			wrote, err := EditFile(path, tt.edit)
			var ie *InvalidError
			if !errors.As(err, &ie) {
				t.Fatalf("err = %v, want InvalidError", err)
			}
			if wrote || ie.Before != tt.before || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("wrote %v, Before %v, err:\n%v\nwant it to contain %q", wrote, ie.Before, err, tt.want)
			}
			if data, _ := os.ReadFile(path); string(data) != tt.text {
				t.Error("the file changed")
			}
		})
	}
	// Disabling a key frees its organization's slot.
	path := writePolicy(t, limited, 0o644)
	if _, err := EditFile(path, func(d *Doc) error {
		if _, err := d.Disable("kg_a", ""); err != nil {
			return err
		}
		return d.AddAPIKey(newKey)
	}); err != nil {
		t.Errorf("disable then add: %v", err)
	}
}

func TestEditFileRefusesConcurrentChange(t *testing.T) {
	path := writePolicy(t, twoKeysText(), 0o644)
	_, err := EditFile(path, func(d *Doc) error {
		if err := os.WriteFile(path, []byte(twoKeysText()+"# someone else\n"), 0o644); err != nil {
			return err
		}
		return d.AddAPIKey(newKey)
	})
	if err == nil || !strings.Contains(err.Error(), "changed while") {
		t.Fatalf("err = %v", err)
	}
	if data, _ := os.ReadFile(path); strings.Contains(string(data), "kg_new") {
		t.Error("the concurrent change was overwritten")
	}
}

// The shipped example goes through every edit: only the edited lines change
// and the result compiles.
func TestExampleRoundTrip(t *testing.T) {
	orig, err := os.ReadFile("../../examples/policy.yaml")
	if err != nil {
		t.Fatal(err)
	}
	d := New("policy.yaml", orig)
	k := newKey
	k.Groups = []string{"support"}
	if err := d.AddAPIKey(k); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Disable("kg_demo0002", "revoked"); err != nil {
		t.Fatal(err)
	}
	if err := d.SetExpiry("kg_demo0001", time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	if err := Validate("policy.yaml", d.Bytes()); err != nil {
		t.Fatal(err)
	}
	origLines := strings.Split(string(orig), "\n")
	gotLines := strings.Split(string(d.Bytes()), "\n")
	if added := len(gotLines) - len(origLines); added != 11 { // 9 for the key, 1 expires_at, 1 disabled
		t.Errorf("%d lines added, want 11:\n%s", added, d.Bytes())
	}
	kept := map[string]int{}
	for _, l := range gotLines {
		kept[l]++
	}
	for _, l := range origLines {
		if kept[l] == 0 {
			t.Errorf("line %q lost", l)
		}
		kept[l]--
	}
}
