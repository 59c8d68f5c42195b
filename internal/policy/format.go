// Package policy defines keygate's policy format (version 1), decodes it
// strictly, validates it and compiles it into immutable snapshots that the
// Check path only reads. It imports none of keygate's other packages.
package policy

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Document is one policy file or fragment as written by people.
type Document struct {
	Version   int            `yaml:"version" json:"version"`
	Settings  *Settings      `yaml:"settings" json:"settings"`
	Groups    []Group        `yaml:"groups" json:"groups"`
	Tenants   []Tenant       `yaml:"tenants" json:"tenants"`
	Endpoints []EndpointRule `yaml:"endpoints" json:"endpoints"`
	APIKeys   []APIKey       `yaml:"api_keys" json:"api_keys"`
	Sessions  []Session      `yaml:"sessions" json:"sessions"`

	Management *Management `yaml:"management" json:"management"`
	RateLimits []RateLimit `yaml:"rate_limits" json:"rate_limits"`

	// Signed session tokens: who signs them, and revocations (issuers_format.go).
	SessionIssuers    []SessionIssuer    `yaml:"session_issuers" json:"session_issuers"`
	RevokedSessions   []RevokedSession   `yaml:"revoked_sessions" json:"revoked_sessions"`
	SessionsNotBefore []SessionNotBefore `yaml:"sessions_not_before" json:"sessions_not_before"`
}

// Settings tune how requests are read and answered.
type Settings struct {
	Realm                string   `yaml:"realm" json:"realm"`
	APIKeyHeaders        []string `yaml:"api_key_headers" json:"api_key_headers"`
	SessionHeader        string   `yaml:"session_header" json:"session_header"`
	SessionCookie        string   `yaml:"session_cookie" json:"session_cookie"`
	IdentityHeaderPrefix string   `yaml:"identity_header_prefix" json:"identity_header_prefix"`
	StripCredentials     *bool    `yaml:"strip_credentials" json:"strip_credentials"`
	MaxOrgKeys           *int     `yaml:"max_org_keys" json:"max_org_keys"`
	Default              string   `yaml:"default" json:"default"`
}

// Group is an access group that endpoints and credentials name.
type Group struct {
	Name        string `yaml:"name" json:"name"`
	Description string `yaml:"description" json:"description"`
}

// Tenant owns organizations; a tenant-level credential reaches all of them.
type Tenant struct {
	ID   string   `yaml:"id" json:"id"`
	Name string   `yaml:"name" json:"name"`
	Orgs []string `yaml:"orgs" json:"orgs"`
}

// EndpointRule is one rule; the first endpoint that matches a request decides it.
type EndpointRule struct {
	Name      string   `yaml:"name" json:"name"`
	Match     Match    `yaml:"match" json:"match"`
	Anonymous bool     `yaml:"anonymous" json:"anonymous"`
	Require   []string `yaml:"require" json:"require"`
	Groups    []string `yaml:"groups" json:"groups"`
	Org       *OrgRule `yaml:"org" json:"org"`
	Mode      string   `yaml:"mode" json:"mode"`

	RateLimit *EndpointRateLimit `yaml:"rate_limit" json:"rate_limit"`
}

// Match selects requests by method, path pattern and host.
type Match struct {
	Methods []string `yaml:"methods" json:"methods"`
	Path    string   `yaml:"path" json:"path"`
	Host    string   `yaml:"host" json:"host"`
}

// OrgRule says where a request names the organization it targets.
type OrgRule struct {
	From string `yaml:"from" json:"from"`
	Name string `yaml:"name" json:"name"`
}

// APIKey is a key known by its digest; the key itself is never stored.
type APIKey struct {
	ID          string     `yaml:"id" json:"id"`
	Name        string     `yaml:"name" json:"name"`
	Hash        string     `yaml:"hash" json:"hash"`
	Tenant      string     `yaml:"tenant" json:"tenant"`
	Org         string     `yaml:"org" json:"org"`
	User        string     `yaml:"user" json:"user"`
	Groups      []string   `yaml:"groups" json:"groups"`
	Environment string     `yaml:"environment" json:"environment"`
	CreatedAt   *Timestamp `yaml:"created_at" json:"created_at"`
	ExpiresAt   *Timestamp `yaml:"expires_at" json:"expires_at"`
	Disabled    bool       `yaml:"disabled" json:"disabled"`
	CreatedBy   string     `yaml:"created_by" json:"created_by"` // who made it through the management API
	RateLimit   string     `yaml:"rate_limit" json:"rate_limit"` // the name of this key's own budget
}

// Management says who may change credentials through the management API.
type Management struct {
	KeyAdminGroups      []string  `yaml:"key_admin_groups" json:"key_admin_groups"`
	SessionIssuerGroups []string  `yaml:"session_issuer_groups" json:"session_issuer_groups"`
	AssignableGroups    []string  `yaml:"assignable_groups" json:"assignable_groups"`
	MaxSessionTTL       *Duration `yaml:"max_session_ttl" json:"max_session_ttl"`
}

// Session is a session token known by its digest.
type Session struct {
	ID        string     `yaml:"id" json:"id"`
	Hash      string     `yaml:"hash" json:"hash"`
	User      string     `yaml:"user" json:"user"`
	Tenant    string     `yaml:"tenant" json:"tenant"`
	Org       string     `yaml:"org" json:"org"`
	Groups    []string   `yaml:"groups" json:"groups"`
	ExpiresAt *Timestamp `yaml:"expires_at" json:"expires_at"`
	Disabled  bool       `yaml:"disabled" json:"disabled"`
	RateLimit string     `yaml:"rate_limit" json:"rate_limit"` // the name of this session's own budget
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
	parsed, err := parseTime(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	t.Time = parsed
	return nil
}

// parseTime reads an RFC 3339 time or a date, as UTC.
func parseTime(v string) (time.Time, error) {
	v = strings.TrimSpace(v)
	parsed, err := time.Parse(time.RFC3339, v)
	if err != nil {
		d, derr := time.Parse("2006-01-02", v)
		if derr != nil {
			return time.Time{}, fmt.Errorf("%s is not an RFC 3339 time such as 2027-06-30T00:00:00Z", quote(v))
		}
		parsed = d
	}
	return parsed.UTC(), nil
}

// UnmarshalJSON implements json.Unmarshaler with the same rules.
func (t *Timestamp) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("expected an RFC 3339 time such as 2027-06-30T00:00:00Z")
	}
	parsed, err := parseTime(v)
	t.Time = parsed
	return err
}

// MarshalYAML writes the time back in RFC 3339.
func (t Timestamp) MarshalYAML() (any, error) { return t.Format(time.RFC3339), nil }

// Duration is a length of time written as Go writes one (90s, 15m, 24h) or
// in days (7d). A bad one is a TypeError, like Timestamp.
type Duration struct{ time.Duration }

// ParseDuration reads a Duration: a Go duration or a whole number of days.
func ParseDuration(v string) (time.Duration, error) {
	v = strings.TrimSpace(v)
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err == nil && days >= 0 && days <= 100*365 {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	} else if d, err := time.ParseDuration(v); err == nil {
		return d, nil
	}
	return 0, fmt.Errorf("%s is not a duration such as 30s, 15m, 24h or 7d", quote(v))
}

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: expected a duration such as 30s, 15m, 24h or 7d", n.Line)}}
	}
	v, err := ParseDuration(n.Value)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: %v", n.Line, err)}}
	}
	d.Duration = v
	return nil
}

// UnmarshalJSON implements json.Unmarshaler with the same rules.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var v string
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("expected a duration such as 30s, 15m, 24h or 7d")
	}
	parsed, err := ParseDuration(v)
	d.Duration = parsed
	return err
}

// MarshalJSON writes the duration as a string that UnmarshalJSON reads.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// MarshalYAML writes the duration back as Go writes it.
func (d Duration) MarshalYAML() (any, error) { return d.String(), nil }
