package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/keygate/keygate/internal/source"
)

// A component reported down shows under components in /readyz?verbose,
// and keygate stays as ready as its policy makes it: requests that do not
// need the component are still decided.
func TestReadyzComponents(t *testing.T) {
	st := source.NewStore()
	h := NewHealth(st)
	h.Report("session_store", func() any { return map[string]any{"up": false, "last_error": "connection refused"} })
	rec := httptest.NewRecorder()
	AdminHandler(h, nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz?verbose", nil))
	var body struct {
		Reason     string `json:"reason"`
		Components map[string]struct {
			Up        bool   `json:"up"`
			LastError string `json:"last_error"`
		} `json:"components"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("%v: %s", err, rec.Body)
	}
	if c, ok := body.Components["session_store"]; !ok || c.Up || c.LastError != "connection refused" {
		t.Errorf("components = %+v, want session_store down with its error: %s", body.Components, rec.Body)
	}
	if body.Reason != "no policy loaded yet" {
		t.Errorf("reason %q: the component must not be the reason for readiness", body.Reason)
	}
}
