package main

// Tests of the tools for people (keys, sessions, policy, check, version)
// through the built binary: exit codes, what goes to stdout and stderr, and
// the policy files they edit. Stable outputs are compared with
// testdata/*.golden after masking what is random (keys, ids, digests, times);
// go test ./cmd/keygate/ -run TestCLI -update rewrites them.

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
)

var (
	update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")
	cliBin string // the keygate binary built by TestMain
)

const testVersion = "v1.2.3-test"

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "keygate-cli-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	cliBin = filepath.Join(dir, "keygate")
	build := exec.Command("go", "build", "-ldflags", "-s -w -X main.version="+testVersion, "-o", cliBin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build keygate: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\n--- stdout\n%s--- stderr\n%s", r.code, r.stdout, r.stderr)
}

// keygate runs the binary in dir with stdin and no KEYGATE_* environment.
func keygate(t *testing.T, dir, stdin string, args ...string) result {
	t.Helper()
	cmd := exec.Command(cliBin, args...)
	cmd.Dir = dir
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYGATE_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("run keygate %s: %v", strings.Join(args, " "), err)
	}
	return r
}

// must runs keygate and fails the test unless it exits with code.
func must(t *testing.T, code int, dir, stdin string, args ...string) result {
	t.Helper()
	r := keygate(t, dir, stdin, args...)
	if r.code != code {
		t.Fatalf("keygate %s: exit %d, want %d\n%s", strings.Join(args, " "), r.code, code, r)
	}
	return r
}

func digest(s string) string { return policy.FormatDigest(apikey.Digest(s)) }

var digestTmpl = regexp.MustCompile(`\{\{digest:([^}]+)\}\}`)

// fixture is testdata/policy.yaml.in with its digests filled in.
func fixture(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("testdata/policy.yaml.in")
	if err != nil {
		t.Fatal(err)
	}
	return digestTmpl.ReplaceAllStringFunc(string(data), func(m string) string {
		return digest(digestTmpl.FindStringSubmatch(m)[1])
	})
}

// policyDir writes the fixture as policy.yaml (mode 0640) in a fresh
// directory and returns the directory.
func policyDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(fixture(t)), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "policy.yaml"), 0o640); err != nil {
		t.Fatal(err)
	}
	return dir
}

// dirNames lists a directory's entries, space-separated.
func dirNames(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	names := make([]string, len(entries))
	for i, e := range entries {
		names[i] = e.Name()
	}
	return strings.Join(names, " ")
}

func readPolicy(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "policy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

var (
	keyRe      = regexp.MustCompile(`\bkg_[0-9A-Za-z]{8}_[0-9A-Za-z]{38}\b`)
	idRe       = regexp.MustCompile(`\bkg_[0-9A-Za-z]{8}\b`)
	digestRe   = regexp.MustCompile(`sha256:[0-9a-f]{64}`)
	shortRe    = regexp.MustCompile(`sha256:[0-9a-f]{8}…`)
	timeRe     = regexp.MustCompile(`\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ`)
	decisionRe = regexp.MustCompile(`kg-[0-9a-f]{12}-[0-9a-z]+`)
	expiresRe  = regexp.MustCompile(`expires in \d+[dhm]`)
)

// mask replaces what differs from run to run: generated keys and ids
// (numbered in order of appearance, so relations stay visible), digests and
// times not in the fixture, decision ids and remaining lifetimes.
func mask(t *testing.T, s string) string {
	fix := fixture(t)
	ids := map[string]string{}
	id := func(v string) string {
		if strings.Contains(fix, v) {
			return v
		}
		if _, ok := ids[v]; !ok {
			ids[v] = fmt.Sprintf("kg_id%06d", len(ids)+1)
		}
		return ids[v]
	}
	s = keyRe.ReplaceAllStringFunc(s, func(k string) string { return id(k[:11]) + "_SECRET" })
	s = idRe.ReplaceAllStringFunc(s, id)
	s = digestRe.ReplaceAllStringFunc(s, func(d string) string {
		if strings.Contains(fix, d) {
			return d
		}
		return "sha256:" + strings.Repeat("x", 64)
	})
	s = shortRe.ReplaceAllStringFunc(s, func(d string) string {
		if strings.Contains(fix, strings.TrimSuffix(d, "…")) {
			return d
		}
		return "sha256:xxxxxxxx…"
	})
	s = timeRe.ReplaceAllStringFunc(s, func(v string) string {
		if strings.Contains(fix, v) {
			return v
		}
		return "TIME"
	})
	s = decisionRe.ReplaceAllString(s, "kg-DECISION-ID")
	return expiresRe.ReplaceAllString(s, "expires in N")
}

// golden compares got with testdata/name.golden (or rewrites it with -update).
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// firstLine is a created key: stdout's first line.
func firstLine(t *testing.T, r result) string {
	t.Helper()
	line, _, _ := strings.Cut(r.stdout, "\n")
	if _, ours, valid := apikey.Check(line); !ours || !valid {
		t.Fatalf("stdout does not start with a keygate key:\n%s", r)
	}
	return line
}

func bearer(key string) string { return "Authorization: Bearer " + key }

func TestCLIVersion(t *testing.T) {
	t.Parallel()
	r := must(t, 0, t.TempDir(), "", "version")
	if r.stdout != "keygate "+testVersion+"\n" || r.stderr != "" {
		t.Errorf("version:\n%s", r)
	}
}

func TestCLIUsage(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// The top-level usage is shared with other commands: check only our lines.
	r := must(t, 2, dir, "")
	for _, want := range []string{"keygate keys create|import|list|revoke|rotate", "keygate sessions create|revoke",
		"keygate policy validate FILE|DIR...", "keygate check --policy FILE --method M --path P", "keygate version"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("usage lacks %q:\n%s", want, r)
		}
	}
	for _, args := range [][]string{
		{"nope"}, {"keys"}, {"keys", "nope"}, {"sessions"}, {"sessions", "nope"}, {"policy"}, {"policy", "nope"},
	} {
		r := must(t, 2, dir, "", args...)
		if !strings.Contains(r.stderr, "usage: keygate") && !strings.Contains(r.stderr, "Usage:") {
			t.Errorf("keygate %s: no usage on stderr:\n%s", strings.Join(args, " "), r)
		}
	}
	for _, args := range [][]string{{"help"}, {"keys", "help"}, {"sessions", "help"}, {"policy", "help"}} {
		if r := must(t, 0, dir, "", args...); !strings.Contains(r.stdout, "keygate") {
			t.Errorf("keygate %s: no usage on stdout:\n%s", strings.Join(args, " "), r)
		}
	}
	if r := must(t, 0, dir, "", "keys", "create", "-h"); !strings.Contains(r.stderr, "-expires") {
		t.Errorf("keys create -h lists no flags:\n%s", r)
	}
}

// Every missing required flag and bad value exits 2 with the usage line.
func TestCLIUsageMistakes(t *testing.T) {
	t.Parallel()
	dir := policyDir(t)
	before := readPolicy(t, dir)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"keys", "create"}, "--tenant is required"},
		{[]string{"keys", "create", "--tenant", "acme", "--expires", "soon"}, `--expires: "soon" is neither a duration`},
		{[]string{"keys", "create", "--tenant", "acme", "--expires", "2020-01-01"}, "--expires: 2020-01-01T00:00:00Z is not in the future"},
		{[]string{"keys", "create", "--tenant", "acme", "extra"}, `unexpected argument "extra"`},
		{[]string{"keys", "import"}, "--tenant is required"},
		{[]string{"keys", "list"}, "--policy is required"},
		{[]string{"keys", "list", "--policy", "policy.yaml", "--format", "xml"}, "--format must be text or json"},
		{[]string{"keys", "revoke", "--policy", "policy.yaml"}, "name exactly one id"},
		{[]string{"keys", "revoke", "kg_eu1"}, "--policy is required"},
		{[]string{"keys", "rotate", "kg_eu1"}, "--policy is required"},
		{[]string{"keys", "rotate", "kg_eu1", "--policy", "policy.yaml", "--overlap", "soon"}, "--overlap: want a duration"},
		{[]string{"sessions", "create", "--tenant", "acme"}, "--user is required"},
		{[]string{"sessions", "create", "--user", "alice"}, "--tenant is required"},
		{[]string{"sessions", "create", "--user", "alice", "--tenant", "acme", "--ttl", "-1h"}, "--ttl:"},
		{[]string{"sessions", "revoke"}, "name exactly one id"},
		{[]string{"policy", "validate"}, "name at least one policy file"},
		{[]string{"check", "--path", "/"}, "--policy is required"},
		{[]string{"check", "--policy", "policy.yaml"}, "--path is required"},
		{[]string{"check", "--policy", "policy.yaml", "--path", "/", "-H", "Bearer secret-value"}, "-H wants 'Name: value'"},
		{[]string{"check", "--policy", "policy.yaml", "--path", "/", "--context", "noequals"}, "--context wants KEY=VALUE"},
		{[]string{"check", "--policy", "policy.yaml", "--path", "/", "--at", "someday"}, "--at:"},
		{[]string{"keys", "create", "--no-such-flag"}, "flag provided but not defined"},
		{[]string{"keys", "create", "--tenant", "acme", "--policy", "policy.yaml", "--kube-namespace", "ns"}, "--policy and --kube-namespace/--kube-selector are exclusive"},
		{[]string{"keys", "revoke", "kg_eu1", "--kube-namespace", "ns"}, "--kube-namespace needs --kube-selector"},
		{[]string{"keys", "rotate", "kg_eu1", "--kube-selector", "a=b"}, "--kube-selector needs --kube-namespace"},
		{[]string{"sessions", "revoke", "s_alice"}, "--policy is required"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := must(t, 2, dir, "", tt.args...)
			if !strings.Contains(r.stderr, tt.want) || !strings.Contains(r.stderr, "usage: keygate ") {
				t.Errorf("stderr lacks %q or the usage line:\n%s", tt.want, r)
			}
			if strings.Contains(r.stderr, "secret-value") {
				t.Error("a -H value was echoed")
			}
			if r.stdout != "" {
				t.Errorf("stdout not empty:\n%s", r)
			}
		})
	}
	golden(t, "create_missing_tenant", must(t, 2, dir, "", "keys", "create", "--org", "acme-eu").String())
	if readPolicy(t, dir) != before {
		t.Error("a usage mistake changed the policy")
	}
}

func TestCLIKeysCreatePrints(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r := must(t, 0, dir, "", "keys", "create", "--tenant", "acme", "--org", "acme-eu", "--groups", "sales, support",
		"--user", "ci", "--name", "CI deploy", "--env", "production", "--expires", "90d")
	key := firstLine(t, r)
	var entries []policy.APIKey
	if err := yaml.Unmarshal([]byte(strings.TrimPrefix(r.stdout, key+"\n")), &entries); err != nil || len(entries) != 1 {
		t.Fatalf("stdout after the key is not one api_keys entry: %v\n%s", err, r)
	}
	e := entries[0]
	id, _, _ := apikey.Check(key)
	if e.ID != id || e.Hash != digest(key) || e.Org != "acme-eu" || strings.Join(e.Groups, ",") != "sales,support" {
		t.Errorf("entry %+v does not describe key %s", e, id)
	}
	if left := time.Until(e.ExpiresAt.Time); left < 89*24*time.Hour || left > 90*24*time.Hour {
		t.Errorf("expires in %v, want 90 days", left)
	}
	if strings.Count(r.stdout+r.stderr, key) != 1 {
		t.Error("the key is printed more than once")
	}
	golden(t, "create_print", mask(t, r.String()))
}

func TestCLIKeysCreatePolicy(t *testing.T) {
	t.Parallel()
	dir := policyDir(t)
	before, _ := os.Stat(filepath.Join(dir, "policy.yaml"))
	r := must(t, 0, dir, "", "keys", "create", "--tenant", "acme", "--org", "acme-us", "--groups", "sales",
		"--user", "ci", "--name", "CI deploy", "--expires", "2099-06-30T00:00:00Z", "--policy", "policy.yaml")
	key := firstLine(t, r)
	if r.stdout != key+"\n" {
		t.Errorf("with --policy stdout must be the key alone:\n%s", r)
	}
	golden(t, "create_policy", mask(t, r.String()))
	golden(t, "create_policy.yaml", mask(t, readPolicy(t, dir)))
	after, _ := os.Stat(filepath.Join(dir, "policy.yaml"))
	if after.Mode().Perm() != 0o640 || os.SameFile(before, after) {
		t.Errorf("mode %v (want 0640), replaced by rename: %v", after.Mode().Perm(), !os.SameFile(before, after))
	}
	must(t, 0, dir, "", "check", "--policy", "policy.yaml", "--path", "/orgs/acme-us/sales/q1", "-H", bearer(key))
	must(t, 0, dir, "", "policy", "validate", "policy.yaml")
}

func TestCLIKeysCreateRefusals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown tenant", []string{"--tenant", "initech"}, `tenant "initech" is not declared under tenants`},
		{"unknown org", []string{"--tenant", "acme", "--org", "acme-xx"}, `organization "acme-xx" is not declared under tenants`},
		{"org of another tenant", []string{"--tenant", "acme", "--org", "globex-main"}, `organization "globex-main" belongs to tenant "globex", not "acme"`},
		{"unknown group", []string{"--tenant", "acme", "--groups", "sales,admins"}, `group "admins" is not declared under groups`},
		{"org at max_org_keys", []string{"--tenant", "acme", "--org", "acme-eu"}, `organization "acme-eu" has 2 of 2 active organization-level keys (max_org_keys); revoke one to make another`},
		{"no policy file", []string{"--tenant", "acme", "--policy", "missing.yaml"}, "no such file or directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := policyDir(t)
			before := readPolicy(t, dir)
			args := append([]string{"keys", "create", "--policy", "policy.yaml"}, tt.args...)
			r := must(t, 1, dir, "", args...)
			if !strings.Contains(r.stderr, tt.want) || r.stdout != "" {
				t.Errorf("want stderr containing %q and no key on stdout:\n%s", tt.want, r)
			}
			if readPolicy(t, dir) != before {
				t.Error("the policy changed")
			}
			if names := dirNames(t, dir); names != "policy.yaml" && names != ".keygate.lock policy.yaml" {
				t.Errorf("the policy directory holds %s, want policy.yaml (and the writers' lock)", names)
			}
			if tt.name == "org at max_org_keys" {
				golden(t, "create_max_org_keys", mask(t, r.String()))
			}
		})
	}
}

func TestCLIKeysImport(t *testing.T) {
	t.Parallel()
	dir := policyDir(t)
	legacy, err := apikey.New("kg_legacy")
	// The last character changed, whatever it was (the key is random).
	badChecksum := legacy[:len(legacy)-1] + "X"
	if strings.HasSuffix(legacy, "X") {
		badChecksum = legacy[:len(legacy)-1] + "Y"
	}
	if err != nil {
		t.Fatal(err)
	}
	stdin := "# keys from the old gateway\nold-system-key-1\n\n   old-system-key-2  \r\n" + legacy + "\n"
	r := must(t, 0, dir, stdin, "keys", "import", "--tenant", "globex", "--user", "legacy-bot", "--name", "imported")
	for _, secret := range []string{"old-system-key-1", "old-system-key-2", legacy} {
		if strings.Contains(r.stdout+r.stderr, secret) {
			t.Errorf("import echoed a key:\n%s", r)
		}
		if !strings.Contains(r.stdout, digest(secret)) {
			t.Errorf("no entry with the digest of input %q:\n%s", secret[:5], r)
		}
	}
	if !strings.Contains(r.stdout, "- id: kg_legacy\n") {
		t.Errorf("a keygate key must keep the id it carries:\n%s", r)
	}
	golden(t, "import_print", mask(t, strings.ReplaceAll(r.String(), digest(legacy), "sha256:LEGACY")))

	// Into the policy: the ids come out in input order, and the keys work.
	r = must(t, 0, dir, stdin, "keys", "import", "--tenant", "acme", "--groups", "sales", "--policy", "policy.yaml")
	if ids := strings.Fields(r.stdout); len(ids) != 3 || ids[2] != "kg_legacy" {
		t.Errorf("stdout should list 3 ids, the last kg_legacy:\n%s", r)
	}
	for _, k := range []string{"old-system-key-2", legacy} {
		must(t, 0, dir, "", "check", "--policy", "policy.yaml", "--path", "/orgs/acme-us/sales/x", "-H", bearer(k))
	}

	refusals := []struct{ name, stdin, want string }{
		{"bad checksum", badChecksum + "\n", "standard input line 1: a kg_ key whose checksum is wrong"},
		{"duplicate", "a-key\nb-key\na-key\n", "standard input line 3: the same key as line 1"},
		{"nothing", "\n# only a comment\n", "no keys on standard input"},
		{"already listed", "tenant-key-secret\n", "duplicate credential digest"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			dir := policyDir(t)
			r := must(t, 1, dir, tt.stdin, "keys", "import", "--tenant", "acme", "--policy", "policy.yaml")
			if !strings.Contains(r.stderr, tt.want) || r.stdout != "" {
				t.Errorf("want %q:\n%s", tt.want, r)
			}
			if strings.Contains(r.stderr, "a-key") || strings.Contains(r.stderr, legacy[:20]) {
				t.Errorf("a refused key was echoed:\n%s", r)
			}
			if readPolicy(t, dir) != fixture(t) {
				t.Error("the policy changed")
			}
		})
	}
}

func TestCLIKeysList(t *testing.T) {
	t.Parallel()
	dir := policyDir(t)
	r := must(t, 0, dir, "", "keys", "list", "--policy", "policy.yaml")
	if digestRe.MatchString(r.stdout) {
		t.Errorf("list shows a whole digest:\n%s", r)
	}
	golden(t, "list", mask(t, r.String()))

	r = must(t, 0, dir, "", "keys", "list", "--policy", "policy.yaml", "--format", "json")
	var rows []listed
	if err := json.Unmarshal([]byte(r.stdout), &rows); err != nil {
		t.Fatalf("%v:\n%s", err, r)
	}
	states := map[string]string{}
	for _, row := range rows {
		states[row.ID] = row.State
		if len(row.Hash) > len("sha256:12345678…") {
			t.Errorf("%s: hash %q is more than a prefix", row.ID, row.Hash)
		}
	}
	if states["kg_tenant"] != "active" || states["kg_old"] != "expired" || states["kg_gone"] != "disabled" ||
		!strings.HasPrefix(states["kg_eu2"], "expires in ") {
		t.Errorf("states: %v", states)
	}

	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "p.yaml"), []byte("version: 1\nfoo: bar\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := must(t, 1, bad, "", "keys", "list", "--policy", "p.yaml"); !strings.Contains(r.stderr, `p.yaml:2: unknown field "foo"`) {
		t.Errorf("list of an invalid policy:\n%s", r)
	}
}

func TestCLIKeysRevoke(t *testing.T) {
	t.Parallel()
	dir := policyDir(t)
	check := func(code int, key string) result {
		t.Helper()
		return must(t, code, dir, "", "check", "--policy", "policy.yaml", "--path", "/orgs/acme-eu/sales/q1", "-H", bearer(key))
	}
	check(0, "eu-key-1")
	r := must(t, 0, dir, "", "keys", "revoke", "kg_eu1", "--policy", "policy.yaml", "--note", "left the company")
	golden(t, "revoke", mask(t, r.String()))
	text := readPolicy(t, dir)
	if !regexp.MustCompile(`(?m)^    groups: \[support\]\n    disabled: true  # revoked \S+Z: left the company\n  - id: kg_eu2$`).MatchString(text) {
		t.Errorf("disabled: true not added at the end of kg_eu1's entry:\n%s", text)
	}
	if strings.Count(text, "\n") != strings.Count(fixture(t), "\n")+1 {
		t.Error("revoke changed more than one line")
	}
	if r := check(1, "eu-key-1"); !strings.Contains(r.stdout, "reason:    disabled_credential") {
		t.Errorf("revoked key:\n%s", r)
	}
	if r := must(t, 0, dir, "", "keys", "revoke", "kg_eu1", "--policy", "policy.yaml"); !strings.Contains(r.stderr, "already disabled") {
		t.Errorf("second revoke:\n%s", r)
	}
	if readPolicy(t, dir) != text {
		t.Error("a second revoke changed the policy")
	}

	r = must(t, 1, dir, "", "keys", "revoke", "kg_nope", "--policy", "policy.yaml")
	golden(t, "revoke_unknown", mask(t, r.String()))
	r = must(t, 1, dir, "", "sessions", "revoke", "kg_eu2", "--policy", "policy.yaml")
	if !strings.Contains(r.stderr, "kg_eu2 is an API key, not a session") {
		t.Errorf("sessions revoke of a key:\n%s", r)
	}
	if readPolicy(t, dir) != text {
		t.Error("a refused revoke changed the policy")
	}
	// The revoked key no longer counts toward max_org_keys.
	must(t, 0, dir, "", "keys", "create", "--tenant", "acme", "--org", "acme-eu", "--policy", "policy.yaml")
}

// A key's life: create, check, list, revoke, check.
func TestCLIKeyLifecycle(t *testing.T) {
	t.Parallel()
	dir := policyDir(t)
	key := firstLine(t, must(t, 0, dir, "", "keys", "create", "--tenant", "acme", "--groups", "sales", "--user", "reports",
		"--name", "Reports", "--expires", "30d", "--policy", "policy.yaml"))
	id, _, _ := apikey.Check(key)
	r := must(t, 0, dir, "", "check", "--policy", "policy.yaml", "--path", "/orgs/acme-us/sales/q1", "-H", bearer(key))
	if !strings.Contains(r.stdout, "key id:     "+id) {
		t.Errorf("check:\n%s", r)
	}
	if r := must(t, 0, dir, "", "keys", "list", "--policy", "policy.yaml"); !regexp.MustCompile(id + `\s+Reports .* expires in 30d`).MatchString(r.stdout) {
		t.Errorf("list:\n%s", r)
	}
	must(t, 0, dir, "", "keys", "revoke", id, "--policy", "policy.yaml")
	r = must(t, 1, dir, "", "check", "--policy", "policy.yaml", "--path", "/orgs/acme-us/sales/q1", "-H", bearer(key))
	if !strings.Contains(r.stdout, "decision:  DENY (HTTP 401, gRPC UNAUTHENTICATED)") || !strings.Contains(r.stdout, "disabled_credential") {
		t.Errorf("revoked key:\n%s", r)
	}
}

func TestCLIKeysRotate(t *testing.T) {
	t.Parallel()
	dir := policyDir(t)
	old := firstLine(t, must(t, 0, dir, "", "keys", "create", "--tenant", "acme", "--groups", "sales", "--user", "reports",
		"--env", "staging", "--expires", "30d", "--policy", "policy.yaml"))
	oldID, _, _ := apikey.Check(old)
	r := must(t, 0, dir, "", "keys", "rotate", oldID, "--policy", "policy.yaml", "--overlap", "1h")
	succ := firstLine(t, r)
	if r.stdout != succ+"\n" {
		t.Errorf("rotate stdout must be the new key alone:\n%s", r)
	}
	golden(t, "rotate", mask(t, r.String()))
	decide := func(code int, key, at string) result {
		t.Helper()
		args := []string{"check", "--policy", "policy.yaml", "--path", "/orgs/acme-eu/sales/q1", "-H", bearer(key)}
		if at != "" {
			args = append(args, "--at", at)
		}
		return must(t, code, dir, "", args...)
	}
	decide(0, old, "")    // the old key still works during the overlap
	decide(0, succ, "")   // the new one works now
	decide(0, old, "50m") // and the old one until the overlap ends
	if r := decide(1, old, "61m"); !strings.Contains(r.stdout, "expired_credential") {
		t.Errorf("old key after the overlap:\n%s", r)
	}
	decide(0, succ, "61m")
	decide(0, succ, "29d")
	decide(1, succ, "31d") // the successor keeps the old key's 30-day lifetime

	f, err := policy.Parse("policy.yaml", []byte(readPolicy(t, dir)))
	if err != nil {
		t.Fatal(err)
	}
	succID, _, _ := apikey.Check(succ)
	for _, k := range f.Doc.APIKeys {
		if k.ID == succID && (k.User != "reports" || k.Environment != "staging" || strings.Join(k.Groups, ",") != "sales" || k.Tenant != "acme") {
			t.Errorf("successor %+v does not have the old key's scope", k)
		}
	}

	for name, tt := range map[string]struct {
		id, want string
	}{
		"unknown id":        {"kg_nope", `no api_keys or sessions entry has id "kg_nope"`},
		"disabled key":      {"kg_gone", "kg_gone is disabled; make a new key"},
		"org at max":        {"kg_eu1", `organization "acme-eu" has 2 of 2 active organization-level keys (max_org_keys): the successor needs a free slot while kg_eu1 stays valid for the overlap; revoke a key first, or rotate with overlap 0s`},
		"a session, no key": {"s_alice", `no api_keys or sessions entry has id "s_alice"`},
	} {
		t.Run(name, func(t *testing.T) {
			before := readPolicy(t, dir)
			r := must(t, 1, dir, "", "keys", "rotate", tt.id, "--policy", "policy.yaml")
			if !strings.Contains(r.stderr, tt.want) || r.stdout != "" {
				t.Errorf("want %q:\n%s", tt.want, r)
			}
			if readPolicy(t, dir) != before {
				t.Error("the policy changed")
			}
		})
	}
}

// With --policy DIR, keys and sessions go to the directory's managed.yaml
// (created on the first write); the other fragments are only read.
func TestCLIPolicyDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	frags := filepath.Join(dir, "policy.d")
	if err := os.Mkdir(frags, 0o755); err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(frags, "base.yaml")
	if err := os.WriteFile(base, []byte(fixture(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	managed := func() string {
		t.Helper()
		data, err := os.ReadFile(filepath.Join(frags, "managed.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	r := must(t, 0, dir, "", "keys", "create", "--tenant", "acme", "--org", "acme-us", "--groups", "sales", "--name", "CI", "--policy", "policy.d")
	key := firstLine(t, r)
	id, _, _ := apikey.Check(key)
	if !strings.Contains(r.stderr, "Added API key "+id+" to policy.d/managed.yaml: tenant acme, organization acme-us") {
		t.Errorf("create into a directory:\n%s", r)
	}
	if text := managed(); !strings.HasPrefix(text, "version: 1\napi_keys:\n  - id: "+id+"\n") || !strings.Contains(text, "created_by: cli") {
		t.Errorf("managed.yaml:\n%s", text)
	}
	if data, _ := os.ReadFile(base); string(data) != fixture(t) {
		t.Error("base.yaml changed")
	}
	must(t, 0, dir, "", "check", "--policy", "policy.d", "--path", "/orgs/acme-us/sales/q1", "-H", bearer(key))

	succ := firstLine(t, must(t, 0, dir, "", "keys", "rotate", id, "--policy", "policy.d", "--overlap", "0s"))
	must(t, 1, dir, "", "check", "--policy", "policy.d", "--path", "/orgs/acme-us/sales/q1", "-H", bearer(key))
	must(t, 0, dir, "", "check", "--policy", "policy.d", "--path", "/orgs/acme-us/sales/q1", "-H", bearer(succ))
	succID, _, _ := apikey.Check(succ)
	if r := must(t, 0, dir, "", "keys", "revoke", succID, "--policy", "policy.d"); !strings.Contains(r.stderr, "Revoked "+succID+" in policy.d/managed.yaml") {
		t.Errorf("revoke in a directory:\n%s", r)
	}
	must(t, 1, dir, "", "check", "--policy", "policy.d", "--path", "/orgs/acme-us/sales/q1", "-H", bearer(succ))

	// A key of another fragment is not the managed fragment's to change.
	r = must(t, 1, dir, "", "keys", "revoke", "kg_eu1", "--policy", "policy.d")
	if !strings.Contains(r.stderr, "kg_eu1 is defined outside the keys keygate manages") {
		t.Errorf("revoke of base.yaml's key:\n%s", r)
	}
	tok := firstLine(t, must(t, 0, dir, "", "sessions", "create", "--user", "bob", "--tenant", "acme", "--policy", "policy.d"))
	tokID, _, _ := apikey.Check(tok)
	must(t, 0, dir, "", "sessions", "revoke", tokID, "--policy", "policy.d")
	if text := managed(); !strings.Contains(text, "- id: "+tokID) || strings.Count(text, "disabled: true") != 2 {
		t.Errorf("managed.yaml after the session:\n%s", text)
	}
	if r := must(t, 0, dir, "", "keys", "list", "--policy", "policy.d"); !strings.Contains(r.stderr, "7 API keys in policy.d") {
		t.Errorf("list of the directory:\n%s", r)
	}
	must(t, 0, dir, "", "policy", "validate", "policy.d")
	if names := dirNames(t, frags); names != ".keygate.lock base.yaml managed.yaml" {
		t.Errorf("policy.d holds %s", names)
	}
}

// Creates in separate processes at once take exactly the organization's
// free slots: the lock makes each see the others' keys, and the rest are
// refused with the limit.
func TestCLIKeysLimitAcrossProcesses(t *testing.T) {
	t.Parallel()
	dir := policyDir(t) // acme-us: max_org_keys 2, no active key
	const procs, free = 10, 2
	results := make([]result, procs)
	done := make(chan int)
	for i := range procs {
		go func() {
			results[i] = keygate(t, dir, "", "keys", "create", "--tenant", "acme", "--org", "acme-us", "--groups", "sales", "--policy", "policy.yaml")
			done <- i
		}()
	}
	for range procs {
		<-done
	}
	var made []string
	for _, r := range results {
		switch {
		case r.code == 0:
			made = append(made, firstLine(t, r))
		case r.code != 1 || !strings.Contains(r.stderr, `organization "acme-us" has 2 of 2 active organization-level keys`) || r.stdout != "":
			t.Errorf("a refused create:\n%s", r)
		}
	}
	t.Logf("%d concurrent keygate keys create processes, %d free slots: %d created", procs, free, len(made))
	if len(made) != free {
		t.Fatalf("%d keys created, want %d", len(made), free)
	}
	must(t, 0, dir, "", "policy", "validate", "policy.yaml")
	for _, key := range made {
		must(t, 0, dir, "", "check", "--policy", "policy.yaml", "--path", "/orgs/acme-us/sales/q1", "-H", bearer(key))
	}
}

func TestCLISessions(t *testing.T) {
	t.Parallel()
	dir := policyDir(t)
	r := must(t, 0, dir, "", "sessions", "create", "--user", "bob", "--tenant", "acme", "--groups", "sales", "--ttl", "8h")
	tok := firstLine(t, r)
	var entries []policy.Session
	if err := yaml.Unmarshal([]byte(strings.TrimPrefix(r.stdout, tok+"\n")), &entries); err != nil || len(entries) != 1 || entries[0].Hash != digest(tok) {
		t.Fatalf("stdout after the token is not its sessions entry: %v\n%s", err, r)
	}
	if left := time.Until(entries[0].ExpiresAt.Time); left < 7*time.Hour || left > 8*time.Hour {
		t.Errorf("session expires in %v, want 8h", left)
	}
	golden(t, "session_print", mask(t, r.String()))

	r = must(t, 0, dir, "", "sessions", "create", "--user", "bob", "--tenant", "acme", "--org", "acme-us", "--groups", "sales", "--policy", "policy.yaml")
	tok = firstLine(t, r)
	id, _, _ := apikey.Check(tok)
	r = must(t, 0, dir, "", "check", "--policy", "policy.yaml", "--path", "/profile", "-H", "Session: "+tok)
	if !strings.Contains(r.stdout, "session id: "+id) || !strings.Contains(r.stdout, "user:       bob") || strings.Contains(r.stdout, tok) {
		t.Errorf("check with the session:\n%s", r)
	}
	must(t, 1, dir, "", "check", "--policy", "policy.yaml", "--path", "/profile", "-H", "Session: "+tok, "--at", "9h")
	must(t, 0, dir, "", "sessions", "revoke", id, "--policy", "policy.yaml")
	must(t, 1, dir, "", "check", "--policy", "policy.yaml", "--path", "/profile", "-H", "Session: "+tok)

	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--tenant", "initech"}, `tenant "initech" is not declared`},
		{[]string{"--tenant", "acme", "--groups", "admins"}, `group "admins" is not declared`},
		{[]string{"--tenant", "acme", "--org", "globex-main"}, `belongs to tenant "globex"`},
	} {
		before := readPolicy(t, dir)
		r := must(t, 1, dir, "", append([]string{"sessions", "create", "--user", "x", "--policy", "policy.yaml"}, tt.args...)...)
		if !strings.Contains(r.stderr, tt.want) || r.stdout != "" || readPolicy(t, dir) != before {
			t.Errorf("want %q and no change:\n%s", tt.want, r)
		}
	}
}

func TestCLIPolicyValidate(t *testing.T) {
	t.Parallel()
	dir := policyDir(t)
	for _, f := range []string{"broken.yaml", "unknown_field.yaml"} {
		data, err := os.ReadFile(filepath.Join("testdata", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	frags := filepath.Join(dir, "fragments")
	if err := os.Mkdir(frags, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(frags, "a.yaml"), []byte(fixture(t)), 0o644); err != nil {
		t.Fatal(err)
	}

	r := must(t, 0, dir, "", "policy", "validate", "policy.yaml", "fragments")
	if r.stdout != "" {
		t.Errorf("valid policies print nothing on stdout:\n%s", r)
	}
	golden(t, "validate_ok", r.String())
	golden(t, "validate_broken", must(t, 1, dir, "", "policy", "validate", "broken.yaml").String())
	golden(t, "validate_many", must(t, 1, dir, "", "policy", "validate", "policy.yaml", "broken.yaml", "unknown_field.yaml", "missing.yaml").String())
	r = must(t, 1, dir, "", "policy", "validate", "--format", "json", "broken.yaml", "policy.yaml")
	var got []validated
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
		t.Fatalf("%v:\n%s", err, r)
	}
	if len(got) != 2 || got[0].OK || !got[1].OK || len(got[0].Errors) != 2 || got[0].Errors[0].Line != 9 {
		t.Errorf("json: %+v", got)
	}
	golden(t, "validate_json", r.String())
}

// Every shipped example is valid.
func TestCLIValidateExamples(t *testing.T) {
	t.Parallel()
	must(t, 0, ".", "", "policy", "validate", "../../examples")
}

func TestCLICheck(t *testing.T) {
	t.Parallel()
	dir := policyDir(t)
	tests := []struct {
		name string
		code int
		args []string
	}{
		{"allow", 0, []string{"--method", "get", "--path", "/orgs/acme-eu/sales/q1?x=1", "-H", bearer("tenant-key-secret"),
			"-H", "X-Keygate-User: mallory", "-H", "x-keygate-org: spoofed", "-H", "Host: api.example.com:8443"}},
		{"allow_anonymous", 0, []string{"--path", "/healthz"}},
		{"allow_key_and_session", 0, []string{"--path", "/profile", "-H", "x-api-key: eu-key-2", "-H", "session: alice-session"}},
		{"deny_missing", 1, []string{"--path", "/whoami"}},
		{"deny_unknown_key", 1, []string{"--path", "/whoami", "-H", bearer("kg_AAAAAAAA_" + strings.Repeat("b", 38))}},
		{"deny_org", 1, []string{"--path", "/orgs/acme-us/sales/q1", "-H", bearer("eu-key-1")}},
		{"deny_bad_path", 1, []string{"--path", "/orgs/../../etc/passwd", "-H", bearer("tenant-key-secret")}},
		{"deny_no_match", 1, []string{"--method", "DELETE", "--path", "/nowhere", "-H", "x-request-id: req-42"}},
		{"context_endpoint", 0, []string{"--path", "/anything", "--context", "keygate_endpoint=whoami", "-H", bearer("eu-key-2")}},
		{"context_unknown_endpoint", 1, []string{"--path", "/anything", "--context", "keygate_endpoint=nope"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := must(t, tt.code, dir, "", append([]string{"check", "--policy", "policy.yaml"}, tt.args...)...)
			golden(t, "check_"+tt.name, mask(t, r.String()))
		})
	}
	r := must(t, 0, dir, "", "check", "--policy", "policy.yaml", "--path", "/orgs/acme-eu/sales/q1", "-H", bearer("tenant-key-secret"), "--format", "json")
	golden(t, "check_allow_json", r.String())
	r = must(t, 1, dir, "", "check", "--policy", "policy.yaml", "--path", "/whoami", "-H", "x-request-id: req-7", "--format", "json")
	golden(t, "check_deny_json", r.String())
	var res checkResult
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || res.Result != "DENY" || res.HTTPStatus != 401 {
		t.Errorf("json denial: %v %+v", err, res)
	}

	// The decision does not depend on where the policy comes from: a
	// directory of fragments decides the same.
	frags := filepath.Join(dir, "frags")
	if err := os.Mkdir(frags, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(frags, "p.yaml"), []byte(fixture(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, 0, dir, "", "check", "--policy", "frags", "--path", "/whoami", "-H", bearer("tenant-key-secret"))

	// An invalid or missing policy: exit 3, not a decision.
	if r := must(t, 3, ".", "", "check", "--policy", "testdata/broken.yaml", "--path", "/"); !strings.Contains(r.stderr, "testdata/broken.yaml:9: endpoints[0].groups[0]") {
		t.Errorf("invalid policy:\n%s", r)
	}
	must(t, 3, dir, "", "check", "--policy", "missing.yaml", "--path", "/")
}

// No credential given to check is ever printed, whatever the format.
func TestCLICheckMasksCredentials(t *testing.T) {
	t.Parallel()
	dir := policyDir(t)
	secrets := []string{"tenant-key-secret", "alice-session", "not-a-real-key-value", "cookie-secret"}
	for _, format := range []string{"text", "json"} {
		for _, path := range []string{"/orgs/acme-eu/sales/q1", "/whoami", "/nowhere"} {
			r := keygate(t, dir, "", "check", "--policy", "policy.yaml", "--path", path, "--format", format,
				"-H", bearer("tenant-key-secret"), "-H", "Session: alice-session", "-H", "X-Api-Key: not-a-real-key-value",
				"-H", "Cookie: sid=cookie-secret", "-H", "Proxy-Authorization: Basic not-a-real-key-value")
			for _, s := range secrets {
				if strings.Contains(r.stdout+r.stderr, s) {
					t.Errorf("%s %s: output shows %q:\n%s", format, path, s, r)
				}
			}
		}
	}
}

// policy validate names the line a syntax error is on, in YAML and JSON.
func TestCLIValidateSyntaxLines(t *testing.T) {
	t.Parallel()
	const bad = "../../internal/policy/testdata/bad/"
	for file, want := range map[string]string{
		"syntax_indent.bad.yaml":         bad + "syntax_indent.bad.yaml:17: did not find expected key",
		"syntax_unclosed_quote.bad.yaml": bad + "syntax_unclosed_quote.bad.yaml:5: quoted value is not closed on this line",
		"syntax_trailing_comma.bad.json": bad + "syntax_trailing_comma.bad.json:5: groups: invalid character ','",
	} {
		if r := must(t, 1, ".", "", "policy", "validate", bad+file); !strings.Contains(r.String(), want) {
			t.Errorf("%s: want %q in:\n%s", file, want, r)
		}
	}
}
