package api

import (
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/test/internal/harness"
)

// TestKeysAPIRateLimit: a key made through the API can name its own rate
// limit (one the policy declares), answered back in the key (checked
// against the OpenAPI document), and Check then counts it: 2 an hour.
func TestKeysAPIRateLimit(t *testing.T) {
	w := newWorld(t, 3, 0)
	path := writePolicy(t, w)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "endpoints:", "rate_limits:\n  - {name: metered, requests: 2, per: 1h}\nendpoints:", 1)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	k := harness.Serve(t, harness.Options{Args: []string{"--policy", path}, API: true})
	c := newClient(t, k.APIAddr)
	authz := dial(t, k.GRPCAddr)
	eu := session(w.EUAdmin)

	if a := c.do("POST", "/v1/orgs/acme-eu/keys", eu, map[string]any{"name": "Gold", "groups": []string{"sales"}, "rate_limit": "gold"}); a.Status != 400 || !strings.Contains(string(a.Body), `rate limit \"gold\" is not declared`) {
		t.Errorf("an undeclared limit: %d %s, want 400 naming it", a.Status, a.Body)
	}
	a := c.do("POST", "/v1/orgs/acme-eu/keys", eu, map[string]any{"name": "Metered", "groups": []string{"sales"}, "rate_limit": "metered"})
	if a.Status != 201 {
		t.Fatalf("create = %d: %s", a.Status, a.Body)
	}
	_, secret := created(t, a)
	if got := a.json(t)["rate_limit"]; got != "metered" {
		t.Errorf("created key's rate_limit = %v, want metered", got)
	}
	waitCheck(t, authz, secret, codes.OK, 3*time.Second) // the first of its two
	if got := check(t, authz, secret); got != codes.OK {
		t.Errorf("second request: %v, want OK", got)
	}
	if got := check(t, authz, secret); got != codes.PermissionDenied {
		t.Errorf("third request within the hour: %v, want PERMISSION_DENIED (429)", got)
	}
}
