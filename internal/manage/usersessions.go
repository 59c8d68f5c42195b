package manage

import (
	"context"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/store/redissessions"
)

// SessionStore keeps server-side sessions (serve --session-store): when
// set, POST /v1/sessions makes an opaque token stored there instead of a
// signed one, and a user's sessions can be listed and revoked at once.
type SessionStore interface {
	Create(ctx context.Context, s redissessions.Session) (token string, _ redissessions.Session, err error)
	Get(ctx context.Context, id string) (*redissessions.Session, error)
	List(ctx context.Context, tenant, user string) ([]redissessions.Session, error)
	Revoke(ctx context.Context, sessions ...redissessions.Session) (int, error)
}

// registerUserSessions adds GET and DELETE /v1/users/{user}/sessions:
// list a user's live server-side sessions, and sign the user out
// everywhere.
func (a *API) registerUserSessions() {
	a.Handle("GET /v1/users/{user}/sessions", "session.list", a.listUserSessions)
	a.Handle("DELETE /v1/users/{user}/sessions", "session.revoke", a.signOutUser)
}

// storeDown is the answer when Redis does not answer; the cause goes to
// the log.
func (a *API) storeDown(c *Call, err error) *Error {
	a.cfg.Log.Warn("session store call failed", zap.String("action", c.Action), zap.String("decision_id", c.DecisionID), zap.Error(err))
	return &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Msg: "the session store cannot be reached; try again shortly"}
}

// manages reports whether the caller may see and revoke s: a session of
// its tenant, and of its own organization if the caller is
// organization-level (a tenant-wide session reaches other organizations).
func (c *Call) manages(s *redissessions.Session) bool {
	d := &c.Decision
	return s.Tenant == d.Tenant && (d.Org == "" || s.Org == d.Org)
}

// createStoredSession makes the session POST /v1/sessions validated in
// Redis and answers its opaque token, shown this once.
func (a *API) createStoredSession(c *Call, user, org string, groups []string, now, exp time.Time) (int, any, error) {
	tok, s, err := a.cfg.Sessions.Create(c.R.Context(), redissessions.Session{
		User: user, Tenant: c.Decision.Tenant, Org: org, Groups: groups, CreatedAt: now, ExpiresAt: exp})
	if err != nil {
		return 0, nil, a.storeDown(c, err)
	}
	return http.StatusCreated, issuedSession{Session: tok, ID: s.ID, ExpiresAt: exp.Format(time.RFC3339)}, nil
}

// revokeStoredSession revokes a server-side session by id. handled is
// false when the store does not hold a session of that id and the id
// could be a signed session's, which the caller then revokes as such.
func (a *API) revokeStoredSession(c *Call, id string) (handled bool, status int, body any, err error) {
	s, err := a.cfg.Sessions.Get(c.R.Context(), id)
	switch {
	case err != nil:
		return true, 0, nil, a.storeDown(c, err)
	case s == nil && !storedID(id):
		return false, 0, nil, nil
	case s == nil, !c.manages(s):
		// Another tenant's session is as unknown to the caller as none.
		return true, 0, nil, &Error{Status: http.StatusNotFound, Code: "not_found", Msg: "no such session: it never existed, has expired or was revoked"}
	}
	if _, err := a.cfg.Sessions.Revoke(c.R.Context(), *s); err != nil {
		return true, 0, nil, a.storeDown(c, err)
	}
	return true, http.StatusOK, revokedSession{ID: id, State: "revoked"}, nil
}

// storedID reports whether id has the form of a server-side session's
// (kg_ and letters and digits); signed sessions' ids have other forms.
func storedID(id string) bool {
	rest, ok := strings.CutPrefix(id, apikey.Prefix)
	return ok && rest != "" && !strings.ContainsFunc(rest, func(r rune) bool {
		return !('0' <= r && r <= '9' || 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z')
	})
}

// listedSession is one session as GET /v1/users/{user}/sessions lists it.
type listedSession struct {
	ID        string   `json:"id"`
	Org       string   `json:"org,omitempty"`
	Groups    []string `json:"groups"`
	CreatedAt string   `json:"created_at"`
	ExpiresAt string   `json:"expires_at"`
}

type userSessions struct {
	User     string          `json:"user"`
	Tenant   string          `json:"tenant"`
	Sessions []listedSession `json:"sessions"`
}

type signedOut struct {
	User    string   `json:"user"`
	Tenant  string   `json:"tenant"`
	Revoked []string `json:"revoked"` // the ids of the sessions revoked
}

func (s signedOut) AuditID() string { return "user:" + s.User }

// userSessionsOf checks the call and returns the user's live sessions
// the caller manages.
func (a *API) userSessionsOf(c *Call) (string, []redissessions.Session, error) {
	if err := c.issuer(); err != nil {
		return "", nil, err
	}
	if a.cfg.Sessions == nil {
		return "", nil, &Error{Status: http.StatusNotFound, Code: "not_found", Msg: "server-side sessions are off: keygate serves them with --session-store"}
	}
	user := c.R.PathValue("user")
	if user == "" || len(user) > 253 || strings.ContainsAny(user, "\r\n,") {
		return "", nil, Invalid("user must be 1 to 253 bytes without commas or line breaks")
	}
	all, err := a.cfg.Sessions.List(c.R.Context(), c.Decision.Tenant, user)
	if err != nil {
		return "", nil, a.storeDown(c, err)
	}
	mine := all[:0]
	for i := range all {
		if c.manages(&all[i]) {
			mine = append(mine, all[i])
		}
	}
	return user, mine, nil
}

func (a *API) listUserSessions(c *Call) (int, any, error) {
	user, sessions, err := a.userSessionsOf(c)
	if err != nil {
		return 0, nil, err
	}
	out := userSessions{User: user, Tenant: c.Decision.Tenant, Sessions: make([]listedSession, len(sessions))}
	for i, s := range sessions {
		groups := s.Groups
		if groups == nil {
			groups = []string{}
		}
		out.Sessions[i] = listedSession{ID: s.ID, Org: s.Org, Groups: groups,
			CreatedAt: s.CreatedAt.UTC().Format(time.RFC3339), ExpiresAt: s.ExpiresAt.UTC().Format(time.RFC3339)}
	}
	return http.StatusOK, out, nil
}

// signOutUser revokes every live session of the user that the caller
// manages, in one transaction; every replica forgets them within a second.
func (a *API) signOutUser(c *Call) (int, any, error) {
	user, sessions, err := a.userSessionsOf(c)
	if err != nil {
		return 0, nil, err
	}
	if _, err := a.cfg.Sessions.Revoke(c.R.Context(), sessions...); err != nil {
		return 0, nil, a.storeDown(c, err)
	}
	out := signedOut{User: user, Tenant: c.Decision.Tenant, Revoked: make([]string, len(sessions))}
	for i, s := range sessions {
		out.Revoked[i] = s.ID
	}
	return http.StatusOK, out, nil
}
