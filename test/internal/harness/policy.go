package harness

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
)

// PolicyTemplate parses a policy written as a text/template in which
// {{h .Raw}} is the digest of a raw credential, as the policy lists it.
func PolicyTemplate(name, text string) *template.Template {
	return template.Must(template.New(name).Funcs(template.FuncMap{
		"h": func(raw string) string { return policy.FormatDigest(apikey.Digest(raw)) },
	}).Parse(text))
}

// WritePolicy executes tmpl with data into dir/policy.yaml (a fresh
// temporary directory when dir is "") and returns the file's path.
func WritePolicy(t testing.TB, dir string, tmpl *template.Template, data any) string {
	t.Helper()
	var b strings.Builder
	if err := tmpl.Execute(&b, data); err != nil {
		t.Fatal(err)
	}
	if dir == "" {
		dir = t.TempDir()
	}
	path := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
