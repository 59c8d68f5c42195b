package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/server"
	"github.com/keygate/keygate/internal/source"
)

// Exit codes of keygate check.
const (
	checkDenied     = 1
	checkNoDecision = 3 // the policy could not be loaded
)

type header struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// checkRequest is the request as check echoes it: credentials, query values
// and the values of headers keygate does not read masked.
type checkRequest struct {
	Method  string            `json:"method"`
	Host    string            `json:"host"`
	Path    string            `json:"path"`
	Headers []header          `json:"headers"`
	Context map[string]string `json:"context,omitempty"`
}

type checkPrincipal struct {
	User      string   `json:"user"`
	Tenant    string   `json:"tenant"`
	Org       string   `json:"org,omitempty"`
	KeyID     string   `json:"key_id,omitempty"`
	SessionID string   `json:"session_id,omitempty"`
	Groups    []string `json:"groups"`
	Auth      string   `json:"auth"`
}

// checkResult is what check prints: the decision and Envoy's answer.
type checkResult struct {
	Request         checkRequest     `json:"request"`
	Result          string           `json:"result"` // ALLOW or DENY
	HTTPStatus      int              `json:"http_status"`
	GRPCCode        string           `json:"grpc_code"`
	Reason          string           `json:"reason"`
	Shadowed        bool             `json:"shadowed"`
	Endpoint        string           `json:"endpoint"`
	Principal       *checkPrincipal  `json:"principal,omitempty"`
	HeadersSet      []header         `json:"headers_set,omitempty"`
	HeadersRemoved  []string         `json:"headers_removed,omitempty"`
	ResponseHeaders []header         `json:"response_headers,omitempty"`
	Body            json.RawMessage  `json:"body,omitempty"`
	SignedSession   *signedExplain   `json:"signed_session,omitempty"` // check_signed.go
	RateLimits      []checkRateLimit `json:"rate_limits,omitempty"`    // check_ratelimit.go
}

func check(args []string, stdout, stderr io.Writer) error {
	c := newCommand("keygate check", "keygate check --policy FILE --method M --path P [-H 'Name: value']... [--context keygate_endpoint=NAME]", stderr)
	path := c.fs.String("policy", "", "policy file or directory (required)")
	method := c.fs.String("method", "GET", "HTTP method")
	reqPath := c.fs.String("path", "", "request path as Envoy sends it, query string included (required)")
	host := c.fs.String("host", "", "host (default: the Host header, else localhost)")
	var headers, contexts multiFlag
	c.fs.Var(&headers, "H", "request header 'Name: value' (repeatable)")
	c.fs.Var(&contexts, "context", "Envoy context extension KEY=VALUE (repeatable), e.g. keygate_endpoint=whoami")
	at := c.fs.String("at", "", "decide as of this time: RFC 3339, or a duration from now such as 25h or 2d (expiry checks)")
	format := c.fs.String("format", "text", "output: text or json")
	verifyKey := c.fs.String("session-verify-key", "", "public keys of keygate's own signed sessions (as serve takes them)")
	signingKey := c.fs.String("session-signing-key", "", "or the signing key itself, whose public half verifies them")
	if pos, err := c.parse(args); err != nil {
		return err
	} else if len(pos) > 0 {
		return c.fail("unexpected argument %q", pos[0])
	}
	switch {
	case *path == "":
		return c.fail("--policy is required")
	case *reqPath == "":
		return c.fail("--path is required")
	case *format != "text" && *format != "json":
		return c.fail("--format must be text or json, not %q", *format)
	}
	hm := authz.MapHeaders{}
	var names []string // in the order given, for the echo
	for i, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		name = strings.ToLower(strings.TrimSpace(name))
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			// Not echoed: it may be a credential given without its name.
			return c.fail("-H wants 'Name: value'; -H number %d is not", i+1)
		}
		value = strings.TrimSpace(value)
		if prev, dup := hm[name]; dup {
			value = prev + "," + value // as Envoy joins repeated headers
		} else {
			names = append(names, name)
		}
		hm[name] = value
	}
	ctx := map[string]string{}
	for _, kv := range contexts {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return c.fail("--context wants KEY=VALUE, not %q", kv)
		}
		ctx[k] = v
	}
	r := authz.Request{Method: strings.ToUpper(*method), Host: *host, Path: *reqPath, Headers: hm, Endpoint: ctx[authz.ContextEndpointKey]}
	if r.Host == "" {
		r.Host = firstOf(hm["host"], hm[":authority"], "localhost")
	}
	var opts []authz.Option
	decidedAt := time.Now()
	if *at != "" {
		t, err := parseAt(*at)
		if err != nil {
			return c.fail("--at: %v", err)
		}
		decidedAt = t
		opts = append(opts, authz.WithClock(func() time.Time { return t }))
	}

	// The engine keygate serve runs: one snapshot in a store, a cache, Decide.
	store := source.NewStore()
	snap, err := policy.LoadPath(*path, policy.Options{Generation: store.NextGeneration()})
	if err != nil {
		return &exitError{code: checkNoDecision, err: invalidPolicy(*path, err)}
	}
	store.Publish(snap)
	creds, err := cache.New(64, time.Second)
	if err != nil {
		return err
	}
	verifier, err := checkVerifier(snap, *verifyKey, *signingKey)
	if err != nil {
		return err
	}
	defer verifier.Close()
	d := authz.New(store, creds, append(opts, authz.WithSessionVerifier(verifier))...).Decide(&r)

	res := explain(&d, &r, hm, snap, names, ctx)
	res.SignedSession = explainSigned(verifier, snap, hm[snap.SessionHeader], decidedAt)
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		printCheck(stdout, res)
	}
	if d.Result != authz.Allow {
		return &exitError{code: checkDenied, err: fmt.Errorf("denied: %s (HTTP %d)", res.Reason, res.HTTPStatus)}
	}
	return nil
}

// explain turns a decision into what Envoy would receive, with the same
// functions the gRPC and HTTP adapters use.
func explain(d *authz.Decision, r *authz.Request, hm authz.MapHeaders, snap *policy.Snapshot, names []string, ctx map[string]string) checkResult {
	res := checkResult{
		Request:  checkRequest{Method: r.Method, Host: r.Host, Path: echoPath(r.Path), Headers: []header{}, Context: ctx},
		Reason:   d.Reason.String(),
		Shadowed: d.Shadowed,
		Endpoint: d.EndpointName(),
	}
	if len(ctx) == 0 {
		res.Request.Context = nil
	}
	for _, n := range names {
		res.Request.Headers = append(res.Request.Headers, header{n, echoHeader(snap, n, hm[n])})
	}
	res.HTTPStatus = d.Status
	res.RateLimits = explainRateLimits(d)
	if d.Result == authz.Allow {
		res.Result, res.GRPCCode = "ALLOW", "OK"
		set := d.IdentityHeaders(nil)
		for _, h := range set {
			res.HeadersSet = append(res.HeadersSet, header{h.Name, h.Value})
		}
		res.HeadersRemoved = d.HeadersToRemove(nil, r.Headers, set)
		slices.Sort(res.HeadersRemoved)
		if d.Key != nil || d.Session != nil {
			res.Principal = &checkPrincipal{User: d.User(), Tenant: d.Tenant, Org: d.Org, KeyID: d.KeyID(),
				SessionID: d.SessionID(), Groups: listFlag(d.Groups()), Auth: d.Auth()}
			if res.Principal.Groups == nil {
				res.Principal.Groups = []string{}
			}
		}
		return res
	}
	// Exactly what the gRPC adapter answers.
	res.Result, res.GRPCCode = "DENY", grpcCodeName(server.DeniedCode(d))
	for _, h := range server.DeniedHeaders(d) {
		res.ResponseHeaders = append(res.ResponseHeaders, header{h.Name, h.Value})
	}
	res.Body = json.RawMessage(d.Body(authz.DecisionID(hm["x-request-id"])))
	return res
}

func printCheck(w io.Writer, res checkResult) {
	fmt.Fprintf(w, "request:   %s %s %s\n", res.Request.Method, res.Request.Host, res.Request.Path)
	for _, h := range res.Request.Headers {
		fmt.Fprintf(w, "  %s: %s\n", h.Name, h.Value)
	}
	for _, k := range sortedKeys(res.Request.Context) {
		fmt.Fprintf(w, "  context %s=%s\n", k, res.Request.Context[k])
	}
	fmt.Fprintf(w, "decision:  %s (HTTP %d, gRPC %s)\n", res.Result, res.HTTPStatus, res.GRPCCode)
	if res.Shadowed {
		fmt.Fprintf(w, "reason:    %s (shadow mode: enforcing would deny; the request passes and is logged)\n", res.Reason)
	} else {
		fmt.Fprintf(w, "reason:    %s\n", res.Reason)
	}
	fmt.Fprintf(w, "endpoint:  %s\n", firstOf(res.Endpoint, "(none matched)"))
	printSigned(w, res.SignedSession)
	printRateLimits(w, res.RateLimits)
	if res.Result == "ALLOW" {
		if p := res.Principal; p != nil {
			fmt.Fprintln(w, "principal:")
			for _, kv := range [][2]string{
				{"user", p.User}, {"tenant", p.Tenant}, {"org", p.Org}, {"key id", p.KeyID},
				{"session id", p.SessionID}, {"groups", strings.Join(p.Groups, ",")}, {"auth", p.Auth},
			} {
				fmt.Fprintf(w, "  %-11s %s\n", kv[0]+":", firstOf(kv[1], "-"))
			}
		} else {
			fmt.Fprintln(w, "principal: anonymous")
		}
		fmt.Fprintln(w, "upstream headers set:")
		for _, h := range res.HeadersSet {
			fmt.Fprintf(w, "  %s: %s\n", h.Name, h.Value)
		}
		fmt.Fprintln(w, "upstream headers removed:")
		for _, h := range res.HeadersRemoved {
			fmt.Fprintf(w, "  %s\n", h)
		}
		if len(res.HeadersRemoved) == 0 {
			fmt.Fprintln(w, "  (none)")
		}
		return
	}
	fmt.Fprintln(w, "response headers:")
	for _, h := range res.ResponseHeaders {
		fmt.Fprintf(w, "  %s: %s\n", h.Name, h.Value)
	}
	fmt.Fprintf(w, "response body:\n  %s\n", res.Body)
}

// credentialHeaders are always masked in echoes, whatever the policy names.
var credentialHeaders = []string{"authorization", "proxy-authorization", "x-api-key", "session", "cookie"}

// echoHeader is a header's value as check prints it. Credentials (the
// policy's key and session headers and the usual credential headers) are
// masked, Authorization keeping its scheme. Only the headers keygate reads
// that are not credentials show their values; any other header may carry
// a token keygate knows nothing of, so it shows only its length.
func echoHeader(snap *policy.Snapshot, name, value string) string {
	if slices.Contains(credentialHeaders, name) || slices.Contains(snap.APIKeyHeaders, name) || name == snap.SessionHeader {
		if name == "authorization" || name == "proxy-authorization" {
			if scheme, tok, ok := strings.Cut(value, " "); ok {
				return scheme + " " + maskCredential(strings.TrimSpace(tok))
			}
		}
		return maskCredential(value)
	}
	if readHeader(snap, name) {
		return value
	}
	return fmt.Sprintf("(%d bytes, not shown)", len(value))
}

// readHeader reports whether keygate reads a header that is not a
// credential: the host, the request id (the decision id), an organization
// header of the policy's endpoints, and the identity headers keygate sets
// (a client's copy is removed).
func readHeader(snap *policy.Snapshot, name string) bool {
	switch {
	case name == "host", name == ":authority", name == "x-request-id":
		return true
	case snap.IdentityPrefix != "" && strings.HasPrefix(name, snap.IdentityPrefix):
		return true
	}
	for _, e := range snap.Endpoints() {
		if e.OrgFrom == policy.OrgFromHeader && e.OrgHeader == name {
			return true
		}
	}
	return false
}

// echoPath is the request path as check prints it: the query string's
// values, which may carry keys or tokens, are masked; parameter names stay.
// keygate decides on the path alone.
func echoPath(p string) string {
	path, query, ok := strings.Cut(p, "?")
	if !ok {
		return p
	}
	params := strings.Split(query, "&")
	for i, kv := range params {
		if name, _, hasValue := strings.Cut(kv, "="); hasValue {
			params[i] = name + "=***"
		} else if kv != "" {
			params[i] = "***" // a bare value: it may be the secret itself
		}
	}
	return path + "?" + strings.Join(params, "&")
}

// parseAt reads --at: an RFC 3339 time or a duration from now.
func parseAt(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	neg := strings.HasPrefix(s, "-")
	d, err := parseLifetime(strings.TrimPrefix(strings.TrimPrefix(s, "-"), "+"))
	if err != nil {
		return time.Time{}, err
	}
	if neg {
		d = -d
	}
	return time.Now().Add(d), nil
}

func firstOf(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// grpcCodeName spells a code as Envoy's docs and grpcurl do.
func grpcCodeName(c codes.Code) string {
	switch c {
	case codes.Unauthenticated:
		return "UNAUTHENTICATED"
	case codes.PermissionDenied:
		return "PERMISSION_DENIED"
	}
	return strings.ToUpper(c.String())
}
