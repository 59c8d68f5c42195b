package ui

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// TestHandler asks a real HTTP server running Handler for each path as a
// browser would, and checks what the browser relies on: the status, the
// type it renders the body as, caching, and the security headers.
func TestHandler(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()

	tests := []struct {
		method, path string
		status       int
		contentType  string
		bodyHas      string
		allow        string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8", `<script src="/ui/app.js" defer></script>`, ""},
		{"GET", "/ui/app.js", 200, "text/javascript; charset=utf-8", "headers['X-Requested-With'] = 'keygate'", ""},
		{"GET", "/ui/app.css", 200, "text/css; charset=utf-8", "font-family: system-ui", ""},
		{"GET", "/ui/favicon.svg", 200, "image/svg+xml", "<svg", ""},
		{"HEAD", "/", 200, "text/html; charset=utf-8", "", ""},
		{"GET", "/ui/", 404, "application/json", `"error":"not_found"`, ""},
		{"GET", "/ui/missing.js", 404, "application/json", `"error":"not_found"`, ""},
		{"GET", "/index.html", 404, "application/json", `"error":"not_found"`, ""},
		{"POST", "/", 405, "application/json", `"error":"method_not_allowed"`, "GET, HEAD"},
		{"DELETE", "/ui/app.js", 405, "application/json", `"error":"method_not_allowed"`, "GET, HEAD"},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			h := resp.Header
			if got := h.Get("Content-Type"); got != tc.contentType {
				t.Errorf("Content-Type %q, want %q", got, tc.contentType)
			}
			if !strings.Contains(string(body), tc.bodyHas) {
				t.Errorf("body does not contain %q:\n%.300s", tc.bodyHas, body)
			}
			if tc.method == "HEAD" && len(body) != 0 {
				t.Errorf("HEAD answered a body of %d bytes", len(body))
			}
			if got := h.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
			for name, want := range map[string]string{
				"Content-Security-Policy": contentSecurityPolicy,
				"X-Content-Type-Options":  "nosniff",
				"X-Frame-Options":         "DENY",
				"Referrer-Policy":         "no-referrer",
			} {
				if got := h.Get(name); got != want {
					t.Errorf("%s %q, want %q", name, got, want)
				}
			}
			wantCache := "no-cache"
			if tc.status != 200 {
				wantCache = "no-store"
			}
			if got := h.Get("Cache-Control"); got != wantCache {
				t.Errorf("Cache-Control %q, want %q", got, wantCache)
			}
		})
	}
}

// TestRevalidation: a browser that has the file answers If-None-Match with
// the ETag it got, and gets a 304 without the body.
func TestRevalidation(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, path := range []string{"/", "/ui/app.js", "/ui/app.css"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		etag := resp.Header.Get("ETag")
		if !regexp.MustCompile(`^"[0-9a-f]{16}"$`).MatchString(etag) {
			t.Fatalf("%s: ETag %q", path, etag)
		}
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		req.Header.Set("If-None-Match", etag)
		resp, err = http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified || len(body) != 0 {
			t.Errorf("%s with If-None-Match %s: status %d, %d bytes; want 304, none", path, etag, resp.StatusCode, len(body))
		}
	}
}

// TestContentSecurityPolicyHolds: the CSP forbids inline script and style,
// so the page must have none, or the browser would silently not run it. The
// browser suite (test/browser) also fails on any CSP report; this names the
// offending markup without a browser.
func TestContentSecurityPolicyHolds(t *testing.T) {
	for _, name := range []string{"index.html", "favicon.svg"} {
		data, err := files.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []struct{ re, what string }{
			{`<script(\s[^>]*)?>[^<]*\S[^<]*</script>`, "an inline script"},
			{`<style[\s>]`, "a <style> element"},
			{`\sstyle\s*=`, "a style attribute"},
			{`\son[a-z]+\s*=`, "an inline event handler"},
			{`(?:src|href)\s*=\s*"(?:https?:)?//`, "a resource from another origin"},
			{`javascript:`, "a javascript: URL"},
		} {
			if loc := regexp.MustCompile(`(?i)` + bad.re).FindIndex(data); loc != nil {
				t.Errorf("%s has %s, which the page's CSP refuses: %q", name, bad.what, data[loc[0]:loc[1]])
			}
		}
		for _, tag := range regexp.MustCompile(`(?i)<script[^>]*>`).FindAll(data, -1) {
			if !regexp.MustCompile(`\ssrc="/ui/[a-z]+\.js"`).Match(tag) {
				t.Errorf("%s has a script that is not one of the page's own files: %s", name, tag)
			}
		}
	}
}
