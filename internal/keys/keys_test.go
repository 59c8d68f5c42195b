package keys

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/store"
)

// testPolicy: acme-eu has 2 active org keys of 3 (kg_old expired and
// kg_off disabled do not count); kg_ops carries a group the API may not
// assign. Sessions are the callers.
const testPolicy = `version: 1
settings:
  max_org_keys: 3
groups:
  - name: sales
  - name: support
  - name: ops
  - name: org-admin
tenants:
  - id: acme
    orgs: [acme-eu, acme-us]
  - id: globex
    orgs: [globex-main]
  - id: lonely
management:
  key_admin_groups: [org-admin]
  assignable_groups: [sales, support]
api_keys:
  - id: kg_eu1
    name: EU support tool
    hash: "{{eu1}}"
    tenant: acme
    org: acme-eu
    user: support-bot
    groups: [support]
    created_at: 2026-01-01T00:00:00Z
  - id: kg_ops
    hash: "{{ops}}"
    tenant: acme
    org: acme-eu
    user: ops-bot
    groups: [ops]
  - id: kg_old
    hash: "{{old}}"
    tenant: acme
    org: acme-eu
    user: old-bot
    expires_at: 2020-01-01T00:00:00Z
  - id: kg_off
    hash: "{{off}}"
    tenant: acme
    org: acme-eu
    user: off-bot
    disabled: true
  - id: kg_tenant
    hash: "{{tenant}}"
    tenant: acme
    user: api-bot
  - id: kg_admkey
    hash: "{{admkey}}"
    tenant: acme
    org: acme-us
    user: us-automation
    groups: [org-admin]
sessions:
  - {id: s_olivia, hash: "{{olivia}}", user: olivia, tenant: acme, org: acme-eu, groups: [org-admin]}
  - {id: s_tess, hash: "{{tess}}", user: tess, tenant: acme, groups: [org-admin]}
  - {id: s_gina, hash: "{{gina}}", user: gina, tenant: globex, groups: [org-admin]}
  - {id: s_sam, hash: "{{sam}}", user: sam, tenant: acme, org: acme-eu, groups: [sales]}
`

func fill(text string) string {
	for _, name := range []string{"eu1", "ops", "old", "off", "tenant", "admkey", "olivia", "tess", "gina", "sam"} {
		text = strings.ReplaceAll(text, "{{"+name+"}}", policy.FormatDigest(apikey.Digest(name+"-secret")))
	}
	return text
}

// fixture is a Service on a copy of testPolicy (as a file, or as base.yaml
// of a directory) and the policy snapshot it serves.
type fixture struct {
	svc  *Service
	path string // the file changes go to
	snap *policy.Snapshot
	now  time.Time
}

func newFixture(t *testing.T, dirMode bool, text string) *fixture {
	t.Helper()
	dir := t.TempDir()
	name, target := "policy.yaml", filepath.Join(dir, "policy.yaml")
	if dirMode {
		name, target = "base.yaml", filepath.Join(dir, store.ManagedFragment)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(fill(text)), 0o644); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, name)
	if dirMode {
		root = dir
	}
	st, err := store.NewFile(root)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := st.Policy(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{path: target, snap: snap, now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
	f.svc = &Service{Store: st, Policy: func() *policy.Snapshot { return f.snap }, Now: func() time.Time { return f.now }}
	return f
}

// reload is the snapshot a server would publish after the change.
func (f *fixture) reload(t *testing.T) *policy.Snapshot {
	t.Helper()
	snap, err := f.svc.Store.(*store.File).Policy(context.Background())
	if err != nil {
		t.Fatalf("the policy no longer compiles: %v", err)
	}
	return snap
}

func (f *fixture) text(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(f.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	return string(data)
}

// as is an actor holding the named sessions (or API keys) of testPolicy.
func (f *fixture) as(t *testing.T, names ...string) Actor {
	t.Helper()
	var a Actor
	for _, n := range names {
		p := f.snap.Lookup(policy.KindSession, apikey.Digest(n+"-secret"))
		if p == nil {
			p = f.snap.Lookup(policy.KindAPIKey, apikey.Digest(n+"-secret"))
		}
		if p == nil {
			t.Fatalf("no credential %s in the test policy", n)
		}
		a.Principals = append(a.Principals, p)
	}
	return a
}

var (
	eu     = store.Scope{Org: "acme-eu"}
	us     = store.Scope{Org: "acme-us"}
	acme   = store.Scope{Tenant: "acme"}
	globex = store.Scope{Org: "globex-main"}
)

// wantError checks that err is a *Error with the status and code, and a
// message holding msg.
func wantError(t *testing.T, err error, status int, code, msg string) {
	t.Helper()
	var e *Error
	if !errors.As(err, &e) || e.Status != status || e.Code != code || !strings.Contains(e.Msg, msg) {
		t.Errorf("err = %#v, want %d %s with %q", err, status, code, msg)
	}
}

func TestReach(t *testing.T) {
	f := newFixture(t, false, testPolicy)
	tests := []struct {
		name   string
		actor  []string
		scope  store.Scope
		status int
		msg    string
	}{
		{"org admin, own org", []string{"olivia"}, eu, 200, ""},
		{"org admin, another org of the tenant", []string{"olivia"}, us, 403, `organization "acme-us" are not yours`},
		{"org admin, another tenant's org", []string{"olivia"}, globex, 403, "not yours"},
		{"org admin, tenant-level keys", []string{"olivia"}, acme, 403, "tenant-level key admins only"},
		{"tenant admin, an org of its tenant", []string{"tess"}, us, 200, ""},
		{"tenant admin, tenant-level keys", []string{"tess"}, acme, 200, ""},
		{"tenant admin, another tenant's org", []string{"tess"}, globex, 403, "not yours"},
		{"tenant admin, another tenant's keys", []string{"tess"}, store.Scope{Tenant: "globex"}, 403, "tenant-level key admins only"},
		{"not a key admin", []string{"sam"}, eu, 403, "key_admin_groups"},
		{"not a key admin asking for an unknown org", []string{"sam"}, store.Scope{Org: "nowhere"}, 403, "key_admin_groups"},
		{"admin, unknown org", []string{"olivia"}, store.Scope{Org: "nowhere"}, 404, `organization "nowhere" is not declared`},
		{"admin, unknown tenant", []string{"tess"}, store.Scope{Tenant: "nowhere"}, 404, `tenant "nowhere" is not declared`},
		{"an API key in the admin group", []string{"admkey"}, us, 200, ""},
		{"a key and a session: the admin one counts", []string{"sam", "olivia"}, eu, 200, ""},
		{"operator", nil, globex, 200, ""},
		{"operator, tenant without orgs", nil, store.Scope{Tenant: "lonely"}, 200, ""},
		{"operator, org of another tenant", nil, store.Scope{Tenant: "acme", Org: "globex-main"}, 404, `belongs to tenant "globex", not "acme"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := f.svc.List(context.Background(), f.as(t, tt.actor...), tt.scope)
			if tt.status == 200 {
				if err != nil {
					t.Fatalf("List: %v", err)
				}
				return
			}
			wantError(t, err, tt.status, map[int]string{403: "forbidden", 404: "not_found"}[tt.status], tt.msg)
			if len(l.Keys) != 0 {
				t.Errorf("a refusal listed keys: %+v", l)
			}
		})
	}
}

func TestList(t *testing.T) {
	f := newFixture(t, false, testPolicy)
	before := f.text(t)
	l, err := f.svc.List(context.Background(), f.as(t, "olivia"), eu)
	if err != nil {
		t.Fatal(err)
	}
	if l.Org != "acme-eu" || l.Tenant != "acme" || l.Limit != 3 || l.Active != 2 || len(l.Keys) != 4 {
		t.Errorf("listing %+v: want acme-eu of acme, limit 3, 2 active of 4 keys", l)
	}
	states := map[string]string{}
	for _, k := range l.Keys {
		states[k.ID] = k.State
	}
	if states["kg_eu1"] != StateActive || states["kg_old"] != StateExpired || states["kg_off"] != StateDisabled || states["kg_ops"] != StateActive {
		t.Errorf("states %v", states)
	}
	if f.text(t) != before {
		t.Error("listing changed the policy")
	}
	// What a client reads: never a hash, groups never null, no org on a
	// tenant-level key.
	l, err = f.svc.List(context.Background(), f.as(t, "tess"), acme)
	if err != nil || len(l.Keys) != 1 || l.Limit != 0 {
		t.Fatalf("tenant-level listing %+v, %v", l, err)
	}
	out, _ := json.Marshal(l)
	if got := string(out); !strings.Contains(got, `"groups":[]`) || strings.Contains(got, `"org"`) || strings.Contains(got, "sha256") {
		t.Errorf("JSON %s", got)
	}
}

func TestCreate(t *testing.T) {
	f := newFixture(t, false, testPolicy)
	ctx := context.Background()
	exp := f.now.Add(90 * 24 * time.Hour)
	c, err := f.svc.Create(ctx, f.as(t, "olivia"), eu, NewKey{Name: " Zapier ", Groups: []string{"sales", "sales"}, Environment: "production", ExpiresAt: &exp})
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "Zapier" || c.User != "olivia" || c.CreatedBy != "olivia" || c.Org != "acme-eu" || c.Tenant != "acme" ||
		strings.Join(c.Groups, ",") != "sales" || c.State != StateActive || !c.CreatedAt.Equal(f.now) || !c.ExpiresAt.Equal(exp) {
		t.Errorf("created %+v", c.Key)
	}
	if id, ours, valid := apikey.Check(c.Secret); !ours || !valid || id != c.ID {
		t.Errorf("secret is not a kg_ key of id %s", c.ID)
	}
	text := f.text(t)
	if strings.Contains(text, c.Secret) || !strings.Contains(text, "created_by: olivia") {
		t.Errorf("the entry holds the secret or lacks created_by:\n%s", text)
	}
	p := f.reload(t).Lookup(policy.KindAPIKey, apikey.Digest(c.Secret))
	if p == nil || p.ID != c.ID || p.Org != "acme-eu" || p.User != "olivia" {
		t.Fatalf("the new key does not resolve: %+v", p)
	}
	// The org is full now (3 of 3): the next create is refused, nothing written.
	_, err = f.svc.Create(ctx, f.as(t, "olivia"), eu, NewKey{Name: "one more"})
	wantError(t, err, http.StatusConflict, "limit_reached", `organization "acme-eu" has 3 of 3 active organization-level keys`)
	if f.text(t) != text {
		t.Error("a refused create changed the policy")
	}
	// Tenant-level keys have no limit; a user can be named.
	c, err = f.svc.Create(ctx, f.as(t, "tess"), acme, NewKey{Name: "reports", User: "reports-bot"})
	if err != nil || c.Org != "" || c.User != "reports-bot" || c.CreatedBy != "tess" {
		t.Errorf("tenant-level create %+v, %v", c.Key, err)
	}
	// The operator: no name needed, user defaults to the key's id, any
	// declared group, created_by cli.
	c, err = f.svc.Create(ctx, Actor{}, store.Scope{Tenant: "globex", Org: "globex-main"}, NewKey{Groups: []string{"ops"}})
	if err != nil || c.User != c.ID || c.CreatedBy != OperatorName {
		t.Errorf("operator create %+v, %v", c.Key, err)
	}
}

func TestCreateRefusals(t *testing.T) {
	f := newFixture(t, false, testPolicy)
	past := f.now.Add(-time.Hour)
	long := strings.Repeat("n", MaxNameLen+1)
	tests := []struct {
		name   string
		actor  []string
		scope  store.Scope
		key    NewKey
		status int
		code   string
		msg    string
	}{
		{"no name", []string{"olivia"}, eu, NewKey{Name: "  "}, 400, "invalid_request", "name is required"},
		{"two-line name", []string{"olivia"}, eu, NewKey{Name: "a\nb"}, 400, "invalid_request", "one line"},
		{"long name", []string{"olivia"}, eu, NewKey{Name: long}, 400, "invalid_request", "longer than 100"},
		{"name not UTF-8", []string{"olivia"}, eu, NewKey{Name: "\xff"}, 400, "invalid_request", "UTF-8"},
		{"user with a comma", []string{"olivia"}, eu, NewKey{Name: "x", User: "a,b"}, 400, "invalid_request", "commas"},
		{"environment with a tab", []string{"olivia"}, eu, NewKey{Name: "x", Environment: "prod\tx"}, 400, "invalid_request", "one line"},
		{"expiry in the past", []string{"olivia"}, eu, NewKey{Name: "x", ExpiresAt: &past}, 400, "invalid_request", "not in the future"},
		{"group not assignable", []string{"olivia"}, eu, NewKey{Name: "x", Groups: []string{"sales", "ops"}}, 403, "forbidden", `group "ops" cannot be given`},
		{"group not declared", []string{"olivia"}, eu, NewKey{Name: "x", Groups: []string{"root"}}, 403, "forbidden", `group "root"`},
		{"another org", []string{"olivia"}, us, NewKey{Name: "x"}, 403, "forbidden", "not yours"},
		{"tenant-level by an org admin", []string{"olivia"}, acme, NewKey{Name: "x"}, 403, "forbidden", "tenant-level"},
		{"not an admin", []string{"sam"}, eu, NewKey{Name: "x"}, 403, "forbidden", "key_admin_groups"},
		{"unknown org", []string{"tess"}, store.Scope{Org: "acme-xx"}, NewKey{Name: "x"}, 404, "not_found", "acme-xx"},
	}
	before := f.text(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := f.svc.Create(context.Background(), f.as(t, tt.actor...), tt.scope, tt.key)
			wantError(t, err, tt.status, tt.code, tt.msg)
			if c.Secret != "" {
				t.Error("a refused create returned a secret")
			}
		})
	}
	if f.text(t) != before {
		t.Error("a refused create changed the policy")
	}
}

func TestRotate(t *testing.T) {
	ctx := context.Background()
	t.Run("full org: overlap needs a free slot, 0s retires the old key", func(t *testing.T) {
		f := newFixture(t, false, testPolicy)
		c, err := f.svc.Create(ctx, f.as(t, "olivia"), eu, NewKey{Name: "third"}) // 3 of 3
		if err != nil {
			t.Fatal(err)
		}
		before := f.text(t)
		_, err = f.svc.Rotate(ctx, f.as(t, "olivia"), eu, "kg_eu1", 24*time.Hour)
		wantError(t, err, http.StatusConflict, "limit_reached", "rotate with overlap 0s")
		if f.text(t) != before {
			t.Error("a refused rotation changed the policy")
		}
		succ, err := f.svc.Rotate(ctx, f.as(t, "olivia"), eu, c.ID, 0)
		if err != nil {
			t.Fatal(err)
		}
		if succ.Name != "third" || succ.User != "olivia" || succ.ID == c.ID || succ.CreatedBy != "olivia" {
			t.Errorf("successor %+v", succ.Key)
		}
		snap := f.reload(t)
		if p := snap.Lookup(policy.KindAPIKey, apikey.Digest(c.Secret)); p == nil || !p.ExpiredAt(time.Now().UnixNano()) {
			t.Errorf("old key after rotation with overlap 0: %+v, want expired", p)
		}
		if snap.Lookup(policy.KindAPIKey, apikey.Digest(succ.Secret)) == nil {
			t.Error("successor does not resolve")
		}
	})
	t.Run("free slot: the old key stays for the overlap", func(t *testing.T) {
		f := newFixture(t, false, testPolicy)
		f.now = time.Now().UTC().Truncate(time.Second)
		r, err := f.svc.RotateKey(ctx, f.as(t, "tess"), eu, "kg_eu1", Rotation{Overlap: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		if r.Old.ExpiresAt == nil || !r.Old.ExpiresAt.Equal(f.now.Add(time.Hour)) || r.Old.State != StateActive {
			t.Errorf("old key %+v, want active until now+1h", r.Old)
		}
		if r.Groups[0] != "support" || r.Tenant != "acme" || r.Org != "acme-eu" || r.User != "support-bot" || r.CreatedBy != "tess" {
			t.Errorf("successor %+v lacks the old key's scope", r.Key)
		}
		l, _ := f.svc.List(ctx, f.as(t, "tess"), eu)
		if l.Active != 3 {
			t.Errorf("%d active during the overlap, want 3", l.Active)
		}
	})
	t.Run("refusals", func(t *testing.T) {
		f := newFixture(t, false, testPolicy)
		before := f.text(t)
		_, err := f.svc.Rotate(ctx, f.as(t, "olivia"), eu, "kg_off", 0)
		wantError(t, err, http.StatusConflict, "conflict", "kg_off is disabled")
		_, err = f.svc.Rotate(ctx, f.as(t, "olivia"), eu, "kg_ops", 0)
		wantError(t, err, http.StatusForbidden, "forbidden", `kg_ops carries group "ops"`)
		_, err = f.svc.Rotate(ctx, f.as(t, "olivia"), eu, "kg_admkey", 0) // acme-us's key, asked in acme-eu
		wantError(t, err, http.StatusNotFound, "not_found", `no API key "kg_admkey"`)
		_, err = f.svc.Rotate(ctx, f.as(t, "olivia"), eu, "kg_eu1", -time.Second)
		wantError(t, err, http.StatusBadRequest, "invalid_request", "overlap")
		if f.text(t) != before {
			t.Error("a refused rotation changed the policy")
		}
		// The operator may rotate a key with any groups.
		if _, err := f.svc.Rotate(ctx, Actor{}, eu, "kg_ops", 0); err != nil {
			t.Errorf("operator rotation: %v", err)
		}
	})
}

func TestRevoke(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, false, testPolicy)
	k, err := f.svc.Revoke(ctx, f.as(t, "olivia"), eu, "kg_eu1")
	if err != nil || k.State != StateDisabled || k.ID != "kg_eu1" {
		t.Fatalf("Revoke = %+v, %v", k, err)
	}
	text := f.text(t)
	if !strings.Contains(text, "disabled: true  # revoked 2026-06-01T12:00:00Z by olivia") {
		t.Errorf("no disabled line with the note:\n%s", text)
	}
	if p := f.reload(t).Lookup(policy.KindAPIKey, apikey.Digest("eu1-secret")); p == nil || !p.Disabled {
		t.Errorf("revoked key %+v", p)
	}
	// Again: the same answer, nothing written.
	k, changed, err := f.svc.RevokeKey(ctx, f.as(t, "olivia"), eu, "kg_eu1", "again")
	if err != nil || changed || k.State != StateDisabled || f.text(t) != text {
		t.Errorf("second revoke: %+v changed %v, %v", k, changed, err)
	}
	_, err = f.svc.Revoke(ctx, f.as(t, "olivia"), eu, "kg_tenant")
	wantError(t, err, http.StatusNotFound, "not_found", "kg_tenant")
	_, err = f.svc.Revoke(ctx, f.as(t, "olivia"), eu, "s_olivia")
	wantError(t, err, http.StatusNotFound, "not_found", "s_olivia")
	// A revoked slot is free again.
	if _, err := f.svc.Create(ctx, f.as(t, "olivia"), eu, NewKey{Name: "x"}); err != nil {
		t.Errorf("create after a revoke: %v", err)
	}
}

// With a policy directory, keys go to managed.yaml; keys of the other
// fragments count against the limit but are not changed.
func TestManagedFragment(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, true, testPolicy)
	c, err := f.svc.Create(ctx, f.as(t, "olivia"), eu, NewKey{Name: "managed"})
	if err != nil {
		t.Fatal(err)
	}
	if text := f.text(t); !strings.HasPrefix(text, "version: 1\napi_keys:\n  - id: "+c.ID) {
		t.Errorf("managed.yaml:\n%s", text)
	}
	_, err = f.svc.Create(ctx, f.as(t, "olivia"), eu, NewKey{Name: "fourth"})
	wantError(t, err, http.StatusConflict, "limit_reached", "3 of 3")
	_, err = f.svc.Revoke(ctx, f.as(t, "olivia"), eu, "kg_eu1")
	wantError(t, err, http.StatusConflict, "conflict", "kg_eu1 is defined outside the keys keygate manages")
	l, err := f.svc.List(ctx, f.as(t, "olivia"), eu)
	if err != nil || len(l.Keys) != 5 || l.Active != 3 {
		t.Errorf("listing %+v, %v: want base.yaml's 4 keys and the managed one", l, err)
	}
	if _, err := f.svc.Revoke(ctx, f.as(t, "olivia"), eu, c.ID); err != nil {
		t.Errorf("revoke of the managed key: %v", err)
	}
}

func TestNoPolicy(t *testing.T) {
	svc := &Service{Store: nil, Policy: func() *policy.Snapshot { return nil }}
	if _, err := svc.List(context.Background(), Actor{}, eu); err == nil {
		t.Error("List without a policy succeeded")
	}
}
