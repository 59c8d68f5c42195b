// Package ui is the key-management page: one HTML document, a stylesheet
// and a script, embedded in the binary and served by the management API at
// "/" (the page) and "/ui/" (its assets). The page calls the API with the
// caller's own session cookie; it holds no state the API does not give it.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io"
	"net/http"
	"time"
)

//go:embed index.html app.css app.js favicon.svg
var files embed.FS

// contentSecurityPolicy allows the page only its own origin: its script,
// stylesheet and icon, and fetches to the API beside it. No inline script or
// style (so injected markup cannot run), no plugin, no <base> rewrite, no
// form posting elsewhere, and no framing (clickjacking a Revoke button).
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; " +
	"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// asset is one embedded file as served.
type asset struct {
	name        string // for http.ServeContent
	contentType string
	etag        string
	body        []byte
}

// load reads the embedded files once, keyed by the path each is served at.
func load() map[string]asset {
	m := map[string]asset{}
	for path, f := range map[string]struct{ file, contentType string }{
		"/":               {"index.html", "text/html; charset=utf-8"},
		"/ui/app.css":     {"app.css", "text/css; charset=utf-8"},
		"/ui/app.js":      {"app.js", "text/javascript; charset=utf-8"},
		"/ui/favicon.svg": {"favicon.svg", "image/svg+xml"},
	} {
		body, err := files.ReadFile(f.file)
		if err != nil {
			// go:embed fails the build when a file is missing: unreachable.
			panic("ui: " + f.file + " is not embedded: " + err.Error())
		}
		sum := sha256.Sum256(body)
		m[path] = asset{name: f.file, contentType: f.contentType, etag: `"` + hex.EncodeToString(sum[:8]) + `"`, body: body}
	}
	return m
}

// Handler serves the page at "/" and its assets under "/ui/", with GET and
// HEAD; any other path is a JSON 404 in the API's error form.
func Handler() http.Handler {
	return page(load())
}

// page serves the files of load.
type page map[string]asset

func (p page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", contentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY") // frame-ancestors for browsers that predate it
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	a, ok := p[r.URL.Path]
	if !ok {
		writeError(w, http.StatusNotFound, "not_found", "no such page; the key page is at /")
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		h.Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, "method_not_allowed", "the page is read with GET")
		return
	}
	// The URLs carry no version, and a new binary changes the files:
	// browsers revalidate every time, and the ETag makes that a 304.
	h.Set("Cache-Control", "no-cache")
	h.Set("Content-Type", a.contentType)
	h.Set("ETag", a.etag)
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

func writeError(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `{"error":"`+code+`","message":"`+message+`"}`+"\n")
}
