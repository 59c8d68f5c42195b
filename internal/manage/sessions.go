package manage

import (
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/session"
	"github.com/keygate/keygate/internal/store"
)

// defaultSessionTTL is a session's lifetime when the call does not say
// (at most the policy's max_session_ttl).
const defaultSessionTTL = 8 * time.Hour

// registerSessions adds the session rows: POST /v1/sessions signs a session
// for a user, DELETE /v1/sessions/{id} revokes one through the store (a
// revoked_sessions entry every replica reads at its next reload), and
// GET /.well-known/jwks.json serves the public key that verifies them.
func (a *API) registerSessions() {
	a.Handle("POST /v1/sessions", "session.create", a.createSession)
	a.Handle("DELETE /v1/sessions/{id}", "session.revoke", a.revokeSession)
	a.registerUserSessions() // usersessions.go
	a.mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, _ *http.Request) {
		if a.cfg.Signer == nil {
			writeError(w, &Error{Status: http.StatusNotFound, Code: "not_found", Msg: "this keygate signs no sessions"})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "public, max-age=300")
		_, _ = w.Write(a.cfg.Signer.JWKS())
	})
}

// sessionRequest is the body of POST /v1/sessions.
type sessionRequest struct {
	User   string   `json:"user"`
	Org    string   `json:"org"`
	Groups []string `json:"groups"`
	TTL    string   `json:"ttl"`
}

// issuedSession is a new signed session: the token, shown this once.
type issuedSession struct {
	Session   string `json:"session"`
	ID        string `json:"id"`
	ExpiresAt string `json:"expires_at"`
}

func (s issuedSession) AuditID() string { return s.ID }

func forbidden(msg string) *Error {
	return &Error{Status: http.StatusForbidden, Code: "forbidden", Msg: msg}
}

// issuer checks that the caller may issue and revoke sessions: a
// credential in management.session_issuer_groups.
func (c *Call) issuer() error {
	m := &c.Snapshot().Management
	if !m.SessionIssuer(c.Decision.Key) && !m.SessionIssuer(c.Decision.Session) {
		return forbidden("issuing and revoking sessions needs a credential in one of management.session_issuer_groups")
	}
	return nil
}

func (a *API) createSession(c *Call) (int, any, error) {
	if a.cfg.Signer == nil && a.cfg.Sessions == nil {
		return 0, nil, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Msg: "this keygate signs no sessions"}
	}
	var req sessionRequest
	if err := DecodeBody(c.R, &req, false); err != nil {
		return 0, nil, err
	}
	if err := c.issuer(); err != nil {
		return 0, nil, err
	}
	d, snap := &c.Decision, c.Snapshot()
	if req.User == "" {
		req.User = d.User()
	}
	if len(req.User) > 253 || strings.ContainsAny(req.User, "\r\n,") {
		return 0, nil, Invalid("user must be at most 253 bytes without commas or line breaks")
	}
	// An organization-level caller issues for its own organization; a
	// tenant-level one for any organization of its tenant, or tenant-wide.
	org := req.Org
	switch {
	case d.Org != "" && org == "":
		org = d.Org
	case org == "":
	case snap.TenantOf(org) == "":
		return 0, nil, &Error{Status: http.StatusNotFound, Code: "not_found", Msg: "no such organization"}
	case snap.TenantOf(org) != d.Tenant, d.Org != "" && org != d.Org:
		return 0, nil, forbidden("sessions can be issued for the caller's own organization only, or any of its tenant's with a tenant-level credential")
	}
	for _, g := range req.Groups {
		if !snap.Management.Assignable(g) {
			return 0, nil, forbidden("group " + quoteShort(g) + " is not in management.assignable_groups")
		}
	}
	ttl := min(defaultSessionTTL, snap.Management.MaxSessionTTL)
	if req.TTL != "" {
		t, err := policy.ParseDuration(req.TTL)
		if err != nil || t <= 0 {
			return 0, nil, Invalid("ttl must be a positive duration such as 8h or 30m")
		}
		if t > snap.Management.MaxSessionTTL {
			return 0, nil, forbidden("ttl is longer than management.max_session_ttl (" + snap.Management.MaxSessionTTL.String() + ")")
		}
		ttl = t
	}
	now := a.cfg.Now().UTC().Truncate(time.Second)
	exp := now.Add(ttl)
	if a.cfg.Sessions != nil {
		return a.createStoredSession(c, req.User, org, req.Groups, now, exp) // usersessions.go
	}
	id, err := session.NewSessionID()
	if err != nil {
		return 0, nil, err
	}
	tok, err := a.cfg.Signer.Sign(session.Claims{ID: id, User: req.User, Tenant: d.Tenant, Org: org, Groups: req.Groups, IssuedAt: now, ExpiresAt: exp})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, issuedSession{Session: tok, ID: id, ExpiresAt: exp.Format(time.RFC3339)}, nil
}

// revokedSession is the answer of DELETE /v1/sessions/{id}.
type revokedSession struct {
	ID    string `json:"id"`
	State string `json:"state"`
}

func (a *API) revokeSession(c *Call) (int, any, error) {
	if err := c.issuer(); err != nil {
		return 0, nil, err
	}
	id := c.R.PathValue("id")
	if id == "" || len(id) > 253 || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r == 0x7f }) {
		return 0, nil, Invalid("a session id is 1 to 253 printable characters without spaces")
	}
	if a.cfg.Sessions != nil {
		if handled, status, body, err := a.revokeStoredSession(c, id); handled { // usersessions.go
			return status, body, err
		}
	}
	// The entry names the caller's tenant: a sign-in credential revokes its
	// own tenant's sessions, never another's with the same id.
	d := &c.Decision
	snap := c.Snapshot()
	if snap.SessionRevoked(d.Tenant, id) {
		return http.StatusOK, revokedSession{ID: id, State: "revoked"}, nil
	}
	if a.cfg.Store == nil {
		return 0, nil, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Msg: "this keygate writes no changes"}
	}
	// Every token keygate issued under the current maximum has expired by
	// then, with the verifier's leeway: the entry can go after that.
	until := policy.Timestamp{Time: a.cfg.Now().UTC().Add(snap.Management.MaxSessionTTL + session.Leeway).Truncate(time.Second).Add(time.Second)}
	err := a.cfg.Store.Update(c.R.Context(), store.Scope{Tenant: d.Tenant, Org: d.Org}, func(tx *store.Tx) error {
		return tx.Doc.AddRevokedSession(policy.RevokedSession{ID: id, Tenant: d.Tenant, Until: &until})
	})
	if err != nil {
		return 0, nil, err
	}
	return http.StatusOK, revokedSession{ID: id, State: "revoked"}, nil
}

// quoteShort quotes a value from a request for a message, bounded.
func quoteShort(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"`
}
