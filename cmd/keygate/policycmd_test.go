package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIPolicyValidateUnreadableFragment: validate DIR fails when a
// fragment cannot be read, naming each one and why, as keygate serve
// refuses such a directory (the other fragments alone could open what the
// missing one protects).
func TestCLIPolicyValidateUnreadableFragment(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	frags := filepath.Join(dir, "frags")
	if err := os.MkdirAll(filepath.Join(frags, "20-sub.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(frags, "00-policy.yaml"), []byte(fixture(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../gone/admin.yaml", filepath.Join(frags, "10-admin.yaml")); err != nil {
		t.Fatal(err)
	}

	r := must(t, 1, dir, "", "policy", "validate", "frags")
	want := "frags/10-admin.yaml: cannot read: dangling symlink (its target \"../gone/admin.yaml\" does not exist)\n" +
		"frags/20-sub.yaml: cannot read: a directory, not a regular file\n"
	if r.stdout != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
	}
	if !strings.Contains(r.stderr, "keygate: frags is not a valid policy") || strings.Contains(r.stderr, ": ok") {
		t.Errorf("stderr:\n%s", r.stderr)
	}

	r = must(t, 1, dir, "", "policy", "validate", "--format", "json", "frags")
	var got []validated
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v:\n%s", err, r)
	}
	if len(got) != 1 || got[0].OK || len(got[0].Errors) != 2 || got[0].Errors[0].File != "frags/10-admin.yaml" {
		t.Errorf("json: %+v", got)
	}
}
