package authz

import (
	"net/http"
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

// FuzzBearerToken checks the Authorization rules: a value that starts with
// "bearer" is never another scheme's, an accepted token is one token68 that
// reads back the same, and a value with a bearer credential after a comma is
// never accepted.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer\tabc", "Bearer", "Basic x,Bearer y", "BearerX", "Bearer a b", "Bearer a==", "bearer:k", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		tok, form := bearerToken(v)
		tv := trimSpace(v)
		looks := len(tv) >= 6 && strings.EqualFold(tv[:6], "bearer")
		switch form {
		case bearerOK:
			if !looks || !token68(tok) || strings.ContainsAny(tok, " \t,") {
				t.Fatalf("bearerToken(%q) accepted %q", v, tok)
			}
			if again, f2 := bearerToken("Bearer " + tok); f2 != bearerOK || again != tok {
				t.Fatalf("bearerToken(%q) = %q, but %q reads %q, %v", v, tok, "Bearer "+tok, again, f2)
			}
		case notBearer:
			if looks || listsBearer(tv) {
				t.Fatalf("bearerToken(%q) says another scheme", v)
			}
		}
		if form != bearerOK && tok != "" {
			t.Fatalf("bearerToken(%q) = %q with form %v", v, tok, form)
		}
	})
}

// FuzzCanonicalMethod: a method is accepted exactly when it is a token, and
// then read as its upper case.
func FuzzCanonicalMethod(f *testing.F) {
	for _, s := range []string{"GET", "get", "pAtCh", "M-SEARCH", "", "GET ", "poſt", "DEL\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, m string) {
		got, ok := canonicalMethod(m)
		token := m != ""
		for i := 0; i < len(m); i++ {
			token = token && tchar(m[i])
		}
		if ok != token || ok && got != strings.ToUpper(m) {
			t.Fatalf("canonicalMethod(%q) = %q, %v", m, got, ok)
		}
	})
}

// FuzzHTTPHeadersGet: the HTTP adapter reads a header as net/http stores it,
// every copy joined with ",", whatever the case of the name asked for.
func FuzzHTTPHeadersGet(f *testing.F) {
	f.Add("x-api-key", "X-Api-Key", "a", "b")
	f.Add("authorization", "authorization", "Bearer k", "")
	f.Add("x_org", "X_org", "a", "b")
	f.Fuzz(func(t *testing.T, name, stored, v1, v2 string) {
		h := http.Header{}
		h.Add(stored, v1)
		h.Add(stored, v2)
		want := strings.Join(h.Values(name), ",")
		if got := HTTPHeaders(h).Get(name); got != want {
			t.Fatalf("Get(%q) with %q: %q, %q stored = %q, want %q", name, stored, v1, v2, got, want)
		}
	})
}
