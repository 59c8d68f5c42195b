package authz_test

import (
	"testing"
	"time"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/session"
)

// BenchmarkDecideSession is a session-only request on a warm cache: an
// opaque session listed by digest against a signed one (a JWT of about
// 400 bytes, verified once and then answered by its digest). The miss
// cost of a signed token, one signature per algorithm, is
// internal/session's BenchmarkVerify.
func BenchmarkDecideSession(b *testing.B) {
	e := newSignedEnv(b, time.Second)
	signed := e.idp.token(b, e.idp.signer(), session.Claims{User: "alice", Tenant: "acme", Org: "acme-eu", Groups: []string{"sales"}})
	for deadline := time.Now().Add(5 * time.Second); e.decide("/me", signed).Result != authz.Allow; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("the IdP's keys were not fetched")
		}
	}
	for _, bc := range []struct{ name, tok string }{{"opaque", "opaque-session-olivia"}, {"signed", signed}} {
		b.Run(bc.name, func(b *testing.B) {
			req := authz.Request{
				Method: "GET", Host: "api.example.com:443", Path: "/orgs/acme-eu/sales/reports?year=2026",
				Headers: authz.MapHeaders{
					":authority": "api.example.com", "session": bc.tok,
					"user-agent": "bench", "accept": "*/*", "x-request-id": "r1", "x-forwarded-for": "10.0.0.1",
					"x-keygate-user": "spoof", "content-type": "application/json",
				},
			}
			if d := e.a.Decide(&req); d.Result != authz.Allow {
				b.Fatalf("denied: %v", d.Reason)
			}
			b.ReportAllocs()
			for b.Loop() {
				if d := e.a.Decide(&req); d.Result != authz.Allow {
					b.Fatal("denied")
				}
			}
			b.ReportMetric(float64(len(bc.tok)), "token-bytes")
		})
	}
}
