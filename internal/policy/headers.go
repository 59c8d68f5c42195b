package policy

import (
	"fmt"
	"strings"
)

// reservedHeaders are request headers that the identity header prefix must
// leave alone. keygate removes every inbound header that starts with the
// prefix (so a client cannot pose as an identity) and sets its own under
// it: a prefix that begins one of these would strip it from every request,
// or pass an identity header off as it. An entry that ends in '-' is a
// family (content-*): the prefix must neither begin it nor lie inside it.
// Names without a '-' (host, cookie, forwarded, te, ...) cannot begin with
// a prefix that ends in '-', so they need no entry.
var reservedHeaders = []string{
	// Forwarding: Envoy, nginx, Caddy, Traefik and the original-request
	// headers keygate's HTTP adapter reads.
	"x-forwarded-", "x-real-ip", "x-original-uri", "x-original-url",
	"x-original-method", "x-http-method-override",
	// Envoy, gRPC and the tracing headers Envoy propagates.
	"x-envoy-", "x-request-id", "x-client-trace-id", "grpc-",
	"x-b3-", "x-ot-span-context", "x-datadog-", "x-amzn-trace-id",
	"x-cloud-trace-context",
	// HTTP (RFC 9110, 9111, 9112, 9113) and what browsers send.
	"content-", "accept-", "if-", "proxy-", "sec-", "access-control-",
	"transfer-encoding", "keep-alive", "user-agent", "cache-control",
	"max-forwards", "http2-settings", "early-data", "x-requested-with",
}

// identityPrefixProblem says what is wrong with a lower-case identity
// header prefix that is already a valid header name, or "" when it is fine:
// it must end with '-', so that the identity headers are a family of their
// own, and collide with no reserved header.
func identityPrefixProblem(p string) string {
	if !strings.HasSuffix(p, "-") {
		return "must end with '-' (such as x-keygate-), so that the identity headers are a family of their own"
	}
	for _, r := range reservedHeaders {
		family := strings.HasSuffix(r, "-")
		if !strings.HasPrefix(r, p) && !(family && strings.HasPrefix(p, r)) {
			continue
		}
		what := fmt.Sprintf("%q", r)
		if family {
			what = fmt.Sprintf("the %q headers", r+"*")
		}
		return "would take over " + what + ": keygate removes every inbound header that starts with the prefix; " +
			"choose one that begins no standard or proxy header, such as x-keygate- or x-acme-"
	}
	return ""
}

// validToken reports whether s is an RFC 9110 token, the syntax of a method.
func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}
