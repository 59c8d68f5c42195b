package policy

import (
	"bytes"
	"encoding/json"
	"fmt"

	"gopkg.in/yaml.v3"
)

// SessionIssuer declares who may sign session tokens (JWTs) that keygate
// verifies instead of looking them up: keygate's own management API, an
// app's auth service or an identity provider.
type SessionIssuer struct {
	Name       string            `yaml:"name" json:"name"`
	Issuer     string            `yaml:"issuer" json:"issuer"`         // the iss claim, compared exactly
	Audiences  []string          `yaml:"audiences" json:"audiences"`   // aud must hold one of them
	JWKSURL    string            `yaml:"jwks_url" json:"jwks_url"`     // fetched and refreshed
	JWKS       *InlineJWKS       `yaml:"jwks" json:"jwks"`             // or the public keys inline
	Algorithms []string          `yaml:"algorithms" json:"algorithms"` // default RS256, ES256, EdDSA
	Tenant     string            `yaml:"tenant" json:"tenant"`         // every token is in it; else claims.tenant
	Claims     *ClaimNames       `yaml:"claims" json:"claims"`
	GroupsMap  map[string]string `yaml:"groups_map" json:"groups_map"` // issuer's group -> keygate group
	MaxTTL     *Duration         `yaml:"max_ttl" json:"max_ttl"`       // refuse tokens whose exp - iat is longer
}

// ClaimNames say which claims carry what keygate reads; empty ones keep
// their default (DefaultClaimNames).
type ClaimNames struct {
	User      string `yaml:"user" json:"user"`
	Tenant    string `yaml:"tenant" json:"tenant"`
	Org       string `yaml:"org" json:"org"`
	Groups    string `yaml:"groups" json:"groups"`
	SessionID string `yaml:"session_id" json:"session_id"`
}

// DefaultClaimNames are the claims keygate's own tokens carry.
var DefaultClaimNames = ClaimNames{User: "sub", Tenant: "tid", Org: "org", Groups: "groups", SessionID: "sid"}

// RevokedSession refuses every signed session token whose session id (sid,
// else jti) is ID, of tenant Tenant when it is set (the management API
// always sets it: a caller revokes its own tenant's sessions only). The
// entry can go once Until (the token's expiry) has passed.
type RevokedSession struct {
	ID     string     `yaml:"id" json:"id"`
	Tenant string     `yaml:"tenant" json:"tenant"`
	Until  *Timestamp `yaml:"until" json:"until"`
}

// SessionNotBefore signs a user out everywhere: their signed session tokens
// issued before Before are refused.
type SessionNotBefore struct {
	Tenant string     `yaml:"tenant" json:"tenant"`
	User   string     `yaml:"user" json:"user"`
	Before *Timestamp `yaml:"before" json:"before"`
}

// InlineJWKS is a JSON Web Key Set written in the policy, in YAML or JSON;
// it holds the set as JSON text for the verifier.
type InlineJWKS struct {
	JSON []byte
}

// UnmarshalYAML implements yaml.Unmarshaler: the set is re-encoded as JSON.
func (j *InlineJWKS) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: jwks must be a mapping such as {keys: [...]}", n.Line)}}
	}
	var v any
	if err := n.Decode(&v); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: jwks is not a JSON Web Key Set: %v", n.Line, err)}}
	}
	j.JSON = b
	return nil
}

// UnmarshalJSON implements json.Unmarshaler.
func (j *InlineJWKS) UnmarshalJSON(b []byte) error {
	if t := bytes.TrimSpace(b); len(t) == 0 || t[0] != '{' {
		return fmt.Errorf("jwks must be an object such as {\"keys\": [...]}")
	}
	// Re-encoded as the YAML form is, so that the same keys read the same
	// (InlineJWKS identifies a key set across reloads by its text).
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("jwks is not JSON: %v", err)
	}
	out, err := json.Marshal(v)
	j.JSON = out
	return err
}

// MarshalYAML writes the set back as a mapping.
func (j InlineJWKS) MarshalYAML() (any, error) {
	var v any
	err := json.Unmarshal(j.JSON, &v)
	return v, err
}
