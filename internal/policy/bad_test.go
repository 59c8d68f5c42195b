package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// badDir holds one fixture per failure: NAME.bad.yaml or NAME.bad.json, or a
// NAME.bad.d directory whose fragments (loaded in name order) fail together.
const badDir = "testdata/bad"

// badConfigs maps each fixture to the error a user sees: the line (0 when the
// problem has none), the field path and a part of the message that names the
// problem. A fixture fails for exactly one reason. For a directory the error
// is in its last fragment.
var badConfigs = []struct {
	file string
	line int
	path string
	msg  string
}{
	// Decoding: strict fields, types, documents.
	{"unknown_field.bad.yaml", 3, "", `unknown field "colour"`},
	{"api_key_headers_duplicate.bad.yaml", 4, "settings.api_key_headers[2]", `"x-api-key" is listed twice`},
	{"org_header_is_credential.bad.yaml", 7, "endpoints[0].org.name", `"X-Api-Key" is a credential header`},
	{"org_header_identity_prefix.bad.yaml", 7, "endpoints[0].org.name", `starts with the identity header prefix "x-keygate-"`},
	{"realm_control_char.bad.yaml", 4, "settings.realm", `must not contain quotes, backslashes or control characters`},
	{"unknown_field_nested.bad.yaml", 7, "", `unknown field "verb"`},
	{"unknown_field.bad.json", 10, "", `unknown field "secret"`},
	{"wrong_type_bool.bad.yaml", 5, "", `"maybe" has the wrong type here (want true or false)`},
	{"wrong_type_list.bad.yaml", 8, "", `"sales" has the wrong type here (want a list)`},
	{"wrong_type_scalar.bad.yaml", 4, "", `a list has the wrong type here (want a string)`},
	{"wrong_type_mapping.bad.yaml", 4, "", `a mapping has the wrong type here (want a list)`},
	{"wrong_type.bad.json", 4, "", `"five" has the wrong type here (want a number)`},
	// Large JSON credential arrays decode one element at a time while
	// compiling; their errors read the same as everywhere else.
	{"key_wrong_type.bad.json", 7, "", `"sales" has the wrong type here (want a list)`},
	{"key_field_case.bad.json", 5, "", `unknown field "Hash"`},
	{"session_not_object.bad.json", 5, "", `has the wrong type here (want a mapping)`},
	// Syntax: the line is where the text goes wrong, not where the block
	// or value around it starts (which is where yaml.v3 points).
	{"syntax_tab.bad.yaml", 4, "", "found character that cannot start any token"},
	{"syntax_tab_indent.bad.yaml", 5, "", "found a tab character that violates indentation"},
	{"syntax_colon.bad.yaml", 4, "", "mapping values are not allowed in this context"},
	{"syntax_indent.bad.yaml", 17, "", "did not find expected key (check this line's indentation)"},
	{"syntax_indent_nested.bad.yaml", 14, "", "did not find expected '-' indicator (check this line's indentation)"},
	{"syntax_sequence.bad.yaml", 6, "", "did not find expected '-' indicator"},
	{"syntax_unclosed_quote.bad.yaml", 5, "", "quoted value is not closed on this line: it runs on to line 9, where the text does not parse (did not find expected key)"},
	{"syntax_unclosed_quote_end.bad.yaml", 5, "", "quoted value is not closed before the end of the file"},
	{"syntax_flow_list.bad.yaml", 7, "", "did not find expected ',' or ']'"},
	{"syntax_flow_map.bad.yaml", 5, "", "did not find expected ',' or '}'"},
	{"syntax_block_scalar.bad.yaml", 7, "", "did not find expected key"},
	{"syntax_not_utf8.bad.yaml", 6, "", "incomplete UTF-8 octet sequence (a policy is UTF-8 text)"},
	{"syntax_unknown_alias.bad.yaml", 7, "", "unknown anchor 'orgs' referenced"},
	{"duplicate_key.bad.yaml", 5, "", `mapping key "realm" already defined at line 4`},
	{"syntax_duplicate_key.bad.json", 6, "settings", `mapping key "realm" already defined at line 4`},
	{"syntax_missing_comma.bad.json", 5, "", `invalid character '"' after object value (expecting ',' or '}')`},
	{"syntax_trailing_comma.bad.json", 5, "groups", `invalid character ',' at start of value`},
	{"syntax_unclosed_string.bad.json", 4, "settings.realm", "string is not closed on this line"},
	{"syntax_unclosed.bad.json", 4, "groups", "unexpected EOF"},
	{"two_documents.bad.yaml", 5, "", "more than one YAML document; put each policy in its own file"},
	{"empty.bad.yaml", 0, "", "policy is empty"},
	{"comments_only.bad.yaml", 0, "", "policy is empty"},
	{"expires_at_bad.bad.yaml", 10, "", `"next tuesday" is not an RFC 3339 time such as 2027-06-30T00:00:00Z`},
	{"expires_at_list.bad.yaml", 10, "", "expected an RFC 3339 time"},
	{"version_missing.bad.yaml", 2, "version", "version is required; this keygate reads version: 1"},
	{"version_unsupported.bad.yaml", 2, "version", "version 2 is not supported; this keygate reads version: 1"},

	// Settings.
	{"settings_twice.bad.d", 3, "settings", "settings are defined twice (first at testdata/bad/settings_twice.bad.d/10-first.yaml:2)"},
	{"realm_quote.bad.yaml", 4, "settings.realm", `realm "api \"example\"" must not contain quotes`},
	{"api_key_headers_empty.bad.yaml", 4, "settings.api_key_headers", "api_key_headers must name at least one header"},
	{"api_key_header_invalid.bad.yaml", 6, "settings.api_key_headers[1]", `"x api key" is not a valid header name`},
	{"session_header_invalid.bad.yaml", 4, "settings.session_header", `"session:" is not a valid header name`},
	{"identity_prefix_invalid.bad.yaml", 4, "settings.identity_header_prefix", `"x keygate-" is not a valid header name prefix`},
	{"session_header_is_api_key_header.bad.yaml", 5, "settings.session_header", `"x-api-key" is both an API key header and the session header`},
	{"credential_header_identity_prefix.bad.yaml", 5, "settings.identity_header_prefix", `credential header "x-api-key" starts with the identity header prefix "x-api-"`},
	// keygate removes every inbound header that starts with the identity
	// prefix: one that covers a standard or proxy header breaks requests.
	{"identity_prefix_content.bad.yaml", 5, "settings.identity_header_prefix", `identity_header_prefix "content-" would take over the "content-*" headers`},
	{"identity_prefix_forwarded.bad.yaml", 5, "settings.identity_header_prefix", `identity_header_prefix "X-Forwarded-" would take over the "x-forwarded-*" headers`},
	{"identity_prefix_in_family.bad.yaml", 4, "settings.identity_header_prefix", `identity_header_prefix "x-envoy-keygate-" would take over the "x-envoy-*" headers`},
	{"identity_prefix_standard_name.bad.yaml", 5, "settings.identity_header_prefix", `identity_header_prefix "x-real-" would take over "x-real-ip"`},
	{"identity_prefix_no_dash.bad.yaml", 4, "settings.identity_header_prefix", `identity_header_prefix "x-keygate" must end with '-'`},
	{"max_org_keys_zero.bad.yaml", 4, "settings.max_org_keys", "max_org_keys must be at least 1"},
	{"session_cookie_not_token.bad.yaml", 3, "settings.session_cookie", `"kg session" is not a valid cookie name`},
	{"management_unknown_group.bad.yaml", 5, "management.assignable_groups[1]", `group "support" is not declared under groups`},
	{"management_twice.bad.d", 2, "management", "management is defined twice"},
	{"management_bad_ttl.bad.yaml", 5, "", `"a day" is not a duration such as 30s, 15m, 24h or 7d`},
	{"default_bad.bad.yaml", 5, "settings.default", `default must be deny or allow, not "reject"`},

	// Groups, tenants, organizations.
	{"group_name_bad.bad.yaml", 5, "groups[1].name", `group name "sales team" must be letters, digits`},
	{"tenant_id_bad.bad.yaml", 4, "tenants[0].id", `tenant id "acme corp" must be letters, digits`},
	{"org_name_bad.bad.yaml", 7, "tenants[0].orgs[1]", `organization "acme/us" must be letters, digits`},
	{"dup_group.bad.yaml", 6, "groups[2]", `duplicate group "sales" (first defined at testdata/bad/dup_group.bad.yaml:4)`},
	{"dup_group_across.bad.d", 4, "groups[0]", `duplicate group "sales" (first defined at testdata/bad/dup_group_across.bad.d/10-first.yaml:4)`},
	{"dup_tenant.bad.yaml", 7, "tenants[2]", `duplicate tenant "acme" (first defined at testdata/bad/dup_tenant.bad.yaml:4)`},
	{"dup_tenant_across.bad.d", 5, "tenants[1]", `duplicate tenant "acme" (first defined at testdata/bad/dup_tenant_across.bad.d/10-first.yaml:3)`},
	{"dup_org.bad.yaml", 9, "tenants[1].orgs[1]", `duplicate organization "shared" (first defined at testdata/bad/dup_org.bad.yaml:5)`},
	{"dup_org_across.bad.d", 5, "tenants[0].orgs[0]", `duplicate organization "acme-eu" (first defined at testdata/bad/dup_org_across.bad.d/10-first.yaml:4)`},

	// Endpoints.
	{"endpoint_name_bad.bad.yaml", 4, "endpoints[0].name", `endpoint name "sales write" must be letters, digits`},
	{"dup_endpoint.bad.yaml", 7, "endpoints[1]", `duplicate endpoint "health" (first defined at testdata/bad/dup_endpoint.bad.yaml:4)`},
	{"dup_endpoint_across.bad.d", 4, "endpoints[0]", `duplicate endpoint "health" (first defined at testdata/bad/dup_endpoint_across.bad.d/10-first.yaml:3)`},
	{"endpoint_group_undeclared.bad.yaml", 8, "endpoints[0].groups[1]", `group "marketing" is not declared under groups`},
	{"path_missing.bad.yaml", 5, "endpoints[0].match.path", "path is required"},
	{"path_no_slash.bad.yaml", 6, "endpoints[0].match.path", `path "healthz" must start with /`},
	{"path_empty_segment.bad.yaml", 5, "endpoints[0].match.path", `path "/orgs//sales" has an empty segment`},
	{"path_trailing_slash.bad.yaml", 5, "endpoints[0].match.path", `path "/sales/" has an empty segment`},
	{"path_dot_segment.bad.yaml", 5, "endpoints[0].match.path", `path "/orgs/../sales" has a ".." segment`},
	{"path_rest_not_last.bad.yaml", 5, "endpoints[0].match.path", `path "/orgs/**/sales": ** must be the last segment`},
	{"path_mixed_wildcard.bad.yaml", 5, "endpoints[0].match.path", `segment "*.txt" mixes text with {, } or *`},
	{"path_capture_empty_name.bad.yaml", 5, "endpoints[0].match.path", "capture {} needs a name"},
	{"path_capture_bad_name.bad.yaml", 5, "endpoints[0].match.path", "capture {org.id} needs a name"},
	{"path_capture_duplicate.bad.yaml", 5, "endpoints[0].match.path", `path "/orgs/{id}/users/{id}" captures {id} twice`},
	{"path_query.bad.yaml", 5, "endpoints[0].match.path", `path "/search?q=keygate" must not contain a query or fragment`},
	{"method_bad.bad.yaml", 9, "endpoints[0].match.methods[1]", `"FETCH" is not an HTTP method`},
	{"method_not_token.bad.yaml", 7, "endpoints[0].match.methods[1]", `"poſt" is not a valid HTTP method token`},
	{"host_port.bad.yaml", 7, "endpoints[0].match.host", `host "api.example.com:8443" must not include a port`},
	{"host_bad_wildcard.bad.yaml", 7, "endpoints[0].match.host", `host "api.*.example.com" must be a name such as api.example.com or *.example.com`},
	{"anonymous_require.bad.yaml", 7, "endpoints[0].require", "an anonymous endpoint cannot require credentials"},
	{"anonymous_groups.bad.yaml", 9, "endpoints[0].groups", "an anonymous endpoint cannot require groups"},
	{"anonymous_org.bad.yaml", 7, "endpoints[0].org", "an anonymous endpoint cannot check an organization"},
	{"require_bad.bad.yaml", 8, "endpoints[0].require[1]", `require takes api_key and session, not "password"`},
	{"mode_bad.bad.yaml", 6, "endpoints[0].mode", `mode must be enforce or shadow, not "audit"`},
	{"org_from_bad.bad.yaml", 7, "endpoints[0].org.from", `org.from must be path or header, not "query"`},
	{"org_capture_missing.bad.yaml", 8, "endpoints[0].org.name", `path "/orgs/{id}/sales" has no {org} segment`},
	{"org_header_bad.bad.yaml", 8, "endpoints[0].org.name", `"x org id" is not a valid header name`},

	// Credentials.
	{"key_id_bad.bad.yaml", 6, "api_keys[0].id", `id "kg demo" must be letters, digits`},
	{"digest_no_prefix.bad.yaml", 7, "api_keys[0].hash", `hash must be "sha256:" and 64 hex digits (never the key itself)`},
	{"digest_raw_key.bad.json", 7, "api_keys[0].hash", `hash must be "sha256:" and 64 hex digits (never the key itself)`},
	{"digest_short.bad.yaml", 7, "api_keys[0].hash", "hash must have 64 hex digits after sha256:, not 10"},
	{"digest_not_hex.bad.yaml", 7, "api_keys[0].hash", "hash has a character that is not a hex digit after \"sha256:\""},
	{"digest_empty.bad.yaml", 6, "sessions[0].hash", `hash is required: "sha256:" and 64 hex digits`},
	{"user_missing.bad.yaml", 6, "api_keys[0].user", "user is required"},
	{"user_comma.bad.yaml", 9, "sessions[0].user", "user must not contain commas or line breaks"},
	{"tenant_missing.bad.yaml", 6, "api_keys[0].tenant", "tenant is required"},
	{"tenant_undeclared.bad.yaml", 8, "api_keys[0].tenant", `tenant "initech" is not declared under tenants`},
	{"session_tenant_undeclared.bad.yaml", 9, "sessions[0].tenant", `tenant "globex" is not declared under tenants`},
	{"org_undeclared.bad.yaml", 10, "api_keys[0].org", `organization "acme-jp" is not declared under tenants`},
	{"org_other_tenant.bad.yaml", 12, "api_keys[0].org", `organization "globex-main" belongs to tenant "globex", not "acme"`},
	{"key_group_undeclared.bad.yaml", 14, "api_keys[0].groups[1]", `group "admins" is not declared under groups`},
	{"dup_key_id.bad.yaml", 10, "api_keys[1]", `duplicate credential id "kg_demo0001" (first defined at testdata/bad/dup_key_id.bad.yaml:6)`},
	{"dup_key_id_across.bad.d", 4, "api_keys[0]", `duplicate credential id "kg_demo0001" (first defined at testdata/bad/dup_key_id_across.bad.d/10-first.yaml:5)`},
	{"dup_key_session_id.bad.yaml", 11, "sessions[0]", `duplicate credential id "cred1" (first defined at testdata/bad/dup_key_session_id.bad.yaml:6)`},
	{"dup_digest.bad.yaml", 13, "api_keys[1].hash", "duplicate credential digest \"" + strings.Repeat("1", 64) + "\" (first defined at testdata/bad/dup_digest.bad.yaml:7)"},
	{"dup_digest_uppercase.bad.json", 6, "api_keys[1].hash", "duplicate credential digest \"" + strings.Repeat("ab", 32) + "\" (first defined at testdata/bad/dup_digest_uppercase.bad.json:5)"},
	{"dup_digest_across.bad.d", 7, "sessions[0].hash", "duplicate credential digest \"" + strings.Repeat("1", 64) + "\" (first defined at testdata/bad/dup_digest_across.bad.d/10-first.yaml:6)"},
	{"max_org_keys_exceeded.bad.yaml", 14, "api_keys[4]", `organization "acme-eu" has more than 2 active organization-level keys (max_org_keys)`},
	{"max_org_keys_across.bad.d", 4, "api_keys[0]", `organization "acme-eu" has more than 1 active organization-level keys (max_org_keys)`},

	// Signed session tokens: issuers and revocations.
	{"session_issuer_no_keys.bad.yaml", 5, "session_issuers[0]", `session issuer "corp-idp" has no keys: give jwks_url or jwks`},
	{"session_issuer_keys_and_url.bad.yaml", 9, "session_issuers[0].jwks", "give jwks_url or jwks, not both"},
	{"session_issuer_alg_none.bad.yaml", 11, "session_issuers[0].algorithms[1]", `algorithm "none" is never accepted`},
	{"session_issuer_alg_hs256.bad.json", 9, "session_issuers[0].algorithms[1]", `algorithm "HS256" is never accepted`},
	{"session_issuer_alg_unknown.bad.yaml", 9, "session_issuers[0].algorithms[0]", `algorithm "RS257" is not one keygate verifies`},
	{"session_issuer_tenant_undeclared.bad.yaml", 9, "session_issuers[0].tenant", `tenant "initech" is not declared under tenants`},
	{"session_issuer_max_ttl_bad.bad.yaml", 9, "", `"a day" is not a duration such as 30s, 15m, 24h or 7d`},
	{"session_issuer_max_ttl_zero.bad.yaml", 9, "session_issuers[0].max_ttl", "max_ttl must be longer than 0s"},
	{"session_issuer_no_audiences.bad.yaml", 5, "session_issuers[0].audiences", "audiences is required"},
	{"session_issuer_jwks_symmetric.bad.yaml", 11, "session_issuers[0].jwks.keys[1]", "key 1 is a symmetric key (kty oct): keygate never accepts HMAC-signed tokens"},
	{"session_issuer_jwks_private.bad.yaml", 10, "session_issuers[0].jwks.keys[0]", "key 0 holds a private key (d)"},
	{"session_issuer_jwks_short_x.bad.yaml", 8, "session_issuers[0].jwks.keys[0]", "x of an Ed25519 key is 32 bytes, not 14"},
	{"session_issuer_groups_map_undeclared.bad.yaml", 11, "session_issuers[0].groups_map.idp-ops", `renames "idp-ops" to group "operations", which is not declared`},
	{"session_issuer_url_bad.bad.yaml", 8, "session_issuers[0].jwks_url", "must be an http or https URL"},
	{"session_issuer_dup_issuer.bad.yaml", 10, "session_issuers[1].issuer", `duplicate issuer "https://idp.example.com" (first defined at testdata/bad/session_issuer_dup_issuer.bad.yaml:6)`},
	{"revoked_session_bad_id.bad.yaml", 6, "revoked_sessions[1].id", `id "s 2V9" must be a session id`},
	{"sessions_not_before_tenant_undeclared.bad.yaml", 5, "sessions_not_before[0].tenant", `tenant "initech" is not declared under tenants`},
	{"sessions_not_before_missing_before.bad.yaml", 5, "sessions_not_before[0].before", "before is required"},
}

// loadFixture loads a bad fixture the way keygate would: one file, or the
// fragments of a directory as separate inputs. It returns the name of the
// input the error is expected in.
func loadFixture(t *testing.T, name string) (string, error) {
	t.Helper()
	p := filepath.Join(badDir, name)
	st, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	if st.IsDir() {
		if files, err = filepath.Glob(filepath.Join(p, "*.yaml")); err != nil || len(files) < 2 {
			t.Fatalf("%s: want at least two fragments, got %v (%v)", p, files, err)
		}
		sort.Strings(files)
	} else {
		files = []string{p}
	}
	var inputs []Input
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		inputs = append(inputs, Input{Name: f, Data: data})
	}
	_, err = Load(inputs, Options{Source: p})
	return files[len(files)-1], err
}

func TestBadConfigs(t *testing.T) {
	for _, tc := range badConfigs {
		t.Run(tc.file, func(t *testing.T) {
			wantFile, err := loadFixture(t, tc.file)
			if err == nil {
				t.Fatal("loaded without error")
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error is %T, not Errors: %v", err, err)
			}
			if len(es) != 1 {
				t.Fatalf("want exactly one error, got %d:\n%s", len(es), strings.Join(es.Lines(), "\n"))
			}
			e := es[0]
			if e.File != wantFile {
				t.Errorf("File = %q, want %q", e.File, wantFile)
			}
			if e.Line != tc.line {
				t.Errorf("Line = %d, want %d (%v)", e.Line, tc.line, e)
			}
			if e.Path != tc.path {
				t.Errorf("Path = %q, want %q (%v)", e.Path, tc.path, e)
			}
			if !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", e.Msg, tc.msg)
			}
			// What a person reads: file:line: path: message, on one line.
			prefix := wantFile
			if tc.line > 0 {
				prefix += ":" + strconv.Itoa(tc.line)
			}
			if s := err.Error(); !strings.HasPrefix(s, prefix+": ") || strings.ContainsAny(s, "\r\n") {
				t.Errorf("Error() = %q, want one line starting with %q", s, prefix+": ")
			}
		})
	}
}

// TestBadConfigsListed keeps the table and testdata/bad in step: every
// fixture has an expectation and every expectation a fixture.
func TestBadConfigsListed(t *testing.T) {
	entries, err := os.ReadDir(badDir)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	jsonCount := 0
	for _, tc := range badConfigs {
		if listed[tc.file] {
			t.Errorf("%s is listed twice", tc.file)
		}
		listed[tc.file] = true
		if strings.HasSuffix(tc.file, ".json") {
			jsonCount++
		}
	}
	for _, e := range entries {
		n := e.Name()
		if !strings.HasSuffix(n, ".bad.yaml") && !strings.HasSuffix(n, ".bad.json") && !strings.HasSuffix(n, ".bad.d") {
			t.Errorf("%s/%s: name it NAME.bad.yaml, NAME.bad.json or NAME.bad.d", badDir, n)
		}
		if !listed[n] {
			t.Errorf("%s/%s has no entry in badConfigs", badDir, n)
		}
		delete(listed, n)
	}
	for n := range listed {
		t.Errorf("badConfigs lists %s, which is not in %s", n, badDir)
	}
	if jsonCount == 0 {
		t.Error("no .bad.json fixture: JSON line numbers are untested")
	}
}

// TestErrorsOrderAndSummary checks that every problem is reported, sorted by
// fragment (in load order) and line, and that Error gives one line.
func TestErrorsOrderAndSummary(t *testing.T) {
	a := `version: 1
api_keys:
  - id: k1
    hash: "sha256:abc"
    tenant: nowhere
    user: bot
endpoints:
  - name: e1
    match: {path: e1}
`
	b := `version: 2
groups:
  - name: "bad name"
`
	_, err := Load([]Input{{Name: "a.yaml", Data: []byte(a)}, {Name: "b.yaml", Data: []byte(b)}}, Options{})
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("want Errors, got %T: %v", err, err)
	}
	want := []string{
		"a.yaml:4: api_keys[0].hash: hash must have 64 hex digits after sha256:, not 3",
		`a.yaml:5: api_keys[0].tenant: tenant "nowhere" is not declared under tenants`,
		`a.yaml:9: endpoints[0].match.path: path "e1" must start with /`,
		"b.yaml:1: version: version 2 is not supported; this keygate reads version: 1",
		`b.yaml:3: groups[0].name: group name "bad name" must be letters, digits, '-', '_' or '.'`,
	}
	if got := es.Lines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantSummary := want[0] + " (and 4 more)"
	if got := err.Error(); got != wantSummary {
		t.Errorf("Error() = %q, want %q", got, wantSummary)
	}
}

// TestLoadReportsEveryInput: decoding errors of several inputs come back
// together, in input order, so one run shows every broken file.
func TestLoadReportsEveryInput(t *testing.T) {
	_, err := Load([]Input{
		{Name: "b.yaml", Data: []byte("version: 1\nfoo: 1\n")},
		{Name: "ok.yaml", Data: []byte("version: 1\n")},
		{Name: "a.json", Data: []byte("{\"version\": 1,\n \"bar\": 2}")},
	}, Options{})
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("want Errors, got %T: %v", err, err)
	}
	want := []string{`b.yaml:2: unknown field "foo"`, `a.json:2: unknown field "bar"`}
	if got := es.Lines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := err.Error(); got != want[0]+" (and 1 more)" {
		t.Errorf("Error() = %q", got)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"file only", &Error{File: "p.yaml", Msg: "policy is empty"}, "p.yaml: policy is empty"},
		{"line", &Error{File: "p.yaml", Line: 3, Msg: `unknown field "x"`}, `p.yaml:3: unknown field "x"`},
		{"line and path", &Error{File: "ns/cm/policy.yaml", Line: 7, Path: "endpoints[0].mode", Msg: "bad"}, "ns/cm/policy.yaml:7: endpoints[0].mode: bad"},
		{"none", Errors{}, "no errors"},
		{"one", Errors{{File: "a", Line: 1, Msg: "x"}}, "a:1: x"},
		{"three", Errors{{File: "a", Line: 1, Msg: "x"}, {File: "a", Line: 2, Msg: "y"}, {File: "b", Msg: "z"}}, "a:1: x (and 2 more)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCompileNoFragments(t *testing.T) {
	_, err := Compile(nil, Options{Source: "/etc/keygate"})
	if err == nil || err.Error() != "/etc/keygate: no policy found" {
		t.Errorf("err = %v", err)
	}
}

func TestParseTooLarge(t *testing.T) {
	data := make([]byte, MaxFragmentSize+1)
	_, err := Parse("big.yaml", data)
	want := fmt.Sprintf("big.yaml: policy is %d bytes; the limit is %d", MaxFragmentSize+1, MaxFragmentSize)
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v", err)
	}
}

// TestParseReportsEveryDecodeError: a bad time does not hide the other
// problems found while decoding.
func TestParseReportsEveryDecodeError(t *testing.T) {
	text := `version: 1
tenants: [{id: acme}]
api_keys:
  - id: k1
    expires_at: soon
    colour: blue
sessions:
  - id: s1
    expires_at: [2027-06-30]
`
	_, err := Parse("p.yaml", []byte(text))
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("want Errors, got %T: %v", err, err)
	}
	want := []string{
		`p.yaml:5: "soon" is not an RFC 3339 time such as 2027-06-30T00:00:00Z`,
		`p.yaml:6: unknown field "colour"`,
		`p.yaml:9: expected an RFC 3339 time such as 2027-06-30T00:00:00Z`,
	}
	if got := es.Lines(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
