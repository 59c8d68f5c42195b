package policy

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
	`{"version": 1, "tenants": [{"id": "t"}], "api_keys": [{"id": "a", "hash": "sha256:` + strings.Repeat("1", 64) +
		`", "tenant": "t", "user": "u"}, {"id": "a", "hash": "sha256:` + strings.Repeat("1", 64) + `", "tenant": "t", "user": "u"}]}`,
	`{"version": 1, "api_keys": [1, {"x": 2}], "sessions": null}`,
	`{"version": 1, "api_keys": null, "sessions": [], "api_keys": []}`,
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
		// Load defers JSON credential arrays to Compile; Parse decodes them
		// up front. Both must come to the same answer.
		deferred, derr := Load([]Input{{Name: name, Data: data}}, Options{Source: name})
		frag, err := Parse(name, data)
		if err != nil {
			checkErrors(t, err)
			sameOutcome(t, err, derr, nil, deferred)
			return
		}
		s, err := Compile([]*Fragment{frag}, Options{Source: name})
		sameOutcome(t, err, derr, s, deferred)
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

func sameOutcome(t *testing.T, err, derr error, s, deferred *Snapshot) {
	t.Helper()
	switch {
	case (err == nil) != (derr == nil):
		t.Fatalf("Parse+Compile: %v; Load: %v", err, derr)
	case err != nil && err.Error() != derr.Error():
		t.Fatalf("errors differ:\nParse+Compile: %v\nLoad: %v", err, derr)
	case s != nil && s.Counts() != deferred.Counts():
		t.Fatalf("counts differ: %+v, %+v", s.Counts(), deferred.Counts())
	}
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
