package keys

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
)

// rateLimited is testPolicy with a rate limit declared.
var rateLimited = strings.Replace(testPolicy, "management:", "rate_limits:\n  - {name: standard, requests: 100, per: 1m}\nmanagement:", 1)

// TestCreateWithRateLimit: a key made through the API or the command line
// can name its own rate limit, which must be declared; the policy written
// back compiles with the key under that limit.
func TestCreateWithRateLimit(t *testing.T) {
	f := newFixture(t, false, rateLimited)
	ctx := context.Background()
	c, err := f.svc.Create(ctx, f.as(t, "olivia"), eu, NewKey{Name: "metered", Groups: []string{"sales"}, RateLimit: "standard"})
	if err != nil {
		t.Fatal(err)
	}
	if c.RateLimit != "standard" {
		t.Errorf("created key %+v: rate_limit %q, want standard", c.Key, c.RateLimit)
	}
	snap := f.reload(t)
	if l := snap.RateLimitOf(snap.Lookup(policy.KindAPIKey, apikey.Digest(c.Secret))); l == nil || l.Name != "standard" {
		t.Errorf("the written key's own limit is %v, want standard", l)
	}
	if !strings.Contains(f.text(t), "rate_limit: standard") {
		t.Errorf("policy text lacks the key's rate_limit:\n%s", f.text(t))
	}
	_, err = f.svc.Create(ctx, Actor{}, acme, NewKey{Name: "x", RateLimit: "gold"})
	var e *Error
	if !errors.As(err, &e) || e.Status != 400 || !strings.Contains(e.Error(), `rate limit "gold" is not declared under rate_limits`) {
		t.Errorf("an undeclared limit: %v, want a 400 naming it", err)
	}
}

// TestRotateKeepsRateLimit: a rotated key's successor keeps the key's own
// limit, or rotating would be a way out of it.
func TestRotateKeepsRateLimit(t *testing.T) {
	f := newFixture(t, false, rateLimited)
	ctx := context.Background()
	c, err := f.svc.Create(ctx, Actor{}, acme, NewKey{Name: "metered", RateLimit: "standard"})
	if err != nil {
		t.Fatal(err)
	}
	f.snap = f.reload(t)
	r, err := f.svc.RotateKey(ctx, Actor{}, acme, c.ID, Rotation{})
	if err != nil {
		t.Fatal(err)
	}
	if r.RateLimit != "standard" {
		t.Errorf("successor %+v: rate_limit %q, want standard", r.Key, r.RateLimit)
	}
	snap := f.reload(t)
	if l := snap.RateLimitOf(snap.Lookup(policy.KindAPIKey, apikey.Digest(r.Secret))); l == nil || l.Name != "standard" {
		t.Errorf("the successor's own limit is %v, want standard", l)
	}
}
