package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
)

// newRawKey makes a keygate key that no policy lists.
func newRawKey(t *testing.T) string {
	t.Helper()
	id, err := apikey.NewID()
	if err != nil {
		t.Fatal(err)
	}
	key, err := apikey.New(id)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// A key pasted into a policy is refused without being printed, and a long
// value is quoted only in part; the message still says file:line and what
// is wrong.
func TestCLIValidateHidesPastedSecrets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key := newRawKey(t)
	foreign := "sk_live_" + strings.Repeat("4eC39HqLyjWDarjtT1zdp7dc", 2) // not keygate's: truncated, not recognized
	policies := map[string]string{
		"expires.yaml": strings.Replace(fixture(t), "expires_at: 2020-01-01T00:00:00Z", "expires_at: "+key, 1),
		"org.yaml":     strings.Replace(fixture(t), "    org: acme-us\n    user: gone-bot", "    org: "+foreign+"\n    user: gone-bot", 1),
	}
	lineOf := func(file, sub string) string {
		for i, l := range strings.Split(policies[file], "\n") {
			if strings.Contains(l, sub) {
				return fmt.Sprintf("%s:%d: ", file, i+1)
			}
		}
		t.Fatalf("%q not in %s", sub, file)
		return ""
	}
	for name, text := range policies {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		file   string
		secret []string
		want   []string
	}{
		{"expires.yaml", []string{key, key[len(key)-38:]}, []string{
			lineOf("expires.yaml", "expires_at: kg_") + `"` + key[:12] + `"… (50 bytes) is not an RFC 3339 time`}},
		{"org.yaml", []string{foreign, foreign[12:]}, []string{
			lineOf("org.yaml", "org: sk_live") + "api_keys[4].org: organization ",
			fmt.Sprintf("… (%d bytes) is not declared under tenants", len(foreign))}},
	}
	for _, tt := range tests {
		for _, args := range [][]string{
			{"policy", "validate", tt.file},
			{"policy", "validate", "--format", "json", tt.file},
			{"check", "--policy", tt.file, "--path", "/whoami"},
		} {
			r := keygate(t, dir, "", args...)
			if r.code == 0 {
				t.Errorf("keygate %s: exit 0 for an invalid policy", strings.Join(args, " "))
			}
			for _, secret := range tt.secret {
				if strings.Contains(r.stdout+r.stderr, secret) {
					t.Errorf("keygate %s prints %q:\n%s", strings.Join(args, " "), secret, r)
				}
			}
			out := r.stdout + r.stderr
			if args[1] == "validate" && args[2] == "--format" {
				var got []validated
				if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || len(got) != 1 || len(got[0].Errors) == 0 {
					t.Fatalf("json: %v\n%s", err, r)
				}
				e := got[0].Errors[0]
				out = (&policy.Error{File: e.File, Line: e.Line, Path: e.Path, Msg: e.Message}).Error()
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("keygate %s does not say %q:\n%s", strings.Join(args, " "), w, r)
				}
			}
		}
	}
}

// check echoes the request it decided without the query string's values
// and without the value of a header it does not know; keys anywhere in what
// it prints are redacted to their public id.
func TestCLICheckHidesRequestValues(t *testing.T) {
	t.Parallel()
	dir := policyDir(t)
	key := newRawKey(t)
	id, _, _ := apikey.Check(key)
	custom := "opaque-session-value-1234567890"
	for _, format := range []string{"text", "json"} {
		r := keygate(t, dir, "", "check", "--policy", "policy.yaml", "--format", format,
			"--path", "/orgs/acme-eu/sales/q1?api_key="+key+"&token=hunter2&page=2",
			"-H", bearer("tenant-key-secret"), "-H", "X-Custom-Auth: "+custom, "-H", "X-Request-Id: req-1",
			"-H", "X-Trace: "+key)
		if r.code != 0 {
			t.Fatalf("%s: exit %d, want 0 (allowed)\n%s", format, r.code, r)
		}
		out := r.stdout + r.stderr
		for _, secret := range []string{key, "hunter2", custom} {
			if strings.Contains(out, secret) {
				t.Errorf("%s: output shows %q:\n%s", format, secret, r)
			}
		}
		wants := []string{"/orgs/acme-eu/sales/q1?api_key=***&token=***&page=***", "req-1", fmt.Sprintf("(%d bytes, not shown)", len(custom))}
		for _, w := range wants {
			if !strings.Contains(out, w) {
				t.Errorf("%s: output does not show %q:\n%s", format, w, r)
			}
		}
		if strings.Contains(out, id+"_") {
			t.Errorf("%s: an unknown header's key shows part of itself:\n%s", format, r)
		}
	}
}

// The one-line error keygate prints never carries a key, whatever put it
// there.
func TestCLIErrorLineRedactsKeys(t *testing.T) {
	t.Parallel()
	key := newRawKey(t)
	id, _, _ := apikey.Check(key)
	r := keygate(t, t.TempDir(), "", "check", "--policy", key+".yaml", "--path", "/")
	if r.code != checkNoDecision {
		t.Fatalf("exit %d, want %d\n%s", r.code, checkNoDecision, r)
	}
	if strings.Contains(r.stdout+r.stderr, key) || !strings.Contains(r.stderr, id+"_***") {
		t.Errorf("the error line must name the key by its id only:\n%s", r)
	}
}
