package policy

import (
	"slices"
	"time"
)

// DefaultMaxSessionTTL bounds the sessions the management API issues when
// the policy does not say.
const DefaultMaxSessionTTL = 24 * time.Hour

// ManagementRules is the compiled management section: who may change
// credentials through the management API, and within what bounds. Without
// the section nobody may.
type ManagementRules struct {
	keyAdmin, sessionIssuer bitset
	assignable              []string // sorted
	MaxSessionTTL           time.Duration
}

// KeyAdmin reports whether p is in one of key_admin_groups.
func (m *ManagementRules) KeyAdmin(p *Principal) bool {
	return p != nil && p.groups != nil && m.keyAdmin.intersects(p.groups.bits)
}

// SessionIssuer reports whether p is in one of session_issuer_groups.
func (m *ManagementRules) SessionIssuer(p *Principal) bool {
	return p != nil && p.groups != nil && m.sessionIssuer.intersects(p.groups.bits)
}

// Assignable reports whether a key or session made through the API may
// carry group.
func (m *ManagementRules) Assignable(group string) bool {
	_, ok := slices.BinarySearch(m.assignable, group)
	return ok
}

// AssignableGroups lists the groups the API may assign, sorted. Read only.
func (m *ManagementRules) AssignableGroups() []string { return m.assignable }

// management compiles the management section of the one fragment that has
// it.
func (c *compiler) management(frags []*Fragment, groupIdx map[string]int, ngroups int) ManagementRules {
	m := ManagementRules{keyAdmin: newBitset(ngroups), sessionIssuer: newBitset(ngroups), MaxSessionTTL: DefaultMaxSessionTTL}
	var at *loc
	for _, f := range frags {
		if f.Doc.Management == nil {
			continue
		}
		l := loc{f: f}.at("management")
		if at != nil {
			c.errorf(l, "management is defined twice (first at %s); keep it in one fragment", *at)
			continue
		}
		at = &l
		doc := f.Doc.Management
		groups := func(field string, names []string, set func(int)) {
			for i, g := range names {
				idx, ok := groupIdx[g]
				if !ok {
					c.errorf(l.at(field, i), "group %q is not declared under groups", g)
					continue
				}
				if set != nil {
					set(idx)
				}
			}
		}
		groups("key_admin_groups", doc.KeyAdminGroups, m.keyAdmin.set)
		groups("session_issuer_groups", doc.SessionIssuerGroups, m.sessionIssuer.set)
		groups("assignable_groups", doc.AssignableGroups, nil)
		m.assignable = slices.Compact(slices.Sorted(slices.Values(doc.AssignableGroups)))
		if doc.MaxSessionTTL != nil {
			if doc.MaxSessionTTL.Duration <= 0 {
				c.errorf(l.at("max_session_ttl"), "max_session_ttl must be longer than 0s")
			}
			m.MaxSessionTTL = doc.MaxSessionTTL.Duration
		}
	}
	return m
}
