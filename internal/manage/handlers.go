package manage

import (
	"net/http"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/store"
)

// scope is the credentials a /v1/orgs/{org}/keys or
// /v1/tenants/{tenant}/keys call names.
func scope(c *Call) store.Scope {
	if org := c.R.PathValue("org"); org != "" {
		return store.Scope{Tenant: c.Snapshot().TenantOf(org), Org: org}
	}
	return store.Scope{Tenant: c.R.PathValue("tenant")}
}

func (a *API) listKeys(c *Call) (int, any, error) {
	l, err := a.cfg.Keys.List(c.R.Context(), c.Actor(), scope(c))
	return http.StatusOK, l, err
}

// createRequest is the body of POST .../keys.
type createRequest struct {
	Name        string   `json:"name"`
	Groups      []string `json:"groups"`
	User        string   `json:"user"`
	Environment string   `json:"environment"`
	ExpiresIn   string   `json:"expires_in"`
	ExpiresAt   string   `json:"expires_at"`
	RateLimit   string   `json:"rate_limit"`
}

// created is a new key with its secret, shown this once.
type created struct{ keys.Created }

func (c created) AuditID() string { return c.ID }

func (a *API) createKey(c *Call) (int, any, error) {
	var req createRequest
	if err := DecodeBody(c.R, &req, false); err != nil {
		return 0, nil, err
	}
	nk := keys.NewKey{Name: req.Name, Groups: req.Groups, User: req.User, Environment: req.Environment, RateLimit: req.RateLimit}
	switch {
	case req.ExpiresIn != "" && req.ExpiresAt != "":
		return 0, nil, Invalid("give expires_in or expires_at, not both")
	case req.ExpiresIn != "":
		d, err := policy.ParseDuration(req.ExpiresIn)
		if err != nil || d <= 0 {
			return 0, nil, Invalid("expires_in must be a positive duration such as 90d or 36h")
		}
		at := a.cfg.Now().Add(d).UTC().Truncate(time.Second)
		nk.ExpiresAt = &at
	case req.ExpiresAt != "":
		at, err := time.Parse(time.RFC3339, req.ExpiresAt)
		if err != nil {
			return 0, nil, Invalid("expires_at must be an RFC 3339 time such as 2027-06-30T00:00:00Z")
		}
		at = at.UTC()
		nk.ExpiresAt = &at
	}
	k, err := a.cfg.Keys.Create(c.R.Context(), c.Actor(), scope(c), nk)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, created{k}, nil
}

// rotateRequest is the body of POST .../keys/{id}/rotate.
type rotateRequest struct {
	Overlap string `json:"overlap"`
}

// defaultOverlap is how long a rotated key keeps working when the call
// does not say: a day to roll the successor out.
const defaultOverlap = 24 * time.Hour

func (a *API) rotateKey(c *Call) (int, any, error) {
	req := rotateRequest{}
	if err := DecodeBody(c.R, &req, true); err != nil {
		return 0, nil, err
	}
	overlap := defaultOverlap
	if req.Overlap != "" {
		d, err := policy.ParseDuration(req.Overlap)
		if err != nil || d < 0 {
			return 0, nil, Invalid("overlap must be a duration such as 24h or 0s")
		}
		overlap = d
	}
	k, err := a.cfg.Keys.Rotate(c.R.Context(), c.Actor(), scope(c), c.R.PathValue("id"), overlap)
	if err != nil {
		return 0, nil, err
	}
	return http.StatusCreated, created{k}, nil
}

func (a *API) revokeKey(c *Call) (int, any, error) {
	k, err := a.cfg.Keys.Revoke(c.R.Context(), c.Actor(), scope(c), c.R.PathValue("id"))
	return http.StatusOK, k, err
}

// me is who the caller is, for the page: its identity, whether it may
// manage keys and the organization key limit.
type me struct {
	User     string   `json:"user"`
	Tenant   string   `json:"tenant"`
	Org      string   `json:"org"`
	Groups   []string `json:"groups"`
	KeyAdmin bool     `json:"key_admin"`
	Limit    int      `json:"limit"`
}

func (a *API) me(c *Call) (int, any, error) {
	d := &c.Decision
	snap := c.Snapshot()
	groups := []string{}
	if g := d.Groups(); g != "" {
		groups = strings.Split(g, ",")
	}
	return http.StatusOK, me{User: d.User(), Tenant: d.Tenant, Org: d.Org, Groups: groups,
		KeyAdmin: snap.Management.KeyAdmin(d.Key) || snap.Management.KeyAdmin(d.Session), Limit: snap.MaxOrgKeys}, nil
}

// signinRequest is the body of POST /v1/signin.
type signinRequest struct {
	Session string `json:"session"`
}

// signin checks a session token and sets it as the session cookie the
// policy names (HttpOnly: the page's script never reads it back), for
// trying the page locally; an app's own sign-in sets the cookie itself.
func (a *API) signin(w http.ResponseWriter, r *http.Request) {
	a.requests.WithLabelValues("signin", a.signinResult(w, r)).Inc()
}

func (a *API) signinResult(w http.ResponseWriter, r *http.Request) string {
	if r.Header.Get(csrfHeader) != csrfValue {
		writeError(w, &Error{Status: http.StatusForbidden, Code: "forbidden", Msg: "sign-in must carry " + csrfHeader + ": " + csrfValue})
		return "forbidden"
	}
	var req signinRequest
	if err := DecodeBody(r, &req, false); err != nil {
		writeError(w, asError(err))
		return "invalid"
	}
	snap := a.cfg.Authorizer.Policy()
	switch {
	case snap == nil:
		writeError(w, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Msg: "no policy is loaded yet"})
		return "error"
	case snap.SessionCookie == "":
		writeError(w, Invalid("this policy names no settings.session_cookie: the page signs in through that cookie"))
		return "invalid"
	}
	// The token goes in the policy's session header, whatever its name.
	token := strings.TrimSpace(req.Session)
	d := a.cfg.Authorizer.Authenticate(authz.MapHeaders{snap.SessionHeader: token})
	if d.Result != authz.Allow || d.Session == nil {
		writeError(w, &Error{Status: http.StatusUnauthorized, Code: "unauthorized", Msg: "that session token is not valid"})
		return "unauthenticated"
	}
	http.SetCookie(w, &http.Cookie{Name: snap.SessionCookie, Value: token, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	w.WriteHeader(http.StatusNoContent)
	return "ok"
}

func (a *API) signout(w http.ResponseWriter, r *http.Request) {
	if snap := a.cfg.Authorizer.Policy(); snap != nil && snap.SessionCookie != "" {
		http.SetCookie(w, &http.Cookie{Name: snap.SessionCookie, Value: "", Path: "/", MaxAge: -1,
			HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	}
	w.WriteHeader(http.StatusNoContent)
	a.requests.WithLabelValues("signout", "ok").Inc()
}
