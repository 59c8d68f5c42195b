// Package keys holds the rules for changing API keys, once, for every way in:
// the management API and the keygate keys command line both call Service.
// It decides who may change which keys (the policy's management section and
// the tenant/organization reach of Check), validates a new key, makes its id
// and secret, and holds the organization key limit: the limit is counted
// inside the store's Update, on the state the change is written over, so
// concurrent creates on any number of processes never exceed it.
package keys

import (
	"fmt"
	"net/http"
	"time"

	"github.com/keygate/keygate/internal/policy"
)

// OperatorName is created_by of a key made at the command line: the operator
// has no principal, and the login name of whoever ran the command is
// nothing keygate could vouch for.
const OperatorName = "cli"

// Bounds of what a caller may write into a key entry.
const (
	MaxNameLen  = 100 // characters
	MaxFieldLen = 128 // characters of user and environment
	MaxGroups   = 32
)

// Actor is who asks. Principals are the caller's verified credentials (API
// key and/or session) as authz resolved them; an Actor with no principals is
// the operator at the command line: bound by the format and the org key
// limit, not by the policy's management section.
type Actor struct {
	Principals []*policy.Principal
}

// Operator reports whether the actor is the operator at the command line.
func (a Actor) Operator() bool { return len(a.Principals) == 0 }

// User is the caller's user: the session's when one verified (the person
// acting), else the key's, as the identity headers of Check say; the
// operator is OperatorName.
func (a Actor) User() string {
	if a.Operator() {
		return OperatorName
	}
	for _, p := range a.Principals {
		if p != nil && p.Kind == policy.KindSession {
			return p.User
		}
	}
	for _, p := range a.Principals {
		if p != nil {
			return p.User
		}
	}
	return ""
}

// Key states.
const (
	StateActive   = "active"
	StateExpired  = "expired"
	StateDisabled = "disabled"
)

// Key is the KEY object of the management API: never a hash, never a
// secret. Org is empty for a tenant-level key; times are UTC to the second.
type Key struct {
	ID          string     `json:"id"`
	Name        string     `json:"name"`
	Tenant      string     `json:"tenant"`
	Org         string     `json:"org,omitempty"`
	User        string     `json:"user"`
	Groups      []string   `json:"groups"` // never null
	Environment string     `json:"environment"`
	CreatedAt   *time.Time `json:"created_at"`
	ExpiresAt   *time.Time `json:"expires_at"`
	State       string     `json:"state"`
	CreatedBy   string     `json:"created_by"`
	RateLimit   string     `json:"rate_limit,omitempty"` // its own rate limit, a name under rate_limits
}

// FromPolicy describes the api_keys entry k as it stands at now.
func FromPolicy(k policy.APIKey, now time.Time) Key {
	out := Key{ID: k.ID, Name: k.Name, Tenant: k.Tenant, Org: k.Org, User: k.User,
		Groups: append([]string{}, k.Groups...), Environment: k.Environment, CreatedBy: k.CreatedBy, RateLimit: k.RateLimit, State: state(k, now)}
	if k.CreatedAt != nil {
		t := k.CreatedAt.UTC()
		out.CreatedAt = &t
	}
	if k.ExpiresAt != nil {
		t := k.ExpiresAt.UTC()
		out.ExpiresAt = &t
	}
	return out
}

func state(k policy.APIKey, now time.Time) string {
	switch {
	case k.Disabled:
		return StateDisabled
	case k.ExpiresAt != nil && !k.ExpiresAt.After(now):
		return StateExpired
	}
	return StateActive
}

// active is what counts against max_org_keys, as the policy compiler counts
// it: neither disabled nor expired.
func active(k policy.APIKey, now time.Time) bool { return state(k, now) == StateActive }

// NewKey is what a caller asks for. User defaults to the caller's user (for
// the operator, to the key's id); ExpiresAt nil means never.
type NewKey struct {
	Name        string
	Groups      []string
	User        string
	Environment string
	ExpiresAt   *time.Time
	// RateLimit names the key's own budget under the policy's rate_limits;
	// "" none. Any caller may choose one: a key without is unlimited.
	RateLimit string
}

// Created is a new key and its secret, which is shown this once.
type Created struct {
	Key
	Secret string `json:"key"`
}

// Listing is a scope's keys: an organization's org-level keys (Org set), or
// a tenant's tenant-level keys. Limit is max_org_keys for an organization
// and 0 (no limit) for tenant-level keys; Active counts the listed keys in
// state active.
type Listing struct {
	Org    string `json:"org,omitempty"`
	Tenant string `json:"tenant"`
	Limit  int    `json:"limit"`
	Active int    `json:"active"`
	Keys   []Key  `json:"keys"`
}

// Rotation says how a key is rotated.
type Rotation struct {
	// Overlap is how long the old key stays valid (0: it expires at once).
	// An old key that expires sooner keeps its expiry.
	Overlap time.Duration
	// ExpiresAt is the successor's expiry; nil gives it the old key's
	// lifetime from now (never, if the old key had no expiry or no
	// created_at).
	ExpiresAt *time.Time
}

// Rotated is a rotation's result: the successor with its secret, and the
// old key as it now stands (ExpiresAt is when it stops working).
type Rotated struct {
	Created
	Old Key
}

// Error is a refusal the API maps to an HTTP answer: 400 invalid_request,
// 403 forbidden, 404 not_found, 409 limit_reached (the organization key
// limit) or 409 conflict (the key cannot be changed as asked: defined
// outside the keys keygate manages, or disabled). Msg is one line for
// people and never holds a secret.
type Error struct {
	Status    int
	Code, Msg string
}

func (e *Error) Error() string { return e.Msg }

func invalid(format string, args ...any) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Msg: fmt.Sprintf(format, args...)}
}

func forbidden(format string, args ...any) *Error {
	return &Error{Status: http.StatusForbidden, Code: "forbidden", Msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) *Error {
	return &Error{Status: http.StatusNotFound, Code: "not_found", Msg: fmt.Sprintf(format, args...)}
}

func conflict(format string, args ...any) *Error {
	return &Error{Status: http.StatusConflict, Code: "conflict", Msg: fmt.Sprintf(format, args...)}
}

func limitReached(format string, args ...any) *Error {
	return &Error{Status: http.StatusConflict, Code: "limit_reached", Msg: fmt.Sprintf(format, args...)}
}
