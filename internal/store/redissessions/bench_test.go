package redissessions_test

import (
	"context"
	"testing"
	"time"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
)

const benchPolicy = `version: 1
groups: [{name: sales}]
tenants: [{id: acme, orgs: [acme-eu]}]
endpoints:
  - {name: sales, match: {path: "/orgs/{org}/sales/**"}, require: [session], groups: [sales], org: {from: path, name: org}}
`

type snaps struct{ s *policy.Snapshot }

func (s snaps) Current() *policy.Snapshot { return s.s }

// BenchmarkCheckStoreMiss is the decision of a request whose stored
// session misses the LRU and is looked up in a real redis-server on
// loopback (one GET and decoding the session), against the same request
// answered from the cache. A cache of one entry and two sessions taken in
// turn make every lookup a miss.
func BenchmarkCheckStoreMiss(b *testing.B) {
	r := startRedis(b)
	s := open(b, r, nil)
	ctx := context.Background()
	watchSubscribed(b, s)
	snap, err := policy.Load([]policy.Input{{Name: "p.yaml", Data: []byte(benchPolicy)}}, policy.Options{Generation: 1})
	if err != nil {
		b.Fatal(err)
	}
	var toks [2]string
	for i := range toks {
		if toks[i], _, err = s.Create(ctx, newSession("alice", "acme-eu", time.Hour, "sales")); err != nil {
			b.Fatal(err)
		}
	}
	req := func(tok string) *authz.Request {
		return &authz.Request{Method: "GET", Host: "api.example.com", Path: "/orgs/acme-eu/sales/q1",
			Headers: authz.MapHeaders{":authority": "api.example.com", "session": tok, "accept": "*/*", "x-request-id": "r1"}}
	}
	for _, bc := range []struct {
		name      string
		cacheSize int
	}{{"miss", 1}, {"hit", 1000}} {
		b.Run(bc.name, func(b *testing.B) {
			c, err := cache.New(bc.cacheSize, time.Minute)
			if err != nil {
				b.Fatal(err)
			}
			a := authz.New(snaps{snap}, c, authz.WithSessionStore(s))
			reqs := [2]*authz.Request{req(toks[0]), req(toks[1])}
			for _, rq := range reqs {
				if d := a.Decide(rq); d.Result != authz.Allow {
					b.Fatalf("denied: %v", d.Reason)
				}
			}
			before := c.Stats().Misses
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if d := a.Decide(reqs[i&1]); d.Result != authz.Allow {
					b.Fatalf("denied: %v", d.Reason)
				}
				i++
			}
			b.ReportMetric(float64(c.Stats().Misses-before)/float64(i), "misses/op")
		})
	}
}
