package policyedit

import (
	"gopkg.in/yaml.v3"

	"github.com/keygate/keygate/internal/policy"
)

// AddRevokedSession appends r to revoked_sessions (creating the list if
// needed): the signed session tokens with that session id are refused.
func (d *Doc) AddRevokedSession(r policy.RevokedSession) error {
	return d.edit(
		func(doc *policy.Document) error { doc.RevokedSessions = append(doc.RevokedSessions, r); return nil },
		func(t *text, root *yaml.Node) error {
			return addItem(t, root, "revoked_sessions", func(flow bool) []field {
				fs := []field{{"id", scalar(r.ID, flow)}}
				if r.Tenant != "" {
					fs = append(fs, field{"tenant", scalar(r.Tenant, flow)})
				}
				return addTime(fs, "until", r.Until)
			})
		})
}

// AddSessionNotBefore appends n to sessions_not_before: the user's signed
// sessions issued before n.Before are refused (signed out everywhere).
func (d *Doc) AddSessionNotBefore(n policy.SessionNotBefore) error {
	return d.edit(
		func(doc *policy.Document) error { doc.SessionsNotBefore = append(doc.SessionsNotBefore, n); return nil },
		func(t *text, root *yaml.Node) error {
			return addItem(t, root, "sessions_not_before", func(flow bool) []field {
				fs := []field{{"tenant", scalar(n.Tenant, flow)}, {"user", scalar(n.User, flow)}}
				return addTime(fs, "before", n.Before)
			})
		})
}
