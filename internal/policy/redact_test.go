package policy

import (
	"errors"
	"strings"
	"testing"
)

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"sales", `"sales"`},
		{strings.Repeat("a", 32), `"` + strings.Repeat("a", 32) + `"`},
		{strings.Repeat("a", 33), `"aaaaaaaaaaaa"… (33 bytes)`},
		{"kg_7Hq2pXa1_0123456789abcdefABCDEF0123456789abcdef", `"kg_7Hq2pXa1_"… (50 bytes)`},
		{"ééééééééééééééééé", `"éééééé"… (34 bytes)`},                            // cut at 12: a rune boundary
		{"aéééééééééééééééé", `"aééééé"… (33 bytes)`},                            // cut inside é: before it
		{"line\nbreak" + strings.Repeat("x", 30), `"line\nbreakxx"… (40 bytes)`}, // still %q
	}
	for _, tt := range tests {
		if got := quote(tt.in); got != tt.want {
			t.Errorf("quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

// A value pasted into the wrong field, a keygate key or a key made
// elsewhere, is quoted only in part by every kind of message: decoding
// (a bad time, an unknown field), compiling (an undeclared name, a bad
// path), in YAML and in JSON. The message still says where and what.
func TestErrorsQuoteValuesBounded(t *testing.T) {
	const kgKey = "kg_7Hq2pXa1_0123456789abcdefABCDEF0123456789abcdef"
	const foreign = "sk_live_4eC39HqLyjWDarjtT1zdp7dc4eC39HqLyjWDarjtT1zdp7dc"
	head := "version: 1\ngroups: [{name: sales}]\ntenants: [{id: acme, orgs: [acme-eu]}]\n"
	key := func(field, value string) string {
		k := map[string]string{"id": "k1", "hash": `"sha256:` + strings.Repeat("1", 64) + `"`, "tenant": "acme", "user": "bot"}
		k[field] = value
		return "api_keys:\n  - {id: " + k["id"] + ", hash: " + k["hash"] + ", tenant: " + k["tenant"] + ", user: " + k["user"] +
			map[bool]string{true: ", " + field + ": " + value, false: ""}[field == "expires_at" || field == "org"] + "}\n"
	}
	tests := []struct {
		name, file, text, secret, want string
	}{
		{"kg key in expires_at", "p.yaml", head + key("expires_at", kgKey), kgKey,
			`p.yaml:5: "kg_7Hq2pXa1_"… (50 bytes) is not an RFC 3339 time`},
		{"kg key in expires_at, JSON", "p.json",
			`{"version": 1, "tenants": [{"id": "acme"}], "api_keys": [{"id": "k1", "hash": "sha256:` + strings.Repeat("1", 64) +
				`", "tenant": "acme", "user": "bot", "expires_at": "` + kgKey + `"}]}`, kgKey,
			`"kg_7Hq2pXa1_"… (50 bytes) is not an RFC 3339 time`},
		{"foreign key as tenant", "p.yaml", head + key("tenant", foreign), foreign,
			`p.yaml:5: api_keys[0].tenant: tenant "sk_live_4eC3"… (56 bytes) is not declared under tenants`},
		{"foreign key as org", "p.yaml", head + key("org", foreign), foreign,
			`p.yaml:5: api_keys[0].org: organization "sk_live_4eC3"… (56 bytes) is not declared under tenants`},
		{"kg key as a hash", "p.yaml", head + key("hash", kgKey), kgKey,
			`p.yaml:5: api_keys[0].hash: hash must be "sha256:" and 64 hex digits (never the key itself)`},
		{"foreign key as a field name", "p.yaml", head + "settings:\n  " + foreign + ": x\n", foreign,
			`p.yaml:5: unknown field "sk_live_4eC3"… (56 bytes)`},
		{"foreign key as a field name, JSON", "p.json", `{"version": 1, "` + foreign + `": 1}`, foreign,
			`unknown field "sk_live_4eC3"… (56 bytes)`},
		{"foreign key as a path", "p.yaml", head + "endpoints:\n  - {name: e, match: {path: " + foreign + "}}\n", foreign,
			`p.yaml:5: endpoints[0].match.path: path "sk_live_4eC3"… (56 bytes) must start with /`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load([]Input{{Name: tt.file, Data: []byte(tt.text)}}, Options{})
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Load: %v, want policy errors", err)
			}
			msgs := strings.Join(es.Lines(), "\n")
			if strings.Contains(msgs, tt.secret) || strings.Contains(msgs, tt.secret[quotedPrefix:quotedPrefix+8]) {
				t.Errorf("the message quotes more than the value's start:\n%s", msgs)
			}
			if !strings.Contains(msgs, tt.want) {
				t.Errorf("got\n%s\nwant a line containing\n%s", msgs, tt.want)
			}
		})
	}
}
