package authz

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"sync/atomic"
)

// Header is one header to set on the upstream request.
type Header struct {
	Name, Value string
}

// Auth values for the -auth identity header.
const (
	AuthAnonymous     = "anonymous"
	AuthAPIKey        = "api_key"
	AuthSession       = "session"
	AuthAPIKeySession = "api_key+session"
)

// User is the acting user: the session's user when a session verified (the
// person), else the key's user (the principal the API runs as).
func (d *Decision) User() string {
	switch {
	case d.Session != nil:
		return d.Session.User
	case d.Key != nil:
		return d.Key.User
	}
	return ""
}

// Auth says which credentials verified.
func (d *Decision) Auth() string {
	switch {
	case d.Key != nil && d.Session != nil:
		return AuthAPIKeySession
	case d.Key != nil:
		return AuthAPIKey
	case d.Session != nil:
		return AuthSession
	}
	return AuthAnonymous
}

// Groups is the sorted union of the verified credentials' groups, joined by
// commas. It allocates only when both a key and a session verified.
func (d *Decision) Groups() string {
	switch {
	case d.Key != nil && d.Session != nil:
		return mergeSorted(d.Key.Groups(), d.Session.Groups())
	case d.Key != nil:
		return d.Key.GroupsHeader()
	case d.Session != nil:
		return d.Session.GroupsHeader()
	}
	return ""
}

func mergeSorted(a, b []string) string {
	var sb strings.Builder
	i, j := 0, 0
	write := func(s string) {
		if sb.Len() > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(s)
	}
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i] < b[j]):
			write(a[i])
			i++
		case i == len(a) || b[j] < a[i]:
			write(b[j])
			j++
		default:
			write(a[i])
			i++
			j++
		}
	}
	return sb.String()
}

// KeyID and SessionID are the public ids of the verified credentials.
func (d *Decision) KeyID() string {
	if d.Key == nil {
		return ""
	}
	return d.Key.ID
}

// SessionID is the public id of the verified session, if any.
func (d *Decision) SessionID() string {
	if d.Session == nil {
		return ""
	}
	return d.Session.ID
}

// EndpointName is the matched endpoint's name, or "".
func (d *Decision) EndpointName() string {
	if d.Endpoint == nil {
		return ""
	}
	return d.Endpoint.Name
}

// IdentityHeaders appends the identity headers of an allowed decision to dst;
// empty values are left out (and so removed if a client sent them).
func (d *Decision) IdentityHeaders(dst []Header) []Header {
	if d.Result != Allow {
		return dst
	}
	h := &d.Snapshot.Headers
	for _, kv := range [...]Header{
		{h.User, d.User()}, {h.Tenant, d.Tenant}, {h.Org, d.Org},
		{h.KeyID, d.KeyID()}, {h.SessionID, d.SessionID()}, {h.Groups, d.Groups()},
		{h.Auth, d.Auth()}, {h.Endpoint, d.EndpointName()},
	} {
		if kv.Value != "" {
			dst = append(dst, kv)
		}
	}
	return dst
}

// HeadersToRemove appends the inbound headers the upstream must not see: the
// credentials keygate read (when strip_credentials is on) and every inbound
// header with the identity prefix that set does not overwrite. Envoy removes
// after it sets, so nothing in set may be listed here.
func (d *Decision) HeadersToRemove(dst []string, in Headers, set []Header) []string {
	snap := d.Snapshot
	if snap.StripCredentials {
		for i, name := range snap.APIKeyHeaders {
			if d.keyHeaders&(1<<uint(i)) != 0 {
				dst = append(dst, name)
			}
		}
		if d.hasSess {
			dst = append(dst, snap.SessionHeader)
		}
	}
	prefix := snap.IdentityPrefix
	switch h := in.(type) {
	case MapHeaders: // the gRPC paths: no closure, so dst and set can stay on the caller's stack
		for name := range h {
			if spoofed(name, prefix, set) {
				dst = append(dst, name)
			}
		}
	case HTTPHeaders: // canonical names: lower-case (allocating) only those with the prefix
		for k := range h {
			if len(k) >= len(prefix) && strings.EqualFold(k[:len(prefix)], prefix) {
				if name := strings.ToLower(k); spoofed(name, prefix, set) {
					dst = append(dst, name)
				}
			}
		}
	case interface{ Fields() []Header }: // headers kept as a list (the gRPC server's decoded requests)
		for _, f := range h.Fields() {
			if spoofed(f.Name, prefix, set) {
				dst = append(dst, f.Name)
			}
		}
	default:
		var names []string // collected apart from dst, which the closure would move to the heap
		in.Each(func(name string) {
			if strings.HasPrefix(name, prefix) {
				names = append(names, name)
			}
		})
		for _, name := range names {
			if spoofed(name, prefix, set) {
				dst = append(dst, name)
			}
		}
	}
	return dst
}

// spoofed reports whether an inbound header claims keygate's identity
// prefix without keygate setting it.
func spoofed(name, prefix string, set []Header) bool {
	if !strings.HasPrefix(name, prefix) {
		return false
	}
	for _, s := range set {
		if s.Name == name {
			return false
		}
	}
	return true
}

// Challenge is the WWW-Authenticate value of a 401, or "".
func (d *Decision) Challenge() string {
	if d.Result != Deny || d.Status != 401 {
		return ""
	}
	if d.Reason == ReasonMissingCredential {
		return d.Snapshot.Challenge
	}
	return d.Snapshot.ChallengeInvalid
}

type denyBody struct {
	Error      string `json:"error"`
	Message    string `json:"message"`
	DecisionID string `json:"decision_id"`
}

// Body is the JSON body of a denial. It says what kind of failure happened
// and never whether a key exists or why it failed to verify.
func (d *Decision) Body(decisionID string) string {
	b := denyBody{Error: "forbidden", Message: "access to this resource is not allowed", DecisionID: decisionID}
	if d.Status == 401 {
		b.Error = "unauthorized"
		b.Message = "the credentials presented are not valid"
		if d.Reason == ReasonMissingCredential {
			b.Message = d.missingMessage()
		}
	}
	if code, msg, ok := d.rateLimitBody(); ok { // ratelimit.go
		b.Error, b.Message = code, msg
	}
	if code, msg, ok := d.storeBody(); ok { // storesession.go
		b.Error, b.Message = code, msg
	}
	out, _ := json.Marshal(b) // a struct of strings always encodes
	return string(out)
}

func (d *Decision) missingMessage() string {
	e := d.Endpoint
	switch {
	case e != nil && e.RequireKey && e.RequireSession:
		return "this endpoint requires an API key and a session"
	case e != nil && e.RequireSession:
		return "this endpoint requires a session"
	}
	return "this endpoint requires an API key"
}

var (
	idPrefix  = newIDPrefix()
	idCounter atomic.Uint64
)

func newIDPrefix() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails on supported platforms
	return "kg-" + hex.EncodeToString(b[:]) + "-"
}

// DecisionID returns Envoy's request id when it is a sensible one, else a
// fresh id unique to this process.
func DecisionID(requestID string) string {
	if requestID != "" && len(requestID) <= 128 && printable(requestID) {
		return requestID
	}
	return idPrefix + strconv.FormatUint(idCounter.Add(1), 36)
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
