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
