package policy

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// TestLargeJSONErrors: a JSON policy too large to re-read with the YAML
// decoder still gets each problem reported at its line, from the JSON text.
func TestLargeJSONErrors(t *testing.T) {
	const n, bad = 30_000, 25_000
	base := scalePolicy(n)
	if len(base) <= yamlFallbackMax {
		t.Fatalf("policy of %d bytes does not exceed yamlFallbackMax", len(base))
	}
	lineOf := func(data []byte, marker string) int {
		i := bytes.Index(data, []byte(marker))
		if i < 0 {
			t.Fatalf("marker %q not in policy", marker)
		}
		return 1 + bytes.Count(data[:i], []byte("\n"))
	}
	edit := func(old, new string) []byte { return editScalePolicy(t, base, old, new) }
	tests := []struct {
		name      string
		data      []byte
		marker    string // the line the error must name contains it
		path, msg string
	}{
		{
			name:   "undeclared org",
			data:   edit(scaleKeyAt(bad), scaleKeyAt(bad)+`"org": "nowhere", `),
			marker: `"org": "nowhere"`, path: fmt.Sprintf("api_keys[%d].org", bad),
			msg: `organization "nowhere" is not declared under tenants`,
		},
		{
			name:   "unknown field",
			data:   edit(scaleKeyAt(bad), scaleKeyAt(bad)+`"secret": "x", `),
			marker: scaleKeyAt(bad), path: fmt.Sprintf("api_keys[%d]", bad),
			msg: `unknown field "secret"`,
		},
		{
			name:   "wrong type",
			data:   edit(scaleKeyAt(bad), scaleKeyAt(bad)+`"disabled": "yes", `),
			marker: scaleKeyAt(bad), path: fmt.Sprintf("api_keys[%d].disabled", bad),
			msg: "a string has the wrong type here (want true or false)",
		},
		{
			name:   "syntax",
			data:   edit(scaleKeyAt(bad), `{"id" "k`+fmt.Sprint(bad)+`", `),
			marker: fmt.Sprintf(`{"id" "k%d"`, bad), path: fmt.Sprintf("api_keys[%d].id", bad),
			msg: "invalid character",
		},
		{
			name:   "credentials not a list",
			data:   edit(`"api_keys": [`, `"api_keys": {"x": 1}, "unused": [`),
			marker: `"api_keys"`, path: "api_keys",
			msg: "a mapping has the wrong type here (want a list)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load([]Input{{Name: "big.json", Data: tc.data}}, Options{})
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("want located errors, got %v", err)
			}
			e := es[0]
			want := lineOf(tc.data, tc.marker)
			if e.File != "big.json" || e.Line != want || e.Path != tc.path || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got %s:%d: %s: %s\nwant big.json:%d: %s: ...%s...", e.File, e.Line, e.Path, e.Msg, want, tc.path, tc.msg)
			}
		})
	}
}
