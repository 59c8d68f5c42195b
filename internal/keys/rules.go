package keys

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/store"
)

// authorize checks that the scope exists and that a may manage its keys,
// and returns the scope with its tenant filled in.
//
// The caller needs a principal in management.key_admin_groups that reaches
// the scope as Check's organization rule does: an organization-level
// principal its own organization only (never tenant-level keys), a
// tenant-level one every organization of its tenant and the tenant's
// tenant-level keys. A caller that is no key admin learns nothing about the
// scope (403 before 404); an admin asking for a scope that does not exist
// gets 404, one of another organization or tenant 403. The operator needs
// only the scope to exist.
func authorize(snap *policy.Snapshot, a Actor, scope store.Scope) (store.Scope, error) {
	var admins []*policy.Principal
	for _, p := range a.Principals {
		if p != nil && snap.Management.KeyAdmin(p) {
			admins = append(admins, p)
		}
	}
	if !a.Operator() && len(admins) == 0 {
		return scope, forbidden("managing API keys needs a credential in one of the policy's management.key_admin_groups")
	}
	if scope.Org != "" {
		t := snap.TenantOf(scope.Org)
		switch {
		case t == "":
			return scope, notFound("organization %q is not declared under tenants", scope.Org)
		case scope.Tenant != "" && scope.Tenant != t:
			return scope, notFound("organization %q belongs to tenant %q, not %q", scope.Org, t, scope.Tenant)
		}
		scope.Tenant = t
	} else {
		switch {
		case scope.Tenant == "":
			return scope, invalid("name a tenant or an organization")
		case !snap.HasTenant(scope.Tenant):
			return scope, notFound("tenant %q is not declared under tenants", scope.Tenant)
		}
	}
	if a.Operator() {
		return scope, nil
	}
	for _, p := range admins {
		if p.Tenant == scope.Tenant && (p.Org == "" || p.Org == scope.Org) {
			return scope, nil
		}
	}
	if scope.Org == "" {
		return scope, forbidden("tenant-level keys of tenant %q are managed by its tenant-level key admins only", scope.Tenant)
	}
	return scope, forbidden("the keys of organization %q are not yours to manage", scope.Org)
}

// inScope reports whether the key belongs to the scope: an organization's
// org-level keys, or a tenant's tenant-level keys.
func inScope(k policy.APIKey, scope store.Scope) bool {
	if scope.Org != "" {
		return k.Org == scope.Org && k.Tenant == scope.Tenant
	}
	return k.Org == "" && k.Tenant == scope.Tenant
}

// describeScope names a scope for messages.
func describeScope(scope store.Scope) string {
	if scope.Org != "" {
		return fmt.Sprintf("organization %q", scope.Org)
	}
	return fmt.Sprintf("the tenant-level keys of tenant %q", scope.Tenant)
}

// line checks a one-line text field: valid UTF-8, no control characters,
// at most max characters. It returns the value with surrounding spaces cut.
func line(field, v string, max int) (string, error) {
	v = strings.TrimSpace(v)
	switch {
	case !utf8.ValidString(v):
		return "", invalid("%s is not valid UTF-8", field)
	case strings.IndexFunc(v, unicode.IsControl) >= 0:
		return "", invalid("%s must be one line of text, without control characters", field)
	case utf8.RuneCountInString(v) > max:
		return "", invalid("%s is longer than %d characters", field, max)
	}
	return v, nil
}

// entry validates a NewKey and builds its api_keys entry (no id, hash or
// scope yet).
func entry(snap *policy.Snapshot, a Actor, k NewKey, now time.Time) (policy.APIKey, error) {
	var e policy.APIKey
	var err error
	if e.Name, err = line("name", k.Name, MaxNameLen); err != nil {
		return e, err
	}
	// The command line has always made keys without a name; a person on
	// the page or the API names every key it makes.
	if e.Name == "" && !a.Operator() {
		return e, invalid("name is required")
	}
	if e.User, err = line("user", k.User, MaxFieldLen); err != nil {
		return e, err
	}
	if strings.Contains(e.User, ",") {
		return e, invalid("user must not contain commas")
	}
	if e.Environment, err = line("environment", k.Environment, MaxFieldLen); err != nil {
		return e, err
	}
	if len(k.Groups) > MaxGroups {
		return e, invalid("a key carries at most %d groups", MaxGroups)
	}
	for _, g := range k.Groups {
		if g == "" || strings.IndexFunc(g, unicode.IsControl) >= 0 || len(g) > MaxFieldLen {
			return e, invalid("groups must be the names of declared groups")
		}
		// The operator may give any declared group (the compiler checks
		// that); a caller of the API only those the policy lets it assign.
		if !a.Operator() && !snap.Management.Assignable(g) {
			return e, forbidden("group %q cannot be given to a key made through the API (management.assignable_groups)", g)
		}
		if !slices.Contains(e.Groups, g) {
			e.Groups = append(e.Groups, g)
		}
	}
	if k.ExpiresAt != nil {
		at := k.ExpiresAt.UTC().Truncate(time.Second)
		if !at.After(now) {
			return e, invalid("expires_at %s is not in the future", at.Format(time.RFC3339))
		}
		e.ExpiresAt = &policy.Timestamp{Time: at}
	}
	if k.RateLimit != "" {
		if snap.RateLimit(k.RateLimit) == nil {
			return e, invalid("rate limit %q is not declared under rate_limits", k.RateLimit)
		}
		e.RateLimit = k.RateLimit
	}
	e.CreatedAt = &policy.Timestamp{Time: now}
	e.CreatedBy = a.User()
	return e, nil
}

// assignable refuses to hand an API caller a fresh secret for a key whose
// groups it could not assign itself (rotating an operator's key with more
// groups would be a way around assignable_groups).
func assignable(snap *policy.Snapshot, a Actor, k policy.APIKey) error {
	if a.Operator() {
		return nil
	}
	for _, g := range k.Groups {
		if !snap.Management.Assignable(g) {
			return forbidden("%s carries group %q, which keys made through the API cannot carry; an operator can rotate it with keygate keys rotate", k.ID, g)
		}
	}
	return nil
}
