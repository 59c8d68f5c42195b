package authz

import (
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	tests := []struct {
		raw  string
		want string
		ok   bool
	}{
		{"/", "/", true},
		{"/orgs/acme/sales", "/orgs/acme/sales", true},
		{"/orgs/acme/sales?key=secret", "/orgs/acme/sales", true},
		{"/a#frag", "/a", true},
		{"/a/", "/a/", true},
		{"//a///b", "/a/b", true},
		{"/a/./b", "/a/b", true},
		{"/a/b/../c", "/a/c", true},
		{"/a/b/..", "/a/", true}, // RFC 3986 remove_dot_segments
		{"/a/b/../", "/a/", true},
		{"/a/%62", "/a/b", true},
		{"/a/%2e%2e/b", "/b", true},
		{"/orgs/acme%2Deu", "/orgs/acme-eu", true},
		{"/a/.hidden", "/a/.hidden", true},
		{"/%3F", "/%3F", true},
		{"/a%3fb/%23", "/a%3Fb/%23", true},
		{"/a%20b", "/a%20b", true},
		{"/docs%3F/../admin", "/admin", true},
		{"/%7euser", "/~user", true},
		{"/a/..b", "/a/..b", true},
		{"/..", "", false},
		{"/a/../..", "", false},
		{"/%2e%2e/etc", "", false},
		{"/a%2Fb", "", false},
		{"/a%2fb", "", false},
		{"/a%5Cb", "", false},
		{"/a\\b", "", false},
		{"/a%00b", "", false},
		{"/a\x00b", "", false},
		{"/a\nb", "", false},
		{"/a%zz", "", false},
		{"/a%4", "", false},
		{"a/b", "", false},
		{"", "", false},
		{"?x=1", "", false},
		{"*", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			got, ok := NormalizePath(tt.raw)
			if got != tt.want || ok != tt.ok {
				t.Errorf("NormalizePath(%q) = %q, %v; want %q, %v", tt.raw, got, ok, tt.want, tt.ok)
			}
		})
	}
}

func TestNormalizePathCleanDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { NormalizePath("/orgs/acme-eu/sales/reports?year=2026") }); n != 0 {
		t.Errorf("clean path allocated %v times", n)
	}
}

func TestNormalizeHost(t *testing.T) {
	for raw, want := range map[string]string{
		"api.example.com":       "api.example.com",
		"api.example.com:8443":  "api.example.com",
		"API.Example.COM:443":   "api.example.com",
		"api.example.com.":      "api.example.com",
		"[::1]:9000":            "[::1]",
		"[::1]":                 "[::1]",
		"":                      "",
		"127.0.0.1:80":          "127.0.0.1",
		"api.example.com.:8443": "api.example.com",
	} {
		if got := NormalizeHost(raw); got != want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", raw, got, want)
		}
	}
}

func TestBearerToken(t *testing.T) {
	tests := []struct {
		in, tok string
		form    bearerForm
	}{
		{"Bearer abc", "abc", bearerOK},
		{"bearer abc", "abc", bearerOK},
		{"BEARER  abc ", "abc", bearerOK},
		{"Bearer\tabc", "abc", bearerOK},
		{"Bearer \t abc\t", "abc", bearerOK},
		{" Bearer abc", "abc", bearerOK},
		{"Bearer a-b.c_d~e+f/g==", "a-b.c_d~e+f/g==", bearerOK},
		{"Basic dXNlcjpwYXNz", "", notBearer},
		{"Digest username=\"a\", realm=\"b\"", "", notBearer},
		{"Negotiate abc", "", notBearer},
		{"", "", notBearer},
		{"Bear abc", "", notBearer},
		{"Bearer", "", bearerMalformed},
		{"Bearer ", "", bearerMalformed},
		{"Bearer\t", "", bearerMalformed},
		{"Bearer   \t ", "", bearerMalformed},
		{"Bearerabc", "", bearerMalformed},
		{"bearer:abc", "", bearerMalformed},
		{"Bearers abc", "", bearerMalformed},
		{"Bearer a b", "", bearerMalformed},
		{"Bearer a,Bearer b", "", bearerMalformed},
		{"Bearer a,b", "", bearerMalformed},
		{"Bearer a=b", "", bearerMalformed},
		{"Bearer =", "", bearerMalformed},
		{"Bearer a\x00", "", bearerMalformed},
		{"Bearer caf\xc3\xa9", "", bearerMalformed},
		{"Bearer \"abc\"", "", bearerMalformed},
		{"Basic dXNlcjpwYXNz,Bearer abc", "", bearerMalformed}, // two headers joined
		{"Basic dXNlcjpwYXNz, bearer abc", "", bearerMalformed},
	}
	for _, tt := range tests {
		tok, form := bearerToken(tt.in)
		if tok != tt.tok || form != tt.form {
			t.Errorf("bearerToken(%q) = %q, %v; want %q, %v", tt.in, tok, form, tt.tok, tt.form)
		}
	}
}

func TestCanonicalMethod(t *testing.T) {
	for in, want := range map[string]string{
		"GET": "GET", "get": "GET", "Delete": "DELETE", "pAtCh": "PATCH", "PROPFIND": "PROPFIND",
		"propfind": "PROPFIND", "m-search": "M-SEARCH", "X_Y!#$%&'*+.^`|~9": "X_Y!#$%&'*+.^`|~9",
		"": "!", "GET ": "!", "G\tET": "!", "GE\x7fT": "!", "GET/1": "!", "G(E)T": "!", "caf\xc3\xa9": "!",
		"GET,POST": "!", "\"GET\"": "!", "GET:": "!",
	} {
		got, ok := canonicalMethod(in)
		if !ok {
			got = "!"
		}
		if got != want {
			t.Errorf("canonicalMethod(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzNormalizePath checks what the rules promise: a path that is accepted
// is absolute, has no query, no dot segments, no empty segments but a
// trailing one, no backslash or control byte, and normalizing it again
// changes nothing.
func FuzzNormalizePath(f *testing.F) {
	for _, s := range []string{"/", "/a/b", "/a/../b", "/%2e%2e/", "/a%2Fb", "//x//y/", "/a?b=c", "/a/./b/.", "/%41%42", "/..", "/a\\b", "/\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		p, ok := NormalizePath(raw)
		if !ok {
			return
		}
		if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, "?#\\") || strings.Contains(p, "//") {
			t.Fatalf("NormalizePath(%q) = %q: not normalized", raw, p)
		}
		for _, seg := range strings.Split(p[1:], "/") {
			if seg == "." || seg == ".." {
				t.Fatalf("NormalizePath(%q) = %q keeps a dot segment", raw, p)
			}
		}
		for i := 0; i < len(p); i++ {
			if p[i] < 0x20 || p[i] == 0x7f {
				t.Fatalf("NormalizePath(%q) = %q keeps a control byte", raw, p)
			}
		}
		if !strings.Contains(p, "%") {
			if again, ok := NormalizePath(p); !ok || again != p {
				t.Fatalf("NormalizePath(%q) = %q, but again gives %q, %v", raw, p, again, ok)
			}
		}
	})
}
