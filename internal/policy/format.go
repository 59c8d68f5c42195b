// Package policy defines keygate's policy format (version 1), decodes it
// strictly, validates it and compiles it into immutable snapshots that the
// Check path only reads. It imports none of keygate's other packages.
package policy

import (
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Document is one policy file or fragment as written by people.
type Document struct {
	Version   int            `yaml:"version"`
	Settings  *Settings      `yaml:"settings"`
	Groups    []Group        `yaml:"groups"`
	Tenants   []Tenant       `yaml:"tenants"`
	Endpoints []EndpointRule `yaml:"endpoints"`
	APIKeys   []APIKey       `yaml:"api_keys"`
	Sessions  []Session      `yaml:"sessions"`
}

// Settings tune how requests are read and answered.
type Settings struct {
	Realm                string   `yaml:"realm"`
	APIKeyHeaders        []string `yaml:"api_key_headers"`
	SessionHeader        string   `yaml:"session_header"`
	IdentityHeaderPrefix string   `yaml:"identity_header_prefix"`
	StripCredentials     *bool    `yaml:"strip_credentials"`
	MaxOrgKeys           *int     `yaml:"max_org_keys"`
	Default              string   `yaml:"default"`
}

// Group is an access group that endpoints and credentials name.
type Group struct {
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
}

// Tenant owns organizations; a tenant-level credential reaches all of them.
type Tenant struct {
	ID   string   `yaml:"id"`
	Name string   `yaml:"name"`
	Orgs []string `yaml:"orgs"`
}

// EndpointRule is one rule; the first endpoint that matches a request decides it.
type EndpointRule struct {
	Name      string   `yaml:"name"`
	Match     Match    `yaml:"match"`
	Anonymous bool     `yaml:"anonymous"`
	Require   []string `yaml:"require"`
	Groups    []string `yaml:"groups"`
	Org       *OrgRule `yaml:"org"`
	Mode      string   `yaml:"mode"`
}

// Match selects requests by method, path pattern and host.
type Match struct {
	Methods []string `yaml:"methods"`
	Path    string   `yaml:"path"`
	Host    string   `yaml:"host"`
}

// OrgRule says where a request names the organization it targets.
type OrgRule struct {
	From string `yaml:"from"`
	Name string `yaml:"name"`
}

// APIKey is a key known by its digest; the key itself is never stored.
type APIKey struct {
	ID          string     `yaml:"id"`
	Name        string     `yaml:"name"`
	Hash        string     `yaml:"hash"`
	Tenant      string     `yaml:"tenant"`
	Org         string     `yaml:"org"`
	User        string     `yaml:"user"`
	Groups      []string   `yaml:"groups"`
	Environment string     `yaml:"environment"`
	CreatedAt   *Timestamp `yaml:"created_at"`
	ExpiresAt   *Timestamp `yaml:"expires_at"`
	Disabled    bool       `yaml:"disabled"`
}

// Session is a session token known by its digest.
type Session struct {
	ID        string     `yaml:"id"`
	Hash      string     `yaml:"hash"`
	User      string     `yaml:"user"`
	Tenant    string     `yaml:"tenant"`
	Org       string     `yaml:"org"`
	Groups    []string   `yaml:"groups"`
	ExpiresAt *Timestamp `yaml:"expires_at"`
	Disabled  bool       `yaml:"disabled"`
}

// Timestamp is an RFC 3339 time that decodes the same from YAML (where it may
// be an unquoted timestamp) and JSON (where it is always a string). A bad time
// is a TypeError, so decoding goes on and reports the other problems too.
type Timestamp struct{ time.Time }

// UnmarshalYAML implements yaml.Unmarshaler.
func (t *Timestamp) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: expected an RFC 3339 time such as 2027-06-30T00:00:00Z", n.Line)}}
	}
	v := strings.TrimSpace(n.Value)
	parsed, err := time.Parse(time.RFC3339, v)
	if err != nil {
		if d, derr := time.Parse("2006-01-02", v); derr == nil {
			parsed = d
		} else {
			return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %q is not an RFC 3339 time such as 2027-06-30T00:00:00Z", n.Line, v)}}
		}
	}
	t.Time = parsed.UTC()
	return nil
}

// MarshalYAML writes the time back in RFC 3339.
func (t Timestamp) MarshalYAML() (any, error) { return t.Format(time.RFC3339), nil }
