package server

import (
	"slices"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/keygate/keygate/internal/authz"
)

// Field numbers of the messages in a CheckResponse, from the generated
// .pb.go files (TestWireFieldNumbers checks them against the descriptors).
const (
	// envoy.service.auth.v3.CheckResponse
	respStatus   = 1 // google.rpc.Status
	respDenied   = 2 // oneof http_response: DeniedHttpResponse
	respOK       = 3 // oneof http_response: OkHttpResponse
	respMetadata = 4 // google.protobuf.Struct
	// google.rpc.Status
	statusCode    = 1
	statusMessage = 2
	// envoy.service.auth.v3.OkHttpResponse
	okHeaders         = 2 // repeated HeaderValueOption
	okHeadersToRemove = 5 // repeated string
	// envoy.service.auth.v3.DeniedHttpResponse
	deniedStatus  = 1 // envoy.type.v3.HttpStatus
	deniedHeaders = 2 // repeated HeaderValueOption
	deniedBody    = 3
	// envoy.type.v3.HttpStatus
	httpStatusCode = 1
	// envoy.config.core.v3.HeaderValueOption and HeaderValue
	optionHeader       = 1
	optionAppendAction = 3
	headerKey          = 1
	headerValue        = 2
	// google.protobuf.Struct, its map entry, and Value
	structFields = 1
	entryKey     = 1
	entryValue   = 2
	valueString  = 3 // oneof kind
	valueBool    = 4 // oneof kind

	// HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD: a client's own
	// x-keygate-user must never survive next to keygate's.
	overwriteIfExistsOrAdd = 2
)

// appendCheckResponse appends the protobuf encoding of the CheckResponse
// that answers d to dst: for an allow, status OK, the identity headers to
// set, the inbound headers to remove and the dynamic metadata; for a denial,
// its gRPC status, HTTP status, headers, JSON body and the metadata. in are
// the request's headers and id the decision id. It grows dst at most once.
func appendCheckResponse(dst []byte, d *authz.Decision, in authz.Headers, id string) []byte {
	if d.Result != authz.Allow {
		return appendDenied(dst, d, id)
	}
	var setBuf [8]authz.Header
	var removeBuf [16]string
	set := d.IdentityHeaders(setBuf[:0])
	remove := d.HeadersToRemove(removeBuf[:0], in, set)

	okSize := 0
	for _, h := range set {
		okSize += sizeMessage(okHeaders, sizeOption(h.Name, h.Value))
	}
	for _, name := range remove {
		okSize += protowire.SizeTag(okHeadersToRemove) + protowire.SizeBytes(len(name))
	}
	metaSize := sizeMetadata(d, set, id)
	dst = slices.Grow(dst, sizeMessage(respStatus, 0)+sizeMessage(respOK, okSize)+sizeMessage(respMetadata, metaSize))

	dst = appendMessageHeader(dst, respStatus, 0) // Status{Code: OK}: present, empty
	dst = appendMessageHeader(dst, respOK, okSize)
	for _, h := range set {
		dst = appendOption(dst, okHeaders, h.Name, h.Value)
	}
	for _, name := range remove {
		dst = protowire.AppendTag(dst, okHeadersToRemove, protowire.BytesType)
		dst = protowire.AppendString(dst, name)
	}
	return appendMetadata(dst, metaSize, d, set, id)
}

func appendDenied(dst []byte, d *authz.Decision, id string) []byte {
	var buf [5]authz.Header
	headers := appendDeniedHeaders(buf[:0], d)
	body := d.Body(id)
	reason := d.Reason.String()

	statusSize := sizeVarintField(statusCode, uint64(DeniedCode(d))) + sizeStringField(statusMessage, reason)
	httpSize := sizeVarintField(httpStatusCode, uint64(d.Status))
	deniedSize := sizeMessage(deniedStatus, httpSize) + sizeStringField(deniedBody, body)
	for _, h := range headers {
		deniedSize += sizeMessage(deniedHeaders, sizeOption(h.Name, h.Value))
	}
	metaSize := sizeMetadata(d, nil, id)
	dst = slices.Grow(dst, sizeMessage(respStatus, statusSize)+sizeMessage(respDenied, deniedSize)+sizeMessage(respMetadata, metaSize))

	dst = appendMessageHeader(dst, respStatus, statusSize)
	dst = appendVarintField(dst, statusCode, uint64(DeniedCode(d)))
	dst = appendStringField(dst, statusMessage, reason)
	dst = appendMessageHeader(dst, respDenied, deniedSize)
	dst = appendMessageHeader(dst, deniedStatus, httpSize)
	dst = appendVarintField(dst, httpStatusCode, uint64(d.Status))
	for _, h := range headers {
		dst = appendOption(dst, deniedHeaders, h.Name, h.Value)
	}
	dst = appendStringField(dst, deniedBody, body)
	return appendMetadata(dst, metaSize, d, nil, id)
}

// The dynamic metadata is the decision keyed by the identity header names
// without their prefix (user, tenant, key-id, ...), then reason, decision_id,
// rate_limit and rate_limit_id (the limit that applied, or that a 429
// exceeded, and whose budget it counts: for Envoy's rate limit service, with
// tenant) and shadow_denied. Envoy puts it under the filter's namespace, for access
// logs and rate-limit descriptors:
// %DYNAMIC_METADATA(envoy.filters.http.ext_authz:user)%. Should two entries
// share a key, the later wins, on the wire as in a map.

func sizeMetadata(d *authz.Decision, set []authz.Header, id string) int {
	n := 0
	prefix := d.Snapshot.IdentityPrefix
	for _, h := range set {
		n += sizeStringEntry(strings.TrimPrefix(h.Name, prefix), h.Value)
	}
	n += sizeStringEntry("reason", d.Reason.String())
	if id != "" {
		n += sizeStringEntry("decision_id", id)
	}
	if l := d.RateLimit.Limit; l != nil {
		n += sizeStringEntry("rate_limit", l.Name) + sizeStringEntry("rate_limit_id", d.RateLimit.Counted)
	}
	if d.Shadowed {
		n += sizeMessage(structFields, sizeStringField(entryKey, "shadow_denied")+sizeMessage(entryValue, 2))
	}
	return n
}

func appendMetadata(dst []byte, size int, d *authz.Decision, set []authz.Header, id string) []byte {
	dst = appendMessageHeader(dst, respMetadata, size)
	prefix := d.Snapshot.IdentityPrefix
	for _, h := range set {
		dst = appendStringEntry(dst, strings.TrimPrefix(h.Name, prefix), h.Value)
	}
	dst = appendStringEntry(dst, "reason", d.Reason.String())
	if id != "" {
		dst = appendStringEntry(dst, "decision_id", id)
	}
	if l := d.RateLimit.Limit; l != nil {
		dst = appendStringEntry(dst, "rate_limit", l.Name)
		dst = appendStringEntry(dst, "rate_limit_id", d.RateLimit.Counted)
	}
	if d.Shadowed {
		dst = appendMessageHeader(dst, structFields, sizeStringField(entryKey, "shadow_denied")+sizeMessage(entryValue, 2))
		dst = appendStringField(dst, entryKey, "shadow_denied")
		dst = appendMessageHeader(dst, entryValue, 2)
		dst = protowire.AppendTag(dst, valueBool, protowire.VarintType)
		dst = protowire.AppendVarint(dst, 1)
	}
	return dst
}

// A Struct entry whose Value is a string: the oneof is written even when
// the string is empty, as a set oneof field always is.
func sizeStringEntry(k, v string) int {
	value := protowire.SizeTag(valueString) + protowire.SizeBytes(len(v))
	return sizeMessage(structFields, sizeStringField(entryKey, k)+sizeMessage(entryValue, value))
}

func appendStringEntry(dst []byte, k, v string) []byte {
	value := protowire.SizeTag(valueString) + protowire.SizeBytes(len(v))
	dst = appendMessageHeader(dst, structFields, sizeStringField(entryKey, k)+sizeMessage(entryValue, value))
	dst = appendStringField(dst, entryKey, k)
	dst = appendMessageHeader(dst, entryValue, value)
	dst = protowire.AppendTag(dst, valueString, protowire.BytesType)
	return protowire.AppendString(dst, v)
}

// A HeaderValueOption that sets header k to v, replacing any inbound value.
func sizeOption(k, v string) int {
	header := sizeStringField(headerKey, k) + sizeStringField(headerValue, v)
	return sizeMessage(optionHeader, header) + sizeVarintField(optionAppendAction, overwriteIfExistsOrAdd)
}

func appendOption(dst []byte, field protowire.Number, k, v string) []byte {
	header := sizeStringField(headerKey, k) + sizeStringField(headerValue, v)
	dst = appendMessageHeader(dst, field, sizeMessage(optionHeader, header)+sizeVarintField(optionAppendAction, overwriteIfExistsOrAdd))
	dst = appendMessageHeader(dst, optionHeader, header)
	dst = appendStringField(dst, headerKey, k)
	dst = appendStringField(dst, headerValue, v)
	return appendVarintField(dst, optionAppendAction, overwriteIfExistsOrAdd)
}

// sizeMessage is the size of a message field whose content is n bytes.
func sizeMessage(field protowire.Number, n int) int {
	return protowire.SizeTag(field) + protowire.SizeBytes(n)
}

func appendMessageHeader(dst []byte, field protowire.Number, n int) []byte {
	dst = protowire.AppendTag(dst, field, protowire.BytesType)
	return protowire.AppendVarint(dst, uint64(n))
}

// Scalar fields outside a oneof are left out when they hold proto3's
// default, as the generated marshalers do.

func sizeStringField(field protowire.Number, s string) int {
	if s == "" {
		return 0
	}
	return protowire.SizeTag(field) + protowire.SizeBytes(len(s))
}

func appendStringField(dst []byte, field protowire.Number, s string) []byte {
	if s == "" {
		return dst
	}
	dst = protowire.AppendTag(dst, field, protowire.BytesType)
	return protowire.AppendString(dst, s)
}

func sizeVarintField(field protowire.Number, v uint64) int {
	if v == 0 {
		return 0
	}
	return protowire.SizeTag(field) + protowire.SizeVarint(v)
}

func appendVarintField(dst []byte, field protowire.Number, v uint64) []byte {
	if v == 0 {
		return dst
	}
	dst = protowire.AppendTag(dst, field, protowire.VarintType)
	return protowire.AppendVarint(dst, v)
}
