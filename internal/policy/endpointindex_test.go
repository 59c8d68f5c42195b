package policy

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// indexPolicy mixes every kind of pattern, methods and hosts, with generic
// endpoints before and after literal ones so that order decides.
const indexPolicy = `version: 1
endpoints:
  - {name: root, match: {path: /}, anonymous: true}
  - {name: any-b, match: {methods: [POST], path: "/{x}/b"}, anonymous: true}
  - {name: a-b, match: {path: /a/b}, anonymous: true}
  - {name: a-star, match: {methods: [GET], path: "/a/*"}, anonymous: true}
  - {name: a-id-c, match: {path: "/a/{id}/c"}, anonymous: true}
  - {name: a-star-c-rest, match: {path: "/a/*/c/**"}, anonymous: true}
  - {name: a-rest, match: {methods: [GET, DELETE], path: "/a/**"}, anonymous: true}
  - {name: xyz-host, match: {host: api.example.com, path: /x/y/z}, anonymous: true}
  - {name: x-y-z-wild-host, match: {host: "*.example.com", path: "/x/{y}/z"}, anonymous: true}
  - {name: xyz, match: {path: /x/y/z}, anonymous: true}
  - {name: orgs-sales, match: {path: "/orgs/{org}/sales/**"}, org: {from: path, name: org}}
  - {name: orgs, match: {methods: [GET], path: "/orgs/{org}"}, org: {from: path, name: org}}
  - {name: orgs-rest-post, match: {methods: [POST], path: "/orgs/**"}}
  - {name: file, match: {path: /files/report.v2.json}, anonymous: true}
  - {name: star-star, match: {path: "/*/*"}, anonymous: true}
  - {name: b-deep, match: {path: "/b/{p}/{q}/{r}/end"}, anonymous: true}
  - {name: other-all, match: {host: other.example.com, path: "/**"}, anonymous: true}
  - {name: wild-all, match: {methods: [DELETE], host: "*.example.com", path: "/**"}, anonymous: true}
  - {name: z-exact, match: {path: /z}, anonymous: true}
  - {name: z-rest, match: {path: "/z/**"}, anonymous: true}
  - {name: late-all, match: {methods: [PATCH], path: "/**"}, anonymous: true}
`

func TestMatchIndexOrder(t *testing.T) {
	s := mustLoad(t, indexPolicy)
	tests := []struct {
		method, host, path, want, org string
	}{
		{"GET", "api.example.com", "/", "root", ""},
		{"GET", "api.example.com", "", "", ""},
		{"GET", "api.example.com", "a/b", "", ""},
		// A generic endpoint before a literal one wins when it matches.
		{"POST", "api.example.com", "/a/b", "any-b", ""},
		{"GET", "api.example.com", "/a/b", "a-b", ""},
		{"PUT", "api.example.com", "/a/b", "a-b", ""},
		{"GET", "api.example.com", "/a/q", "a-star", ""},
		{"PUT", "api.example.com", "/a/q", "star-star", ""},
		{"DELETE", "api.example.com", "/a/q", "a-rest", ""},
		// ** takes an empty rest and an empty last segment; * does not.
		{"GET", "api.example.com", "/a", "a-rest", ""},
		{"GET", "api.example.com", "/a/", "a-rest", ""},
		{"PUT", "api.example.com", "/a/", "", ""},
		{"GET", "api.example.com", "/a//c", "a-rest", ""},
		{"PUT", "api.example.com", "/a/q/c", "a-id-c", ""},
		{"PUT", "api.example.com", "/a/q/c/", "a-star-c-rest", ""},
		{"PUT", "api.example.com", "/a/q/c/d/e", "a-star-c-rest", ""},
		// Exact host, wildcard host and any host, in policy order.
		{"GET", "api.example.com", "/x/y/z", "xyz-host", ""},
		{"GET", "eu.example.com", "/x/y/z", "x-y-z-wild-host", ""},
		{"GET", "example.com", "/x/y/z", "xyz", ""},
		{"GET", "", "/x/y/z", "xyz", ""},
		{"GET", "eu.example.com", "/x/w/z", "x-y-z-wild-host", ""},
		{"GET", "example.com", "/x/w/z", "", ""},
		// Captures.
		{"GET", "", "/orgs/acme-eu/sales", "orgs-sales", "acme-eu"},
		{"GET", "", "/orgs/acme-eu/sales/2026/q1", "orgs-sales", "acme-eu"},
		{"GET", "", "/orgs/acme-eu", "orgs", "acme-eu"},
		{"POST", "", "/orgs/acme-eu", "orgs-rest-post", ""},
		{"GET", "", "/orgs/acme-eu/", "", ""},
		{"GET", "", "/orgs//sales", "", ""},
		{"GET", "", "/files/report.v2.json", "file", ""},
		{"GET", "", "/files/report", "star-star", ""},
		{"GET", "", "/b/1/2/3/end", "b-deep", ""},
		{"GET", "", "/b/1/2/3/end/", "", ""},
		{"POST", "", "/b/1/2//end", "", ""},
		{"GET", "other.example.com", "/nowhere/at/all", "other-all", ""},
		{"DELETE", "eu.example.com", "/nowhere/at/all", "wild-all", ""},
		{"DELETE", "example.com", "/nowhere/at/all", "", ""},
		{"GET", "", "/z", "z-exact", ""},
		{"GET", "", "/z/", "z-rest", ""},
		{"GET", "", "/z/z", "star-star", ""},
		{"PATCH", "", "/q/r/s/t", "late-all", ""},
		{"PATCH", "", "//", "late-all", ""}, // * takes a non-empty segment only
		{"PATCH", "", "///", "late-all", ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.host+" "+tc.path, func(t *testing.T) {
			e, org := s.Match(tc.method, tc.host, tc.path)
			if got := endpointName(e); got != tc.want || org != tc.org {
				t.Errorf("Match = %q, %q; want %q, %q", got, org, tc.want, tc.org)
			}
			le, lorg := matchLinear(s.endpoints, tc.method, tc.host, tc.path)
			if le != e || lorg != org {
				t.Errorf("linear scan = %q, %q", endpointName(le), lorg)
			}
		})
	}
}

// TestMatchIndexAgreesWithLinear tries every path of up to four segments
// drawn from the policy's words, with every method and host.
func TestMatchIndexAgreesWithLinear(t *testing.T) {
	s := mustLoad(t, indexPolicy)
	words := []string{"", "a", "b", "c", "x", "y", "z", "orgs", "sales", "end", "report.v2.json"}
	methods := []string{"GET", "POST", "DELETE", "PATCH", "PUT"}
	hosts := []string{"", "api.example.com", "eu.example.com", "example.com", "other.example.com"}
	paths := []string{"", "x", "/"}
	level := []string{""}
	for depth := 0; depth < 4; depth++ {
		var next []string
		for _, p := range level {
			for _, w := range words {
				next = append(next, p+"/"+w)
			}
		}
		paths = append(paths, next...)
		level = next
	}
	n := 0
	for _, p := range paths {
		for _, m := range methods {
			for _, h := range hosts {
				e, org := s.Match(m, h, p)
				le, lorg := matchLinear(s.endpoints, m, h, p)
				if e != le || org != lorg {
					t.Fatalf("Match(%q, %q, %q) = %q, %q; linear scan %q, %q", m, h, p, endpointName(e), org, endpointName(le), lorg)
				}
				if e != nil {
					n++
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no path matched")
	}
}

// TestMatchIndexRandomPolicies compares indexed and linear matching on
// random policies over a small alphabet, where patterns overlap often.
func TestMatchIndexRandomPolicies(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"a", "b", "c"}
	hosts := []string{"", "h.example.com", "*.example.com", "example.com"}
	methods := []string{"GET", "POST"}
	for round := 0; round < 300; round++ {
		var eps []*Endpoint
		for i := 0; i < 1+r.IntN(40); i++ {
			e := &Endpoint{Name: fmt.Sprint("e", i), Index: i, orgCapture: -1}
			var segs []string
			for j := 0; j < r.IntN(5); j++ {
				switch k := r.IntN(10); {
				case k < 5:
					segs = append(segs, words[r.IntN(len(words))])
				case k < 7:
					segs = append(segs, fmt.Sprintf("{c%d}", j))
				default:
					segs = append(segs, "*")
				}
			}
			if r.IntN(3) == 0 {
				segs = append(segs, "**")
			}
			pt, err := compilePattern("/" + strings.Join(segs, "/"))
			if err != nil {
				t.Fatal(err)
			}
			e.path = pt
			for j, s := range pt.segs {
				if s.kind == segCapture && r.IntN(2) == 0 {
					e.orgCapture = j
				}
			}
			if r.IntN(3) == 0 {
				e.methods = []string{methods[r.IntN(len(methods))]}
			}
			e.host = hosts[r.IntN(len(hosts))]
			eps = append(eps, e)
		}
		ix := newEndpointIndex(eps)
		for k := 0; k < 200; k++ {
			var b strings.Builder
			for j := 0; j < r.IntN(6); j++ {
				b.WriteByte('/')
				if r.IntN(8) > 0 {
					b.WriteString(words[r.IntN(len(words))])
				}
			}
			p := b.String()
			if p == "" {
				p = "/"
			}
			m := methods[r.IntN(len(methods))]
			h := []string{"", "h.example.com", "x.example.com", "example.com"}[r.IntN(4)]
			e, org := ix.match(eps, m, h, p)
			le, lorg := matchLinear(eps, m, h, p)
			if e != le || org != lorg {
				var pats []string
				for _, e := range eps {
					pats = append(pats, fmt.Sprintf("%s %v %q %+v", e.Name, e.methods, e.host, e.path.segs))
				}
				t.Fatalf("Match(%q, %q, %q) = %q, %q; linear scan %q, %q\n%s", m, h, p, endpointName(e), org, endpointName(le), lorg, strings.Join(pats, "\n"))
			}
		}
	}
}

func TestMatchIndexDoesNotAllocate(t *testing.T) {
	s := mustLoad(t, indexPolicy)
	for _, p := range []string{"/", "/a/q/c/d/e", "/b/1/2/3/end", "/orgs/acme-eu/sales/x", "/nowhere/at/all"} {
		for _, h := range []string{"api.example.com", "other.example.com"} {
			if allocs := testing.AllocsPerRun(100, func() { s.Match("GET", h, p) }); allocs != 0 {
				t.Errorf("Match(%q, %q) allocates %.1f times per call", h, p, allocs)
			}
		}
	}
}

// FuzzMatchIndex checks that indexed matching agrees with the linear scan
// for any request against a varied policy.
func FuzzMatchIndex(f *testing.F) {
	s := mustLoad(f, indexPolicy)
	for _, p := range []string{"", "/", "//", "/a", "/a/", "/a/b", "/a/q/c/", "/x/y/z", "/orgs/acme/sales/1", "/b/1/2/3/end", "/z/", "/files/report.v2.json"} {
		f.Add("GET", "api.example.com", p)
	}
	f.Add("DELETE", "eu.example.com", "/nowhere")
	f.Add("POST", "other.example.com", "/a/b")
	f.Add("PATCH", "", "/q/r/s/t")
	f.Fuzz(func(t *testing.T, method, host, path string) {
		e, org := s.Match(method, host, path)
		le, lorg := matchLinear(s.endpoints, method, host, path)
		if e != le || org != lorg {
			t.Fatalf("Match(%q, %q, %q) = %q, %q; linear scan %q, %q", method, host, path, endpointName(e), org, endpointName(le), lorg)
		}
	})
}

// BenchmarkMatchIndex matches the last of n endpoints, the others under
// distinct first segments or all under /orgs/{org}/:
//
//	go test -run '^$' -bench MatchIndex -benchmem ./internal/policy/
func BenchmarkMatchIndex(b *testing.B) {
	fills := []struct{ name, path string }{{"distinct", "/svc%d/{org}/items/**"}, {"shared", "/orgs/{org}/svc%d/**"}}
	for _, fill := range fills {
		for _, n := range []int{10, 1000, 10_000} {
			var p strings.Builder
			p.WriteString("version: 1\nendpoints:\n")
			for i := 0; i < n-1; i++ {
				fmt.Fprintf(&p, "  - {name: e%d, match: {methods: [GET], path: %q}, anonymous: true}\n", i, fmt.Sprintf(fill.path, i))
			}
			p.WriteString("  - {name: sales, match: {methods: [GET], path: \"/orgs/{org}/sales/**\"}, org: {from: path, name: org}}\n")
			s := mustLoad(b, p.String())
			b.Run(fmt.Sprintf("%s/endpoints=%d", fill.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if e, _ := s.Match("GET", "api.example.com", "/orgs/acme-eu/sales/reports"); e == nil {
						b.Fatal("no match")
					}
				}
			})
		}
	}
}

// matchLinear is the definition of Snapshot.Match, the reference the index
// is tested against: the first endpoint in eps that matches.
func matchLinear(eps []*Endpoint, method, host, path string) (*Endpoint, string) {
	for _, e := range eps {
		if org, ok := e.Match(method, host, path); ok {
			return e, org
		}
	}
	return nil, ""
}
