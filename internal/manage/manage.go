// Package manage serves the management API (/v1: API keys, sessions) and the
// key-management page. Callers authenticate as on any request, through
// authz; what they may change is decided by internal/keys, and changes are
// written through a store: the API never publishes a snapshot itself.
package manage

import (
	"cmp"
	"context"
	_ "embed"
	stdjson "encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/go-json-experiment/json"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/keys"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/session"
	"github.com/keygate/keygate/internal/store"
)

// Keys is what the API asks of internal/keys.
type Keys interface {
	List(ctx context.Context, a keys.Actor, scope store.Scope) (keys.Listing, error)
	Create(ctx context.Context, a keys.Actor, scope store.Scope, k keys.NewKey) (keys.Created, error)
	Rotate(ctx context.Context, a keys.Actor, scope store.Scope, id string, overlap time.Duration) (keys.Created, error)
	Revoke(ctx context.Context, a keys.Actor, scope store.Scope, id string) (keys.Key, error)
}

// Config wires the API.
type Config struct {
	Authorizer *authz.Authorizer
	Keys       Keys
	Log        *zap.Logger
	Registerer prometheus.Registerer
	Page       http.Handler // the key-management page, at / and /ui/; nil: none
	Now        func() time.Time
	// Signer signs the sessions POST /v1/sessions issues; nil: none.
	Signer *session.Signer
	// Store is where DELETE /v1/sessions/{id} writes its revoked_sessions
	// entry (the store the key changes go through).
	Store store.Store
	// Sessions keeps server-side sessions (--session-store); nil: sessions
	// are signed (usersessions.go).
	Sessions SessionStore
}

// API is the management API's HTTP handler.
type API struct {
	cfg      Config
	mux      *http.ServeMux
	requests *prometheus.CounterVec
}

// maxBody bounds a request body: the largest valid one is a few hundred
// bytes.
const maxBody = 64 << 10

// csrfHeader must accompany a mutating call authenticated by the session
// cookie alone: a cross-site form cannot set it, and a cross-site script
// cannot send it without a CORS preflight this API never grants.
const csrfHeader, csrfValue = "X-Requested-With", "keygate"

//go:embed openapi.json
var openAPI []byte

// New returns the API, its metrics registered.
func New(cfg Config) (*API, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	a := &API{cfg: cfg, mux: http.NewServeMux(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keygate_management_requests_total",
			Help: "Management API calls by action and result (ok, unauthenticated, forbidden, invalid, not_found, limit_reached, conflict, error)."},
			[]string{"action", "result"})}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(a.requests); err != nil {
			return nil, err
		}
	}
	a.mux.HandleFunc("GET /v1/openapi.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(openAPI)
	})
	a.Handle("GET /v1/me", "me", a.me)
	a.mux.HandleFunc("POST /v1/signin", a.signin)
	a.mux.HandleFunc("POST /v1/signout", a.signout)
	for _, s := range []struct{ prefix, param string }{{"/v1/orgs/{org}/keys", "org"}, {"/v1/tenants/{tenant}/keys", "tenant"}} {
		a.Handle("GET "+s.prefix, "key.list", a.listKeys)
		a.Handle("POST "+s.prefix, "key.create", a.createKey)
		a.Handle("DELETE "+s.prefix+"/{id}", "key.revoke", a.revokeKey)
	}
	a.Handle("POST /v1/orgs/{org}/keys/{id}/rotate", "key.rotate", a.rotateKey)
	a.registerSessions() // sessions.go
	a.mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &Error{Status: http.StatusNotFound, Code: "not_found", Msg: "no such call; the API is described at /v1/openapi.json"})
	})
	if cfg.Page != nil {
		a.mux.Handle("GET /{$}", cfg.Page)
		a.mux.Handle("GET /ui/", cfg.Page)
	}
	return a, nil
}

func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	a.mux.ServeHTTP(w, r)
}

// Call is one authenticated API call.
type Call struct {
	W          http.ResponseWriter
	R          *http.Request
	Decision   authz.Decision // the caller's credentials, verified
	DecisionID string
	Action     string
}

// Actor is the caller, for internal/keys.
func (c *Call) Actor() keys.Actor {
	var ps []*policy.Principal
	for _, p := range []*policy.Principal{c.Decision.Key, c.Decision.Session} {
		if p != nil {
			ps = append(ps, p)
		}
	}
	return keys.Actor{Principals: ps}
}

// Snapshot is the policy the caller was authenticated against.
func (c *Call) Snapshot() *policy.Snapshot { return c.Decision.Snapshot }

// Error is an API error answer: {"error": Code, "message": Msg}.
type Error struct {
	Status    int
	Code, Msg string
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

// Invalid is a 400 invalid_request.
func Invalid(format string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Msg: format}
}

// Handle serves pattern with h for authenticated callers: the credentials
// verify (else 401/403 with the bodies of Answers), mutating calls
// authenticated by the cookie alone carry the CSRF header, and the call is
// counted and, when it changes something, audited.
func (a *API) Handle(pattern, action string, h func(*Call) (int, any, error)) {
	mutating := !strings.HasPrefix(pattern, "GET ")
	a.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		c := &Call{W: w, R: r, DecisionID: authz.DecisionID(r.Header.Get("X-Request-Id")), Action: action}
		w.Header().Set("X-Request-Id", c.DecisionID)
		c.Decision = a.cfg.Authorizer.Authenticate(authz.HTTPHeaders(r.Header))
		d := &c.Decision
		if d.Result != authz.Allow {
			a.deny(c, mutating)
			return
		}
		if mutating && d.SessionFromCookie && d.Key == nil && r.Header.Get(csrfHeader) != csrfValue {
			a.finish(c, mutating, "", 0, nil, &Error{Status: http.StatusForbidden, Code: "forbidden",
				Msg: "a call authenticated by the session cookie must carry " + csrfHeader + ": " + csrfValue})
			return
		}
		status, body, err := h(c)
		target := ""
		if t, ok := body.(interface{ AuditID() string }); ok {
			target = t.AuditID()
		} else if id := r.PathValue("id"); id != "" {
			target = id
		}
		a.finish(c, mutating, target, status, body, err)
	})
}

// deny answers a caller whose credentials did not verify, as Check would.
func (a *API) deny(c *Call, mutating bool) {
	d := &c.Decision
	result := "unauthenticated"
	switch {
	case d.Result == authz.Unavailable:
		a.requests.WithLabelValues(c.Action, "error").Inc()
		writeError(c.W, &Error{Status: http.StatusServiceUnavailable, Code: "unavailable", Msg: "no policy is loaded yet"})
		return
	case d.Status == http.StatusUnauthorized:
		c.W.Header().Set("WWW-Authenticate", d.Challenge())
	default:
		result = "forbidden"
	}
	a.requests.WithLabelValues(c.Action, result).Inc()
	if mutating {
		a.audit(c, "", result)
	}
	c.W.Header().Set("Content-Type", "application/json")
	c.W.WriteHeader(d.Status)
	_, _ = io.WriteString(c.W, d.Body(c.DecisionID))
}

// finish writes the answer, counts it and audits a change.
func (a *API) finish(c *Call, mutating bool, target string, status int, body any, err error) {
	result := "ok"
	if err != nil {
		e := asError(err)
		if e.Status >= 500 {
			a.cfg.Log.Error("management call failed", zap.String("action", c.Action), zap.String("decision_id", c.DecisionID), zap.Error(err))
		}
		result = resultOf(e)
		writeError(c.W, e)
	} else {
		writeJSON(c.W, status, body)
	}
	a.requests.WithLabelValues(c.Action, result).Inc()
	if mutating {
		a.audit(c, target, result)
	}
}

// audit is the one log line of every change: who, what, where, how it
// ended. It names credential ids, never a secret.
func (a *API) audit(c *Call, target, result string) {
	d := &c.Decision
	a.cfg.Log.Info("audit",
		zap.String("action", c.Action),
		zap.String("actor_user", d.User()),
		zap.String("actor_key_id", d.KeyID()),
		zap.String("actor_session_id", d.SessionID()),
		zap.String("tenant", d.Tenant),
		zap.String("org", cmp.Or(c.R.PathValue("org"), d.Org)),
		zap.String("target", target),
		zap.String("result", result),
		zap.String("decision_id", c.DecisionID))
}

// asError maps a refusal from keys (or the API itself) to its answer;
// anything else is a 500 whose detail stays in the log.
func asError(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	var ke *keys.Error
	if errors.As(err, &ke) {
		return &Error{Status: ke.Status, Code: ke.Code, Msg: ke.Msg}
	}
	return &Error{Status: http.StatusInternalServerError, Code: "internal", Msg: "the change could not be made; see keygate's log"}
}

func resultOf(e *Error) string {
	switch e.Code {
	case "invalid_request":
		return "invalid"
	case "forbidden", "not_found", "limit_reached", "conflict":
		return e.Code
	}
	return "error"
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	out, err := stdjson.Marshal(body)
	if err != nil {
		writeError(w, &Error{Status: http.StatusInternalServerError, Code: "internal", Msg: "the answer could not be encoded"})
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(out, '\n'))
}

func writeError(w http.ResponseWriter, e *Error) {
	out, _ := stdjson.Marshal(struct {
		Error   string `json:"error"`
		Message string `json:"message"`
	}{e.Code, e.Msg})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.Status)
	_, _ = w.Write(append(out, '\n'))
}

// DecodeBody reads a JSON request body strictly into v: Content-Type
// application/json, at most 64 KiB, no unknown or repeated fields, one
// value. An empty body leaves v as it is when optional.
func DecodeBody(r *http.Request, v any, optional bool) error {
	data, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return &Error{Status: http.StatusRequestEntityTooLarge, Code: "invalid_request", Msg: "the request body is larger than 64 KiB"}
		}
		return Invalid("the request body could not be read")
	}
	if len(strings.TrimSpace(string(data))) == 0 {
		if optional {
			return nil
		}
		return Invalid("a JSON body is required")
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(strings.ToLower(strings.TrimSpace(ct)), "application/json") {
		return Invalid("Content-Type must be application/json")
	}
	if err := json.Unmarshal(data, v, json.RejectUnknownMembers(true)); err != nil {
		return Invalid("the body is not valid: " + jsonProblem(err))
	}
	return nil
}

// jsonProblem says what is wrong with a body in one line, without quoting
// the body (it may hold a secret).
func jsonProblem(err error) string {
	var se *json.SemanticError
	if errors.As(err, &se) {
		switch {
		case errors.Is(err, json.ErrUnknownName):
			return "unknown field " + string(se.JSONPointer)
		case se.JSONPointer != "":
			return "field " + string(se.JSONPointer) + " has the wrong type"
		}
	}
	return "malformed JSON"
}
