package authz_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
)

// Paths of the endpoints before the one the benchmark request matches
// (/orgs/{org}/sales/**). None of them matches the request.
const (
	fillDistinct = "/svc%d/{org}/items/**" // each under its own first segment
	fillLiteral  = "/orgs/svc%d/{org}/**"  // all under /orgs, told apart by a literal
	fillCapture  = "/orgs/{org}/svc%d/**"  // all under /orgs/{org}, told apart after the capture
)

// genPolicy writes a JSON policy (large key sets decode much faster than in
// YAML) with endpoints endpoints and n keys; key i is
// fmt.Sprintf("bench-key-%08d", i). The first endpoints-1 endpoints have the
// path fill (with their number) and do not match the request; the request
// matches the last endpoint, the worst case of first-match order.
func genPolicy(n, endpoints int, fill string) []byte {
	var b strings.Builder
	b.WriteString(`{"version": 1, "groups": [{"name": "sales"}, {"name": "ops"}], "tenants": [{"id": "acme", "orgs": ["acme-eu", "acme-us"]}],` + "\n" + `"endpoints": [` + "\n")
	for i := 0; i < endpoints-1; i++ {
		fmt.Fprintf(&b, `{"name": "e%d", "match": {"methods": ["GET"], "path": "`+fill+`"}, "groups": ["ops"], "org": {"from": "path", "name": "org"}},`+"\n", i, i)
	}
	b.WriteString(`{"name": "sales", "match": {"methods": ["GET", "POST"], "path": "/orgs/{org}/sales/**"}, "groups": ["sales"], "org": {"from": "path", "name": "org"}}],` + "\n" + `"api_keys": [`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"id": "k%d", "hash": %q, "tenant": "acme", "user": "u%d", "groups": ["sales"]}`, i, policy.FormatDigest(apikey.Digest(fmt.Sprintf("bench-key-%08d", i))), i)
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// benchSnaps keeps the compiled policies across -count runs: the one with a
// million keys takes seconds to generate and load.
var benchSnaps = map[string]*policy.Snapshot{}

func benchSnapshot(b *testing.B, keys, endpoints int, fill string) *policy.Snapshot {
	k := fmt.Sprint(keys, endpoints, fill)
	if s := benchSnaps[k]; s != nil {
		return s
	}
	s, err := policy.Load([]policy.Input{{Name: "bench.json", Data: genPolicy(keys, endpoints, fill)}}, policy.Options{Generation: 1})
	if err != nil {
		b.Fatal(err)
	}
	benchSnaps[k] = s
	return s
}

type fixedStore struct{ s *policy.Snapshot }

func (f fixedStore) Current() *policy.Snapshot { return f.s }

// BenchmarkDecide is an API-key request on a cache hit that matches the last
// endpoint: keys=N with 10 endpoints, and endpoints=M with 10,000 keys. The
// endpoints before it are under distinct first segments, under the request's
// first segment (shared=literal), or under its first segment and a capture
// (shared=capture).
func BenchmarkDecide(b *testing.B) {
	cases := []struct {
		name            string
		keys, endpoints int
		fill            string
	}{
		{"keys=10000/endpoints=10", 10_000, 10, fillDistinct},
		{"keys=100000/endpoints=10", 100_000, 10, fillDistinct},
		{"keys=1000000/endpoints=10", 1_000_000, 10, fillDistinct},
		{"keys=10000/endpoints=100", 10_000, 100, fillDistinct},
		{"keys=10000/endpoints=1000", 10_000, 1000, fillDistinct},
		{"keys=10000/endpoints=1000,shared=literal", 10_000, 1000, fillLiteral},
		{"keys=10000/endpoints=1000,shared=capture", 10_000, 1000, fillCapture},
	}
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			snap := benchSnapshot(b, bc.keys, bc.endpoints, bc.fill)
			c, _ := cache.New(cache.DefaultSize, cache.DefaultNegativeTTL)
			a := authz.New(fixedStore{snap}, c)
			req := authz.Request{
				Method: "GET", Host: "api.example.com:443", Path: "/orgs/acme-eu/sales/reports?year=2026",
				Headers: authz.MapHeaders{
					":authority": "api.example.com", "authorization": "Bearer bench-key-00004242",
					"user-agent": "bench", "accept": "*/*", "x-request-id": "r1", "x-forwarded-for": "10.0.0.1",
					"x-keygate-user": "spoof", "content-type": "application/json",
				},
			}
			if d := a.Decide(&req); d.Result != authz.Allow || d.Endpoint.Name != "sales" {
				b.Fatalf("want allow by sales, got %v %v", d.Status, d.Reason)
			}
			b.ReportAllocs()
			for b.Loop() {
				if d := a.Decide(&req); d.Result != authz.Allow {
					b.Fatal("denied")
				}
			}
		})
	}
}
