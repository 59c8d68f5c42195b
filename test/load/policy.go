package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
)

// benchPolicy is a generated policy and the one key the load presents.
type benchPolicy struct {
	doc policy.Document
	key string // raw credential of a tenant-level sales key of acme
}

// generatePolicy makes a policy of n API keys (n ≥ 1) spread over two
// tenants, three organizations and three groups, with a handful of
// endpoints; the request the load sends matches the fifth. The key the load
// presents sits in the middle of the list.
func generatePolicy(n int) (*benchPolicy, error) {
	if n < 1 {
		return nil, fmt.Errorf("-keys must be at least 1, not %d", n)
	}
	// Organization-level keys are spread over three organizations.
	yes, maxOrgKeys := true, n
	bp := &benchPolicy{doc: policy.Document{
		Version: 1,
		Settings: &policy.Settings{
			Realm:                "api.example.com",
			APIKeyHeaders:        []string{"authorization", "x-api-key"},
			SessionHeader:        "session",
			IdentityHeaderPrefix: "x-keygate-",
			StripCredentials:     &yes,
			MaxOrgKeys:           &maxOrgKeys,
			Default:              "deny",
		},
		Groups: []policy.Group{{Name: "sales"}, {Name: "support"}, {Name: "admin"}},
		Tenants: []policy.Tenant{
			{ID: "acme", Name: "ACME Corporation", Orgs: []string{"acme-eu", "acme-us"}},
			{ID: "globex", Orgs: []string{"globex-main"}},
		},
		Endpoints: []policy.EndpointRule{
			{Name: "health", Match: policy.Match{Path: "/healthz"}, Anonymous: true},
			{Name: "docs", Match: policy.Match{Methods: []string{"GET", "HEAD"}, Path: "/docs/**"}, Anonymous: true},
			{Name: "admin", Match: policy.Match{Path: "/admin/**"}, Require: []string{"api_key"}, Groups: []string{"admin"}},
			{Name: "sales-write", Match: policy.Match{Methods: []string{"POST", "PUT", "PATCH", "DELETE"}, Path: "/orgs/{org}/sales/**"},
				Require: []string{"api_key", "session"}, Groups: []string{"sales"}, Org: &policy.OrgRule{From: "path", Name: "org"}},
			{Name: "sales-read", Match: policy.Match{Methods: []string{"GET"}, Path: "/orgs/{org}/sales/**"},
				Require: []string{"api_key"}, Groups: []string{"sales", "support"}, Org: &policy.OrgRule{From: "path", Name: "org"}},
			{Name: "customers", Match: policy.Match{Methods: []string{"GET"}, Path: "/orgs/{org}/customers/**"},
				Require: []string{"api_key"}, Groups: []string{"support"}, Org: &policy.OrgRule{From: "path", Name: "org"}},
			{Name: "whoami", Match: policy.Match{Path: "/whoami"}, Require: []string{"api_key"}},
		},
	}}
	orgs := []struct{ tenant, org string }{{"acme", ""}, {"acme", "acme-eu"}, {"acme", "acme-us"}, {"globex", ""}, {"globex", "globex-main"}}
	groups := [][]string{{"sales"}, {"support"}, {"sales", "support"}, {"admin"}}
	bp.doc.APIKeys = make([]policy.APIKey, n)
	for i := range n {
		id := fmt.Sprintf("kg_load%07d", i)
		raw, err := apikey.New(id)
		if err != nil {
			return nil, err
		}
		o, g := orgs[i%len(orgs)], groups[i%len(groups)]
		k := policy.APIKey{ID: id, Name: "load key", Tenant: o.tenant, Org: o.org, User: fmt.Sprintf("user-%d", i),
			Groups: g, Environment: "production", Hash: policy.FormatDigest(apikey.Digest(raw))}
		if i == n/2 {
			k.Tenant, k.Org, k.Groups, k.User = "acme", "", []string{"sales"}, "load-bot"
			bp.key = raw
		}
		bp.doc.APIKeys[i] = k
	}
	return bp, nil
}

// writeFile stores data at path atomically (rename over), so that keygate's
// watcher of the directory never reads a half-written policy.
func writeFile(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".policy-*.tmp")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// writeGenerated writes the policy of n keys the rounds would serve to path.
func writeGenerated(path string, n int) error {
	bp, err := generatePolicy(n)
	if err != nil {
		return err
	}
	data, _, err := bp.variants()
	if err != nil {
		return err
	}
	return writeFile(path, data)
}

// variants are the policy as JSON (keygate decodes it faster than YAML) in
// two versions that differ in one key's name only, so that swapping them
// makes keygate reload the same keys.
func (bp *benchPolicy) variants() (a, b []byte, err error) {
	if a, err = json.Marshal(&bp.doc); err != nil {
		return nil, nil, err
	}
	saved := bp.doc.APIKeys[0].Name
	bp.doc.APIKeys[0].Name = saved + " (b)"
	b, err = json.Marshal(&bp.doc)
	bp.doc.APIKeys[0].Name = saved
	return a, b, err
}
