package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/source"
)

// /readyz?verbose answers anyone who reaches the admin port: its last_error
// names the file, line and problem, never a keygate key, and is bounded.
func TestReadyzVerboseRedactsLastError(t *testing.T) {
	key, err := apikey.New("kg_7Hq2pXa1")
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{
		`policy.yaml:12: api_keys[0].expires_at: "` + key + `" is not an RFC 3339 time`,
		`policy.yaml:12: api_keys[0].user: ` + strings.Repeat("x", 240) + key + ` (and 3 more)`, // the bound falls inside the key
	} {
		st := source.NewStore()
		st.Refuse(errors.New(msg))
		rec := httptest.NewRecorder()
		AdminHandler(NewHealth(st), nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz?verbose", nil))
		var body struct {
			LastError string `json:"last_error"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%v: %s", err, rec.Body)
		}
		if strings.Contains(rec.Body.String(), key[len("kg_7Hq2pXa1_"):][:8]) {
			t.Errorf("/readyz?verbose shows the key's secret: %s", rec.Body)
		}
		if !strings.HasPrefix(body.LastError, "policy.yaml:12: api_keys[0].") || !strings.Contains(body.LastError, "kg_7Hq2pXa1"+apikey.Redacted) {
			t.Errorf("last_error %q must keep file:line, field and the key's id", body.LastError)
		}
		if len(body.LastError) > maxPublicError+len("…") {
			t.Errorf("last_error is %d bytes, want at most %d", len(body.LastError), maxPublicError)
		}
	}
}
