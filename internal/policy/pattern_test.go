package policy

import (
	"strings"
	"testing"
)

func TestCompilePattern(t *testing.T) {
	tests := []struct {
		pattern string
		err     string // "" means valid
	}{
		{"/", ""},
		{"/healthz", ""},
		{"/orgs/{org}/sales/**", ""},
		{"/a/*/b/{id}", ""},
		{"/**", ""},
		{"/files/report.v2.json", ""},
		{"", "path is required"},
		{"healthz", `path "healthz" must start with /`},
		{"**", `path "**" must start with /`},
		{"//", `path "//" has an empty segment`},
		{"/a//b", "has an empty segment"},
		{"/a/", "has an empty segment"},
		{"/a/./b", `has a "." segment`},
		{"/a/..", `has a ".." segment`},
		{"/a/**/b", "** must be the last segment"},
		{"/**/", "** must be the last segment"},
		{"/a/b*", `segment "b*" mixes text with {, } or *`},
		{"/a/***", `segment "***" mixes text`},
		{"/a/{id", `segment "{id" mixes text`},
		{"/a/id}", `segment "id}" mixes text`},
		{"/a/x{id}", `segment "x{id}" mixes text`},
		{"/a/{}", "capture {} needs a name"},
		{"/a/{a b}", "capture {a b} needs a name"},
		{"/a/{a/b}", `segment "{a" mixes text`},
		{"/{id}/{id}", "captures {id} twice"},
		{"/a?b=c", "must not contain a query or fragment"},
		{"/a#top", "must not contain a query or fragment"},
	}
	for _, tc := range tests {
		t.Run(tc.pattern, func(t *testing.T) {
			_, err := compilePattern(tc.pattern)
			switch {
			case tc.err == "" && err != nil:
				t.Errorf("unexpected error: %v", err)
			case tc.err != "" && err == nil:
				t.Errorf("compiled; want an error containing %q", tc.err)
			case tc.err != "" && !strings.Contains(err.Error(), tc.err):
				t.Errorf("error %q does not contain %q", err, tc.err)
			}
		})
	}
}

func TestPatternMatch(t *testing.T) {
	tests := []struct {
		pattern string
		capture string // capture to read; "" for none
		path    string
		match   bool
		value   string
	}{
		// Literals match whole segments, case-sensitively.
		{"/healthz", "", "/healthz", true, ""},
		{"/healthz", "", "/healthz/", false, ""},
		{"/healthz", "", "/healthz/x", false, ""},
		{"/healthz", "", "/health", false, ""},
		{"/healthz", "", "/healthzz", false, ""},
		{"/healthz", "", "/Healthz", false, ""},
		{"/healthz", "", "/", false, ""},
		{"/healthz", "", "healthz", false, ""},
		{"/healthz", "", "", false, ""},
		{"/a/b", "", "/a/b", true, ""},
		{"/a/b", "", "/a", false, ""},
		{"/a/b", "", "/a/", false, ""},
		{"/a/b", "", "/a/b/c", false, ""},
		{"/a/b", "", "/b/a", false, ""},
		// The query is the caller's to remove before matching.
		{"/a", "", "/a?x=1", false, ""},

		// The root pattern matches the root only.
		{"/", "", "/", true, ""},
		{"/", "", "/a", false, ""},
		{"/", "", "//", false, ""},
		{"/", "", "", false, ""},

		// {name}: one non-empty segment, captured.
		{"/orgs/{org}/sales", "org", "/orgs/acme-eu/sales", true, "acme-eu"},
		{"/orgs/{org}/sales", "org", "/orgs//sales", false, ""},
		{"/orgs/{org}/sales", "org", "/orgs/sales", false, ""},
		{"/orgs/{org}/sales", "org", "/orgs/acme/sales/x", false, ""},
		{"/orgs/{org}/sales", "org", "/orgs/acme/sales/", false, ""},
		{"/orgs/{org}/sales", "org", "/orgs/acme/other", false, ""},
		{"/orgs/{org}/sales", "", "/orgs/acme/sales", true, ""},
		{"/a/{x}/{y}", "y", "/a/1/2", true, "2"},
		{"/a/{x}/{y}", "x", "/a/1/2", true, "1"},
		{"/a/{x}", "x", "/a/b/", false, ""},
		{"/a/{x}", "x", "/a/", false, ""},
		{"/{x}", "x", "/%2F", true, "%2F"},

		// *: one non-empty segment.
		{"/a/*/c", "", "/a/b/c", true, ""},
		{"/a/*/c", "", "/a//c", false, ""},
		{"/a/*/c", "", "/a/c", false, ""},
		{"/a/*/c", "", "/a/b/c/d", false, ""},
		{"/a/*", "", "/a/b", true, ""},
		{"/a/*", "", "/a/", false, ""},
		{"/a/*", "", "/a", false, ""},
		{"/a/*", "", "/a/b/", false, ""},

		// **: any rest, empty included; "/a/**" matches "/a" and "/a/".
		{"/a/**", "", "/a", true, ""},
		{"/a/**", "", "/a/", true, ""},
		{"/a/**", "", "/a/b", true, ""},
		{"/a/**", "", "/a/b/c/", true, ""},
		{"/a/**", "", "/ab", false, ""},
		{"/a/**", "", "/", false, ""},
		{"/a/**", "", "/b/a", false, ""},
		{"/**", "", "/", true, ""},
		{"/**", "", "/x", true, ""},
		{"/**", "", "/x/y/", true, ""},
		{"/**", "", "", false, ""},
		{"/**", "", "x", false, ""},
		{"/orgs/{org}/sales/**", "org", "/orgs/acme-eu/sales", true, "acme-eu"},
		{"/orgs/{org}/sales/**", "org", "/orgs/acme-eu/sales/", true, "acme-eu"},
		{"/orgs/{org}/sales/**", "org", "/orgs/acme-eu/sales/2026/q1", true, "acme-eu"},
		{"/orgs/{org}/sales/**", "org", "/orgs/acme-eu/salesx", false, ""},
		{"/orgs/{org}/sales/**", "org", "/orgs/acme-eu", false, ""},
		{"/orgs/{org}/sales/**", "org", "/orgs//sales/x", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.pattern+" "+tc.path, func(t *testing.T) {
			pt, err := compilePattern(tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			capture := -1
			if tc.capture != "" {
				if capture = pt.captureIndex(tc.capture); capture < 0 {
					t.Fatalf("no capture {%s}", tc.capture)
				}
			}
			value, ok := pt.match(tc.path, capture)
			if !ok {
				value = "" // meaningless without a match
			}
			if ok != tc.match || value != tc.value {
				t.Errorf("match(%q) = %q, %v; want %q, %v", tc.path, value, ok, tc.value, tc.match)
			}
		})
	}
}

func TestCaptureIndex(t *testing.T) {
	pt, err := compilePattern("/orgs/{org}/users/{user}/**")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int{"org": 1, "user": 3, "orgs": -1, "users": -1, "": -1, "**": -1} {
		if got := pt.captureIndex(name); got != want {
			t.Errorf("captureIndex(%q) = %d, want %d", name, got, want)
		}
	}
}

const matchPolicy = `version: 1
endpoints:
  - name: get-only
    match: {methods: [GET, head], path: /m}
  - name: any-method
    match: {path: /any}
  - name: exact-host
    match: {path: /h, host: API.Example.com}
  - name: wild-host
    match: {path: /w, host: "*.example.com"}
  - name: org-path
    match: {methods: [POST], path: "/orgs/{org}/**"}
    org: {from: path, name: org}
  - name: org-header
    match: {path: "/x/{org}"}
    org: {from: header, name: x-org}
`

func TestEndpointMatch(t *testing.T) {
	s := mustLoad(t, matchPolicy)
	tests := []struct {
		endpoint, method, host, path string
		match                        bool
		org                          string
	}{
		{"get-only", "GET", "", "/m", true, ""},
		{"get-only", "HEAD", "api.example.com", "/m", true, ""},
		{"get-only", "POST", "", "/m", false, ""},
		{"get-only", "get", "", "/m", false, ""}, // the caller upper-cases
		{"get-only", "GET", "", "/m/", false, ""},
		{"any-method", "PURGE", "", "/any", true, ""},
		{"any-method", "DELETE", "anything", "/any", true, ""},
		{"exact-host", "GET", "api.example.com", "/h", true, ""},
		{"exact-host", "GET", "API.EXAMPLE.COM", "/h", false, ""}, // the caller lower-cases
		{"exact-host", "GET", "", "/h", false, ""},
		{"exact-host", "GET", "x.api.example.com", "/h", false, ""},
		{"exact-host", "GET", "api.example.com.evil.test", "/h", false, ""},
		{"exact-host", "GET", "api.example.com:443", "/h", false, ""}, // the caller strips the port
		{"wild-host", "GET", "a.example.com", "/w", true, ""},
		{"wild-host", "GET", "a.b.example.com", "/w", true, ""},
		{"wild-host", "GET", "example.com", "/w", false, ""},
		{"wild-host", "GET", ".example.com", "/w", false, ""},
		{"wild-host", "GET", "evilexample.com", "/w", false, ""},
		{"wild-host", "GET", "example.com.evil.test", "/w", false, ""},
		{"wild-host", "GET", "", "/w", false, ""},
		{"org-path", "POST", "", "/orgs/acme-eu/sales", true, "acme-eu"},
		{"org-path", "POST", "", "/orgs/acme-eu", true, "acme-eu"},
		{"org-path", "GET", "", "/orgs/acme-eu/sales", false, ""},
		{"org-path", "POST", "", "/orgs", false, ""},
		{"org-header", "GET", "", "/x/acme-eu", true, ""}, // read from the header, not the path
	}
	for _, tc := range tests {
		t.Run(strings.Join([]string{tc.endpoint, tc.method, tc.host, tc.path}, " "), func(t *testing.T) {
			org, ok := s.Endpoint(tc.endpoint).Match(tc.method, tc.host, tc.path)
			if ok != tc.match || org != tc.org {
				t.Errorf("Match = %q, %v; want %q, %v", org, ok, tc.org, tc.match)
			}
		})
	}
}

func TestEndpointCapturePath(t *testing.T) {
	s := mustLoad(t, matchPolicy)
	tests := []struct {
		endpoint, path string
		ok             bool
		org            string
	}{
		{"org-path", "/orgs/acme-eu/sales", true, "acme-eu"},
		{"org-path", "/other", false, ""},
		{"get-only", "/m", true, ""},
	}
	for _, tc := range tests {
		if org, ok := s.Endpoint(tc.endpoint).CapturePath(tc.path); ok != tc.ok || org != tc.org {
			t.Errorf("%s.CapturePath(%q) = %q, %v; want %q, %v", tc.endpoint, tc.path, org, ok, tc.org, tc.ok)
		}
	}
}

func TestSnapshotMatchFirstWins(t *testing.T) {
	const endpoints = `
  - name: health
    match: {path: /healthz}
    anonymous: true
  - name: admin-keys-read
    match: {methods: [GET], path: /admin/keys}
  - name: admin
    match: {path: "/admin/**"}
  - name: orgs
    match: {path: "/orgs/{org}/**"}
    org: {from: path, name: org}
`
	const catchAll = `
  - name: catch-all
    match: {path: "/**"}
`
	tests := []struct {
		policy, method, path, want, org string
	}{
		{endpoints + catchAll, "GET", "/healthz", "health", ""},
		{endpoints + catchAll, "GET", "/healthz/", "catch-all", ""},
		{endpoints + catchAll, "GET", "/admin/keys", "admin-keys-read", ""},
		{endpoints + catchAll, "POST", "/admin/keys", "admin", ""},
		{endpoints + catchAll, "GET", "/admin", "admin", ""},
		{endpoints + catchAll, "PUT", "/orgs/acme-eu/sales/1", "orgs", "acme-eu"},
		{endpoints + catchAll, "GET", "/orgs", "catch-all", ""},
		{endpoints + catchAll, "GET", "/", "catch-all", ""},
		{endpoints, "GET", "/nowhere", "", ""},
		{catchAll + endpoints, "GET", "/healthz", "catch-all", ""},
		{catchAll + endpoints, "GET", "/orgs/acme-eu/x", "catch-all", ""},
	}
	for _, tc := range tests {
		first := "endpoints first"
		if strings.HasPrefix(tc.policy, catchAll) {
			first = "catch-all first"
		}
		t.Run(first+" "+tc.method+" "+tc.path, func(t *testing.T) {
			s := mustLoad(t, "version: 1\nendpoints:"+tc.policy)
			e, org := s.Match(tc.method, "api.example.com", tc.path)
			var got string
			if e != nil {
				got = e.Name
			}
			if got != tc.want || org != tc.org {
				t.Errorf("Match = %q, %q; want %q, %q", got, org, tc.want, tc.org)
			}
		})
	}
}

// matchCases are requests against the example policy: an early endpoint, a
// late one that captures the organization, and one that matches nothing.
var matchCases = []struct{ name, method, host, path, want string }{
	{"first", "GET", "api.example.com", "/healthz", "health"},
	{"capture", "GET", "api.example.com", "/orgs/acme-eu/sales/2026/q1", "sales-read"},
	{"none", "GET", "api.example.com", "/nowhere/at/all", ""},
}

func TestSnapshotMatchDoesNotAllocate(t *testing.T) {
	s, err := LoadPath(examplePolicy, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, mc := range matchCases {
		t.Run(mc.name, func(t *testing.T) {
			e, _ := s.Match(mc.method, mc.host, mc.path)
			if got := endpointName(e); got != mc.want {
				t.Fatalf("matched %q, want %q", got, mc.want)
			}
			allocs := testing.AllocsPerRun(100, func() {
				s.Match(mc.method, mc.host, mc.path)
			})
			if allocs != 0 {
				t.Errorf("Match allocates %.1f times per call", allocs)
			}
		})
	}
}

func endpointName(e *Endpoint) string {
	if e == nil {
		return ""
	}
	return e.Name
}

func BenchmarkMatch(b *testing.B) {
	s, err := LoadPath(examplePolicy, Options{})
	if err != nil {
		b.Fatal(err)
	}
	for _, mc := range matchCases {
		b.Run(mc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Match(mc.method, mc.host, mc.path)
			}
		})
	}
}
