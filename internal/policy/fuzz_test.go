package policy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

var fuzzSnippets = []string{
	"",
	"version: 1\n",
	"{}",
	"[]",
	"null",
	"version: 1\n---\nversion: 1\n",
	"version: 1\nsettings: {realm: x, max_org_keys: -1, default: allow}\n",
	"version: 1\nendpoints: [{name: e, match: {path: \"/a/{x}/**\", host: \"*.b\"}, org: {from: path, name: x}}]\n",
	"version: 1\ngroups: &g [{name: a}]\ntenants: *g\n",
	"version: 1\nbase: &b {id: x}\napi_keys: [{<<: *b, hash: 'sha256:'}]\n",
	"version: 1\napi_keys: [{expires_at: 2027-06-30}]\nsessions: [{expires_at: {}}]\n",
	`{"version": 1, "tenants": [{"id": "t", "orgs": ["o"]}], "sessions": [{"id": "s", "hash": "sha256:` +
		"0000000000000000000000000000000000000000000000000000000000000000" + `", "user": "u", "tenant": "t", "org": "o"}]}`,
}

// FuzzParse feeds arbitrary text to Parse and Compile: they must never panic,
// and every error must be Errors whose entries name the file.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(examplePolicy); err == nil {
		f.Add(data)
	} else {
		f.Fatal(err)
	}
	err := filepath.WalkDir("testdata", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Base(filepath.Dir(p)) == "FuzzParse" {
			return err
		}
		data, err := os.ReadFile(p)
		if err == nil {
			f.Add(data)
		}
		return err
	})
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range fuzzSnippets {
		f.Add([]byte(s))
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.yaml"
		frag, err := Parse(name, data)
		if err != nil {
			checkErrors(t, err)
			return
		}
		s, err := Compile([]*Fragment{frag}, Options{Source: name})
		if err != nil {
			checkErrors(t, err)
			return
		}
		// A policy that compiles can be served.
		for _, e := range s.Endpoints() {
			e.Match("GET", "api.example.com", "/orgs/acme/sales")
			e.Allows(s.APIKeys()...)
		}
		s.Match("POST", "a.example.com", "/")
		_ = s.Challenge + s.ChallengeInvalid
	})
}

func checkErrors(t *testing.T, err error) {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("error is %T, not Errors: %v", err, err)
	}
	if len(es) == 0 {
		t.Fatal("empty Errors returned as an error")
	}
	for _, e := range es {
		if e == nil || e.File == "" || e.Msg == "" {
			t.Fatalf("error without a file or message: %#v", e)
		}
		if e.Line < 0 {
			t.Fatalf("negative line: %v", e)
		}
	}
	_ = es.Error()
}
