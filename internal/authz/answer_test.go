package authz_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
)

func decide(a *authz.Authorizer, path string, h map[string]string) (authz.Decision, authz.Request) {
	req := authz.Request{Method: "GET", Host: "api.example.com", Path: path, Headers: authz.MapHeaders(h)}
	return a.Decide(&req), req
}

func TestIdentityHeadersAndRemovals(t *testing.T) {
	a, _ := newAuthorizer(t, compileTestPolicy(t, ""))
	tests := []struct {
		name       string
		path       string
		headers    map[string]string
		wantSet    map[string]string
		wantRemove []string
	}{
		{
			name: "key: identity set, credential stripped, spoofed identity removed or overwritten",
			path: "/orgs/acme-eu/sales/q1",
			headers: map[string]string{"authorization": bearer(tenantKey), "x-keygate-user": "admin",
				"x-keygate-session-id": "s-forged", "x-keygate-role": "root", "accept": "*/*"},
			wantSet: map[string]string{"x-keygate-user": "api-bot", "x-keygate-tenant": "acme", "x-keygate-org": "acme-eu",
				"x-keygate-key-id": "k-tenant", "x-keygate-groups": "sales", "x-keygate-auth": "api_key", "x-keygate-endpoint": "sales-read"},
			wantRemove: []string{"authorization", "x-keygate-role", "x-keygate-session-id"},
		},
		{
			name:    "key and session: both stripped",
			path:    "/whoami",
			headers: map[string]string{"x-api-key": tenantKey, "session": aliceSess},
			wantSet: map[string]string{"x-keygate-user": "alice", "x-keygate-tenant": "acme", "x-keygate-key-id": "k-tenant",
				"x-keygate-session-id": "s-alice", "x-keygate-groups": "ops,sales,support", "x-keygate-auth": "api_key+session", "x-keygate-endpoint": "whoami"},
			wantRemove: []string{"session", "x-api-key"},
		},
		{
			name:    "the same key in two headers: both stripped",
			path:    "/whoami",
			headers: map[string]string{"authorization": bearer(tenantKey), "x-api-key": tenantKey},
			wantSet: map[string]string{"x-keygate-user": "api-bot", "x-keygate-tenant": "acme", "x-keygate-key-id": "k-tenant",
				"x-keygate-groups": "sales", "x-keygate-auth": "api_key", "x-keygate-endpoint": "whoami"},
			wantRemove: []string{"authorization", "x-api-key"},
		},
		{
			name:       "anonymous: nothing to strip",
			path:       "/healthz",
			headers:    map[string]string{"authorization": "Basic dXNlcjpwYXNz"},
			wantSet:    map[string]string{"x-keygate-auth": "anonymous", "x-keygate-endpoint": "health"},
			wantRemove: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, req := decide(a, tt.path, tt.headers)
			if d.Result != authz.Allow {
				t.Fatalf("want allow, got %d %v", d.Status, d.Reason)
			}
			set := d.IdentityHeaders(nil)
			got := map[string]string{}
			for _, h := range set {
				got[h.Name] = h.Value
			}
			if !equalMaps(got, tt.wantSet) {
				t.Errorf("set %v, want %v", got, tt.wantSet)
			}
			rm := d.HeadersToRemove(nil, req.Headers, set)
			slices.Sort(rm)
			if !slices.Equal(rm, tt.wantRemove) {
				t.Errorf("remove %v, want %v", rm, tt.wantRemove)
			}
			for _, r := range rm {
				if _, both := got[r]; both {
					t.Errorf("%s is both set and removed: Envoy would drop it", r)
				}
			}
		})
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestStripCredentialsOff(t *testing.T) {
	p := compileTestPolicy(t, "")
	raw := strings.Replace(renderTestPolicy(t), "settings: {realm: api.example.com}", "settings: {realm: api.example.com, strip_credentials: false}", 1)
	snap, err := policy.Load([]policy.Input{{Name: "t.yaml", Data: []byte(raw)}}, policy.Options{Generation: p.Generation + 1})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := newAuthorizer(t, snap)
	d, req := decide(a, "/whoami", map[string]string{"x-api-key": tenantKey})
	if rm := d.HeadersToRemove(nil, req.Headers, d.IdentityHeaders(nil)); len(rm) != 0 {
		t.Errorf("with strip_credentials false, removed %v", rm)
	}
}

func renderTestPolicy(t *testing.T) string {
	var b strings.Builder
	if err := testPolicy.Execute(&b, map[string]string{"KG": kgKeyValue}); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestDenialAnswers(t *testing.T) {
	a, _ := newAuthorizer(t, compileTestPolicy(t, ""))
	tests := []struct {
		name      string
		path      string
		headers   map[string]string
		status    int
		challenge string
		errorCode string
		message   string
	}{
		{"missing", "/whoami", nil, 401, `Bearer realm="api.example.com"`, "unauthorized", "this endpoint requires an API key"},
		{"unknown", "/whoami", map[string]string{"x-api-key": "nope"}, 401, `Bearer realm="api.example.com", error="invalid_token"`, "unauthorized", "the credentials presented are not valid"},
		{"expired", "/whoami", map[string]string{"x-api-key": expiredKey}, 401, `Bearer realm="api.example.com", error="invalid_token"`, "unauthorized", "the credentials presented are not valid"},
		{"disabled", "/whoami", map[string]string{"x-api-key": disabledKey}, 401, `Bearer realm="api.example.com", error="invalid_token"`, "unauthorized", "the credentials presented are not valid"},
		{"forbidden org", "/orgs/acme-us/sales/q", map[string]string{"x-api-key": orgKey}, 403, "", "forbidden", "access to this resource is not allowed"},
		{"no match", "/nowhere", map[string]string{"x-api-key": tenantKey}, 403, "", "forbidden", "access to this resource is not allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, _ := decide(a, tt.path, tt.headers)
			if d.Result != authz.Deny || d.Status != tt.status {
				t.Fatalf("got %v %d, want deny %d", d.Result, d.Status, tt.status)
			}
			if c := d.Challenge(); c != tt.challenge {
				t.Errorf("challenge %q, want %q", c, tt.challenge)
			}
			body := d.Body("req-1")
			var got map[string]string
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("body %q is not JSON: %v", body, err)
			}
			want := map[string]string{"error": tt.errorCode, "message": tt.message, "decision_id": "req-1"}
			if !equalMaps(got, want) {
				t.Errorf("body %v, want %v", got, want)
			}
			for _, secret := range tt.headers {
				if strings.Contains(body, secret) {
					t.Errorf("body leaks the credential")
				}
			}
			if len(d.IdentityHeaders(nil)) != 0 {
				t.Errorf("a denial must not set identity headers")
			}
		})
	}
}

func TestDecisionIDEscapesIntoJSON(t *testing.T) {
	a, _ := newAuthorizer(t, compileTestPolicy(t, ""))
	d, _ := decide(a, "/whoami", nil)
	for _, id := range []string{"abc-123", `"},"x":"`, strings.Repeat("a", 500), "with space"} {
		got := authz.DecisionID(id)
		var body map[string]string
		if err := json.Unmarshal([]byte(d.Body(got)), &body); err != nil || body["decision_id"] != got {
			t.Errorf("DecisionID(%q) = %q does not round-trip through the body: %v", id, got, err)
		}
		if id == "abc-123" && got != id {
			t.Errorf("a sensible x-request-id must be kept, got %q", got)
		}
	}
	if a, b := authz.DecisionID(""), authz.DecisionID(""); a == b || a == "" {
		t.Errorf("generated ids must be unique: %q %q", a, b)
	}
}

func TestExpiryFollowsTheClock(t *testing.T) {
	raw := renderTestPolicy(t)
	raw = strings.Replace(raw, "sessions:\n", "  - {id: k-soon, hash: \""+policy.FormatDigest(digest("soon-key"))+"\", tenant: acme, user: u, expires_at: 2030-01-01T00:00:00Z}\nsessions:\n", 1)
	s2, err := policy.Load([]policy.Input{{Name: "t.yaml", Data: []byte(raw)}}, policy.Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2029, 12, 31, 23, 59, 59, 0, time.UTC)
	c, _ := cache.New(10, time.Minute)
	a := authz.New(&store{s2}, c, authz.WithClock(func() time.Time { return now }))
	if d, _ := decide(a, "/whoami", map[string]string{"x-api-key": "soon-key"}); d.Result != authz.Allow {
		t.Fatalf("before expiry: %v", d.Reason)
	}
	now = now.Add(time.Second) // the cache is warm; expiry must still apply
	if d, _ := decide(a, "/whoami", map[string]string{"x-api-key": "soon-key"}); d.Reason != authz.ReasonExpiredCredential {
		t.Fatalf("at expiry: got %v, want expired", d.Reason)
	}
}

func TestRevocationOnNextRequestWithWarmCache(t *testing.T) {
	raw := renderTestPolicy(t)
	snap1, err := policy.Load([]policy.Input{{Name: "t.yaml", Data: []byte(raw)}}, policy.Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	a, st := newAuthorizer(t, snap1)
	for i := 0; i < 100; i++ {
		if d, _ := decide(a, "/whoami", map[string]string{"x-api-key": tenantKey}); d.Result != authz.Allow {
			t.Fatal("key must work before revocation")
		}
	}
	for name, edit := range map[string]string{
		"disabled": strings.Replace(raw, "user: api-bot, groups: [sales]}", "user: api-bot, groups: [sales], disabled: true}", 1),
		"removed":  removeLine(raw, "k-tenant"),
	} {
		t.Run(name, func(t *testing.T) {
			snap2, err := policy.Load([]policy.Input{{Name: "t.yaml", Data: []byte(edit)}}, policy.Options{Generation: 2})
			if err != nil {
				t.Fatal(err)
			}
			st.s = snap2
			if d, _ := decide(a, "/whoami", map[string]string{"x-api-key": tenantKey}); d.Result != authz.Deny || d.Status != 401 {
				t.Fatalf("revoked key: got %v %d on the first request after the new snapshot", d.Result, d.Status)
			}
			st.s = snap1
		})
	}
}

func removeLine(s, contains string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.Contains(l, contains) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestNoPolicyIsUnavailable(t *testing.T) {
	a, _ := newAuthorizer(t, nil)
	d, _ := decide(a, "/whoami", map[string]string{"x-api-key": tenantKey})
	if d.Result != authz.Unavailable || d.Reason != authz.ReasonNoPolicy {
		t.Fatalf("got %v %v, want unavailable", d.Result, d.Reason)
	}
}

func TestDecideDoesNotAllocateOnCacheHit(t *testing.T) {
	a, _ := newAuthorizer(t, compileTestPolicy(t, ""))
	req := authz.Request{Method: "GET", Host: "api.example.com:443", Path: "/orgs/acme-eu/sales/q1?x=1",
		Headers: authz.MapHeaders{"authorization": bearer(kgKeyValue), "x-request-id": "r"}}
	a.Decide(&req)
	if n := testing.AllocsPerRun(200, func() {
		if d := a.Decide(&req); d.Result != authz.Allow {
			t.Fatal("denied")
		}
	}); n != 0 {
		t.Errorf("Decide allocated %v times per request on a cache hit", n)
	}
}

func TestRequestWithoutHeadersIsDecided(t *testing.T) {
	a, _ := newAuthorizer(t, compileTestPolicy(t, ""))
	req := authz.Request{Method: "GET", Host: "api.example.com", Path: "/whoami"}
	d := a.Decide(&req)
	if d.Result != authz.Deny || d.Reason != authz.ReasonMissingCredential {
		t.Fatalf("got %v %v, want a 401 for the missing key", d.Result, d.Reason)
	}
	if rm := d.HeadersToRemove(nil, req.Headers, nil); len(rm) != 0 {
		t.Errorf("removed %v", rm)
	}
}
