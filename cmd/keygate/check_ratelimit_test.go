package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLICheckRateLimits: keygate check names every limit an allowed
// request would spend from and whose budget it counts, in text and JSON;
// a denied request spends none, so none is shown.
func TestCLICheckRateLimits(t *testing.T) {
	dir := t.TempDir()
	doc := fmt.Sprintf(`version: 1
groups: [{name: ops}]
tenants: [{id: acme}]
rate_limits:
  - {name: standard, requests: 100, per: 1m}
  - {name: search, requests: 10, per: 1s}
endpoints:
  - {name: search, match: {path: /search}, rate_limit: {name: search, by: user}}
  - {name: ops, match: {path: /ops}, groups: [ops]}
api_keys:
  - {id: kg_demo, hash: %q, tenant: acme, user: bot, rate_limit: standard}
`, digest("check-rl-key"))
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	text := must(t, 0, dir, "", "check", "--policy", "p.yaml", "--path", "/search", "-H", bearer("check-rl-key"))
	for _, want := range []string{"  search: 10 per 1s, counted by user acme/bot\n", "  standard: 100 per 1m0s, counted by key kg_demo\n"} {
		if !strings.Contains(text.stdout, want) {
			t.Errorf("text output lacks %q:\n%s", want, text.stdout)
		}
	}
	js := must(t, 0, dir, "", "check", "--policy", "p.yaml", "--path", "/search", "-H", bearer("check-rl-key"), "--format", "json")
	var res struct {
		RateLimits []checkRateLimit `json:"rate_limits"`
	}
	if err := json.Unmarshal([]byte(js.stdout), &res); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(res.RateLimits); got != "[{search 10 1s user acme/bot} {standard 100 1m0s key kg_demo}]" {
		t.Errorf("json rate_limits %s", got)
	}
	denied := must(t, checkDenied, dir, "", "check", "--policy", "p.yaml", "--path", "/ops", "-H", bearer("check-rl-key"))
	if strings.Contains(denied.stdout, "rate limits") {
		t.Errorf("a denied request shows rate limits:\n%s", denied.stdout)
	}
}

// TestCLIKeysCreateRateLimit: keys create --rate-limit writes the key's
// own limit into the policy (check then shows it), prints it in the entry
// when there is no policy to write, and refuses an undeclared one.
func TestCLIKeysCreateRateLimit(t *testing.T) {
	dir := t.TempDir()
	doc := `version: 1
tenants: [{id: acme}]
rate_limits:
  - {name: standard, requests: 100, per: 1m}
endpoints:
  - {name: whoami, match: {path: /whoami}}
`
	if err := os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(doc), 0o640); err != nil {
		t.Fatal(err)
	}
	r := must(t, 0, dir, "", "keys", "create", "--tenant", "acme", "--name", "metered", "--rate-limit", "standard", "--policy", "p.yaml")
	key := firstLine(t, r)
	if !strings.Contains(r.stderr, "rate limit standard") {
		t.Errorf("the note does not name the limit:\n%s", r)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "p.yaml")); !strings.Contains(string(data), "rate_limit: standard") {
		t.Errorf("policy lacks the key's rate_limit:\n%s", data)
	}
	c := must(t, 0, dir, "", "check", "--policy", "p.yaml", "--path", "/whoami", "-H", bearer(key))
	if !strings.Contains(c.stdout, "standard: 100 per 1m0s, counted by key ") {
		t.Errorf("check does not show the key's own limit:\n%s", c.stdout)
	}
	printed := must(t, 0, dir, "", "keys", "create", "--tenant", "acme", "--rate-limit", "standard")
	if !strings.Contains(printed.stdout, "rate_limit: standard") {
		t.Errorf("the printed entry lacks rate_limit:\n%s", printed)
	}
	bad := keygate(t, dir, "", "keys", "create", "--tenant", "acme", "--rate-limit", "gold", "--policy", "p.yaml")
	if bad.code == 0 || !strings.Contains(bad.stderr, `rate limit "gold" is not declared under rate_limits`) {
		t.Errorf("an undeclared limit:\n%s", bad)
	}
}
