package server

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/source"
)

// Field numbers for the hand-built requests below, from the generated
// .pb.go files; TestWireRequestFieldNumbers checks them.
const (
	wrAttributes       = 1  // CheckRequest.attributes
	wrSource           = 1  // AttributeContext.source
	wrDestination      = 2  // AttributeContext.destination
	wrRequest          = 4  // AttributeContext.request
	wrExtensions       = 10 // AttributeContext.context_extensions
	wrMetadata         = 11 // AttributeContext.metadata_context
	wrPeerAddress      = 1  // Peer.address
	wrPeerLabels       = 3  // Peer.labels
	wrSocketAddress    = 1  // Address.socket_address (oneof address)
	wrPipe             = 2  // Address.pipe (oneof address)
	wrInternalAddress  = 3  // Address.envoy_internal_address (oneof address)
	wrSocketAddressStr = 2  // SocketAddress.address
	wrPortValue        = 3  // SocketAddress.port_value
	wrHTTP             = 2  // Request.http
	wrHTTPID           = 1
	wrHTTPMethod       = 2
	wrHTTPHeaders      = 3
	wrHTTPPath         = 4
	wrHTTPHost         = 5
	wrHTTPScheme       = 6
	wrHTTPSize         = 9
	wrHTTPBody         = 11
	wrHTTPHeaderMap    = 13
	wrFilterMetadata   = 1 // Metadata.filter_metadata
	wrStructFields     = 1 // Struct.fields
	wrValueString      = 3 // Value.string_value
	wrValueStruct      = 5 // Value.struct_value
	wrValueList        = 6 // Value.list_value
	wrListValues       = 1 // ListValue.values
)

func TestWireRequestFieldNumbers(t *testing.T) {
	for _, f := range []struct {
		msg   proto.Message
		field protoreflect.Name
		num   protowire.Number
	}{
		{&authv3.CheckRequest{}, "attributes", wrAttributes},
		{&authv3.AttributeContext{}, "source", wrSource},
		{&authv3.AttributeContext{}, "destination", wrDestination},
		{&authv3.AttributeContext{}, "request", wrRequest},
		{&authv3.AttributeContext{}, "context_extensions", wrExtensions},
		{&authv3.AttributeContext{}, "metadata_context", wrMetadata},
		{&authv3.AttributeContext_Peer{}, "address", wrPeerAddress},
		{&authv3.AttributeContext_Peer{}, "labels", wrPeerLabels},
		{&corev3.Address{}, "socket_address", wrSocketAddress},
		{&corev3.Address{}, "pipe", wrPipe},
		{&corev3.Address{}, "envoy_internal_address", wrInternalAddress},
		{&corev3.SocketAddress{}, "address", wrSocketAddressStr},
		{&corev3.SocketAddress{}, "port_value", wrPortValue},
		{&authv3.AttributeContext_Request{}, "http", wrHTTP},
		{&authv3.AttributeContext_HttpRequest{}, "id", wrHTTPID},
		{&authv3.AttributeContext_HttpRequest{}, "method", wrHTTPMethod},
		{&authv3.AttributeContext_HttpRequest{}, "headers", wrHTTPHeaders},
		{&authv3.AttributeContext_HttpRequest{}, "path", wrHTTPPath},
		{&authv3.AttributeContext_HttpRequest{}, "host", wrHTTPHost},
		{&authv3.AttributeContext_HttpRequest{}, "scheme", wrHTTPScheme},
		{&authv3.AttributeContext_HttpRequest{}, "size", wrHTTPSize},
		{&authv3.AttributeContext_HttpRequest{}, "body", wrHTTPBody},
		{&authv3.AttributeContext_HttpRequest{}, "header_map", wrHTTPHeaderMap},
		{&corev3.Metadata{}, "filter_metadata", wrFilterMetadata},
		{&structpb.Struct{}, "fields", wrStructFields},
		{&structpb.Value{}, "string_value", wrValueString},
		{&structpb.Value{}, "struct_value", wrValueStruct},
		{&structpb.Value{}, "list_value", wrValueList},
		{&structpb.ListValue{}, "values", wrListValues},
	} {
		md := f.msg.ProtoReflect().Descriptor()
		fd := md.Fields().ByName(f.field)
		if fd == nil || fd.Number() != f.num {
			t.Errorf("%s.%s: field %v, the test uses %d", md.FullName(), f.field, fd, f.num)
		}
	}
}

func withHTTP(h *authv3.AttributeContext_HttpRequest) *authv3.CheckRequest {
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Request: &authv3.AttributeContext_Request{Http: h}}}
}

func numberedHeaders(n int) map[string]string {
	m := make(map[string]string, n)
	for i := range n {
		m[fmt.Sprintf("x-h-%d", i)] = fmt.Sprint(i)
	}
	m["authorization"] = "Bearer k"
	return m
}

// fullCheckRequest fills what Envoy can send besides what keygate reads.
func fullCheckRequest() *authv3.CheckRequest {
	meta, _ := structpb.NewStruct(map[string]any{
		"s": "ü", "n": 1.5, "b": true, "z": nil,
		"l": []any{"a", 2.0, map[string]any{"deep": []any{"x"}}},
	})
	typed, _ := anypb.New(meta)
	dst := envoytest.SocketPeer("2001:db8::1", 0)
	dst.GetAddress().GetSocketAddress().PortSpecifier = &corev3.SocketAddress_NamedPort{NamedPort: "https"}
	dst.Service, dst.Principal, dst.Certificate = "backend", "spiffe://cluster.local/ns/x/sa/y", "-----BEGIN CERTIFICATE-----"
	dst.Labels = map[string]string{"app": "sales", "ünïcode": "välue"}
	src := envoytest.SocketPeer("10.0.0.7", 40000)
	src.GetAddress().GetSocketAddress().Protocol = corev3.SocketAddress_UDP
	src.GetAddress().GetSocketAddress().Ipv4Compat = true
	return &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:      src,
		Destination: dst,
		Request: &authv3.AttributeContext_Request{
			Time: timestamppb.New(timestamppb.Now().AsTime()),
			Http: &authv3.AttributeContext_HttpRequest{
				Id: "1", Method: "POST", Host: "api.example.com:8443", Path: "/orgs/acme-eu/sales?q=%C3%BC",
				Scheme: "https", Query: "q=%C3%BC", Fragment: "f", Size: 12, Protocol: "HTTP/1.1",
				Body: "{\"ü\": 1}", RawBody: []byte{0xff, 0xfe, 0},
				Headers: map[string]string{"authorization": "Bearer k", "content-type": "application/json", "x-keygate-user": "spoof"},
			},
		},
		ContextExtensions:    map[string]string{authz.ContextEndpointKey: "sales", "other": "x"},
		MetadataContext:      &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.filters.http.jwt_authn": meta}, TypedFilterMetadata: map[string]*anypb.Any{"t": typed}},
		RouteMetadataContext: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"r": {}}},
		TlsSession:           &authv3.AttributeContext_TLSSession{Sni: "api.example.com"},
	}}
}

// viewCases are realistic requests and edge cases built with the
// generated types.
func viewCases() []struct {
	name string
	req  *authv3.CheckRequest
} {
	pipe := &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/run/envoy.sock", Mode: 0o600}}}}
	internal := &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_EnvoyInternalAddress{
		EnvoyInternalAddress: &corev3.EnvoyInternalAddress{AddressNameSpecifier: &corev3.EnvoyInternalAddress_ServerListenerName{ServerListenerName: "l"}, EndpointId: "e"}}}}
	rawHeaders := &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
		{Key: ":authority", Value: "api.example.com"},
		{Key: "Authorization", RawValue: []byte("Bearer raw")},
		{Key: "x-a", Value: "1"}, {Key: "X-A", Value: "2"},
		{Key: "x-request-id", Value: "from-header-map"},
	}}
	return []struct {
		name string
		req  *authv3.CheckRequest
	}{
		{"load", envoytest.CheckRequest("kg_live_4f9c2a_0123456789abcdef0123456789abcdef")},
		{"empty", &authv3.CheckRequest{}},
		{"empty attributes", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{}}},
		{"no http", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: envoytest.SocketPeer("10.0.0.1", 1)}}},
		{"id only", withHTTP(&authv3.AttributeContext_HttpRequest{Id: "envoy-id", Method: "GET", Path: "/"})},
		{"x-request-id wins", withHTTP(&authv3.AttributeContext_HttpRequest{Id: "envoy-id", Headers: map[string]string{"x-request-id": "hdr"}})},
		{"empty x-request-id", withHTTP(&authv3.AttributeContext_HttpRequest{Id: "envoy-id", Headers: map[string]string{"x-request-id": ""}})},
		{"endpoint", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{ContextExtensions: map[string]string{"a": "b", authz.ContextEndpointKey: "orders", "z": ""}}}},
		{"other extensions", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{ContextExtensions: map[string]string{"keygate": "x"}}}},
		{"pipe source", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: pipe, Destination: envoytest.SocketPeer("10.0.0.2", 2)}}},
		{"internal source", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: internal}}},
		{"ipv6 source", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: envoytest.SocketPeer("::1", 443)}}},
		{"source without address", &authv3.CheckRequest{Attributes: &authv3.AttributeContext{Source: &authv3.AttributeContext_Peer{Service: "s"}}}},
		{"header_map", withHTTP(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", Id: "i", HeaderMap: rawHeaders})},
		{"headers and header_map", withHTTP(&authv3.AttributeContext_HttpRequest{Headers: map[string]string{"authorization": "Bearer map"}, HeaderMap: rawHeaders})},
		{"empty header_map", withHTTP(&authv3.AttributeContext_HttpRequest{HeaderMap: &corev3.HeaderMap{}})},
		{"unicode", withHTTP(&authv3.AttributeContext_HttpRequest{Method: "GET", Host: "bücher.example", Path: "/ü/😀", Headers: map[string]string{"x-ü": "ä😀", "authorization": "Bearer ü"}})},
		{"empty names and values", withHTTP(&authv3.AttributeContext_HttpRequest{Headers: map[string]string{"": "", "x-empty": "", "x": "1"}})},
		{"full", fullCheckRequest()},
		{"32 headers", withHTTP(&authv3.AttributeContext_HttpRequest{Headers: numberedHeaders(31)})},
		{"33 headers", withHTTP(&authv3.AttributeContext_HttpRequest{Headers: numberedHeaders(32)})},
		{"10,000 headers", withHTTP(&authv3.AttributeContext_HttpRequest{Method: "GET", Headers: numberedHeaders(10_000)})},
		{"not UTF-8", withHTTP(&authv3.AttributeContext_HttpRequest{Method: "G\xffT", Host: "h\xc3", Path: "/\xfe?q=\x80", Body: "\xff",
			Headers: map[string]string{"authorization": "Bearer \xff", "x-request-id": "\xc3\x28", "user-agent": "\xe2\x82"}})},
		{"header_map not UTF-8", withHTTP(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/", HeaderMap: &corev3.HeaderMap{Headers: []*corev3.HeaderValue{
			{Key: "Authorization", Value: "Bearer \xff"}, {Key: "x-api-key", RawValue: []byte{0xc3, 0x28, 0}}}}})},
	}
}

// diffViews compares a decoded view with the reference's, headers by name.
func diffViews(got, want checkView) string {
	var diffs []string
	for _, f := range []struct{ name, got, want string }{
		{"Method", got.Method, want.Method}, {"Host", got.Host, want.Host}, {"Path", got.Path, want.Path},
		{"Endpoint", got.Endpoint, want.Endpoint}, {"RequestID", got.RequestID, want.RequestID}, {"Source", got.Source, want.Source},
	} {
		if f.got != f.want {
			diffs = append(diffs, fmt.Sprintf("%s %q, want %q", f.name, f.got, f.want))
		}
	}
	gotNames, wantNames := namesVisited(got.Headers), namesVisited(want.Headers)
	for name, n := range gotNames {
		if n != 1 {
			diffs = append(diffs, fmt.Sprintf("Each visited %q %d times", name, n))
		}
	}
	if !maps.Equal(gotNames, wantNames) {
		diffs = append(diffs, fmt.Sprintf("header names %v, want %v", slices.Sorted(maps.Keys(gotNames)), slices.Sorted(maps.Keys(wantNames))))
	}
	for name := range maps.Keys(wantNames) {
		if g, w := got.Headers.Get(name), want.Headers.Get(name); g != w {
			diffs = append(diffs, fmt.Sprintf("header %q: %q, want %q", name, g, w))
		}
	}
	for _, name := range []string{"x-absent", ""} {
		if g, w := got.Headers.Get(name), want.Headers.Get(name); g != w {
			diffs = append(diffs, fmt.Sprintf("header %q: %q, want %q", name, g, w))
		}
	}
	return strings.Join(diffs, "; ")
}

func namesVisited(h authz.Headers) map[string]int {
	names := map[string]int{}
	h.Each(func(name string) { names[name]++ })
	return names
}

// decodeReference is the reference the fast decoder is held to:
// proto.Unmarshal into lenientCheckRequest, the CheckRequest whose strings
// need not be valid UTF-8, then viewOf on the generated message it copies
// into. It fails where the request is malformed: proto.Unmarshal fails, or
// viewOf finds it so.
func decodeReference(data []byte, v *checkView) error {
	m := lenientCheckRequest().New()
	if err := proto.Unmarshal(data, m.Interface()); err != nil {
		return err
	}
	var req authv3.CheckRequest
	copyMessage(req.ProtoReflect(), m)
	*v = viewOf(&req)
	return v.Malformed
}

// lenientCheckRequest is CheckRequest with every proto3 file it uses turned
// into proto2, whose strings proto.Unmarshal does not check for UTF-8. The
// wire format, nesting and every other check stay as they are, so it reads
// exactly what the generated type reads, and more: the strings Envoy
// forwards as they came, which are not always UTF-8.
var lenientCheckRequest = sync.OnceValue(func() protoreflect.MessageType {
	var set descriptorpb.FileDescriptorSet
	seen := map[string]bool{}
	var add func(fd protoreflect.FileDescriptor)
	add = func(fd protoreflect.FileDescriptor) {
		if seen[fd.Path()] {
			return
		}
		seen[fd.Path()] = true
		for i := range fd.Imports().Len() {
			add(fd.Imports().Get(i).FileDescriptor)
		}
		fdp := protodesc.ToFileDescriptorProto(fd)
		if fd.Syntax() == protoreflect.Proto3 {
			fdp.Syntax = nil // proto2
			for _, m := range fdp.MessageType {
				toProto2(m)
			}
		}
		set.File = append(set.File, fdp)
	}
	add(authv3.File_envoy_service_auth_v3_external_auth_proto)
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		panic(err)
	}
	d, err := files.FindDescriptorByName((&authv3.CheckRequest{}).ProtoReflect().Descriptor().FullName())
	if err != nil {
		panic(err)
	}
	return dynamicpb.NewMessageType(d.(protoreflect.MessageDescriptor))
})

// toProto2 drops proto3's optional fields' synthetic oneofs, which protoc
// puts after the real ones; an optional field is one of proto2's.
func toProto2(m *descriptorpb.DescriptorProto) {
	real := len(m.OneofDecl)
	for _, f := range m.Field {
		if f.GetProto3Optional() {
			real = min(real, int(f.GetOneofIndex()))
			f.Proto3Optional, f.OneofIndex = nil, nil
		}
	}
	m.OneofDecl = m.OneofDecl[:real]
	for _, n := range m.NestedType {
		toProto2(n)
	}
}

// copyMessage copies src into dst, a message of the same schema from
// another descriptor, field by field number and without any UTF-8 check.
func copyMessage(dst, src protoreflect.Message) {
	fields := dst.Descriptor().Fields()
	src.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		dfd := fields.ByNumber(fd.Number())
		switch {
		case fd.IsList():
			dl, sl := dst.Mutable(dfd).List(), v.List()
			for i := range sl.Len() {
				e := sl.Get(i)
				if fd.Message() != nil {
					ne := dl.NewElement()
					copyMessage(ne.Message(), e.Message())
					e = ne
				}
				dl.Append(e)
			}
		case fd.IsMap():
			dm := dst.Mutable(dfd).Map()
			v.Map().Range(func(k protoreflect.MapKey, e protoreflect.Value) bool {
				if fd.MapValue().Message() != nil {
					ne := dm.NewValue()
					copyMessage(ne.Message(), e.Message())
					e = ne
				}
				dm.Set(k, e)
				return true
			})
		case fd.Message() != nil:
			copyMessage(dst.Mutable(dfd).Message(), v.Message())
		default:
			dst.Set(dfd, v)
		}
		return true
	})
	dst.SetUnknown(src.GetUnknown())
}

// marshalLenient encodes m as Envoy would, strings as they are:
// proto.Marshal refuses a proto3 string that is not valid UTF-8.
func marshalLenient(m proto.Message) []byte {
	l := lenientCheckRequest().New()
	copyMessage(l, m.ProtoReflect())
	b, err := proto.Marshal(l.Interface())
	if err != nil {
		panic(err)
	}
	return b
}

// decodeBoth decodes data with the fast decoder and the reference and says
// how the results differ, if they do; they must not: both fail, or both
// succeed with the same view. It holds the reference to proto.Unmarshal
// into the generated type too: where that succeeds the reference reads the
// same, and where only it fails, the reason is a string that is not UTF-8.
func decodeBoth(data []byte) (fast checkView, diff string, fastErr error) {
	var ref checkView
	fastErr = decodeCheckRequest(data, &fast)
	refErr := decodeReference(data, &ref)
	var strict authv3.CheckRequest
	strictErr := proto.Unmarshal(data, &strict)
	switch {
	case strictErr == nil && refErr != nil:
		return fast, fmt.Sprintf("the reference fails (%v) where proto.Unmarshal does not", refErr), fastErr
	case strictErr == nil:
		if d := diffViews(ref, viewOf(&strict)); d != "" {
			return fast, "the reference reads otherwise than proto.Unmarshal: " + d, fastErr
		}
	case refErr == nil && !strings.Contains(strictErr.Error(), "invalid UTF-8"):
		return fast, fmt.Sprintf("proto.Unmarshal fails (%v) where the reference does not", strictErr), fastErr
	}
	switch {
	case (fastErr == nil) != (refErr == nil):
		return fast, fmt.Sprintf("fast error %v, reference error %v", fastErr, refErr), fastErr
	case fastErr == nil:
		return fast, diffViews(fast, ref), nil
	}
	return fast, "", fastErr
}

func TestDecodeCheckRequestMatchesProto(t *testing.T) {
	for _, c := range viewCases() {
		t.Run(c.name, func(t *testing.T) {
			data, err := proto.Marshal(c.req)
			if err != nil { // strings that are not UTF-8, as Envoy sends them
				data = marshalLenient(c.req)
			}
			if _, diff, err := decodeBoth(data); err != nil || diff != "" {
				t.Fatalf("error %v; %s", err, diff)
			}
			// Every cut of a message either fails both ways or is a
			// shorter message read the same.
			if len(data) > 4096 {
				return
			}
			for i := range data {
				if _, diff, _ := decodeBoth(data[:i]); diff != "" {
					t.Fatalf("cut at %d of %d: %s", i, len(data), diff)
				}
			}
		})
	}
}

// Hand-built wire bytes.

func wrField(num protowire.Number, payload ...[]byte) []byte {
	b := protowire.AppendTag(nil, num, protowire.BytesType)
	return protowire.AppendBytes(b, slices.Concat(payload...))
}

func wrString(num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
}

func wrVarint(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

func wrTag(num protowire.Number, typ protowire.Type) []byte {
	return protowire.AppendTag(nil, num, typ)
}

func wrEntry(num protowire.Number, k, v string) []byte {
	return wrField(num, wrString(1, k), wrString(2, v))
}

// inHTTP wraps HttpRequest fields in a whole CheckRequest.
func wrInHTTP(fields ...[]byte) []byte {
	return wrField(wrAttributes, wrField(wrRequest, wrField(wrHTTP, fields...)))
}

// inAddress wraps Address fields of the source in a whole CheckRequest.
func wrInAddress(fields ...[]byte) []byte {
	return wrField(wrAttributes, wrField(wrSource, wrField(wrPeerAddress, fields...)))
}

func wrSocket(fields ...[]byte) []byte { return wrField(wrSocketAddress, fields...) }

func TestDecodeCheckRequestWire(t *testing.T) {
	badUTF8 := "\xff\xfe"
	for _, c := range []struct {
		name string
		data []byte
		want checkView // compared when ok
		ok   bool
	}{
		// A message that appears several times is merged.
		{"attributes merged", slices.Concat(
			wrField(wrAttributes, wrField(wrSource, wrField(wrPeerAddress, wrSocket(wrString(wrSocketAddressStr, "10.0.0.1"))))),
			wrField(wrAttributes, wrField(wrRequest, wrField(wrHTTP, wrString(wrHTTPMethod, "GET"))))),
			checkView{Request: authz.Request{Method: "GET"}, Source: "10.0.0.1"}, true},
		{"http merged, last scalar wins", slices.Concat(
			wrInHTTP(wrString(wrHTTPMethod, "GET"), wrString(wrHTTPPath, "/a"), wrEntry(wrHTTPHeaders, "x-a", "1"), wrEntry(wrHTTPHeaders, "x-b", "1")),
			wrInHTTP(wrString(wrHTTPMethod, "POST"), wrEntry(wrHTTPHeaders, "x-b", "2"))),
			checkView{Request: authz.Request{Method: "POST", Path: "/a", Headers: authz.MapHeaders{"x-a": "1", "x-b": "2"}}}, true},
		{"last scalar wins in one message", wrInHTTP(wrString(wrHTTPHost, "a"), wrString(wrHTTPHost, "b"), wrString(wrHTTPHost, "")),
			checkView{}, true},
		{"later header entry wins", wrInHTTP(wrEntry(wrHTTPHeaders, "x-request-id", "1"), wrEntry(wrHTTPHeaders, "a", "x"), wrEntry(wrHTTPHeaders, "x-request-id", "2")),
			checkView{Request: authz.Request{Headers: authz.MapHeaders{"a": "x", "x-request-id": "2"}}, RequestID: "2"}, true},
		{"key and value repeated in an entry", wrInHTTP(wrField(wrHTTPHeaders, wrString(1, "a"), wrString(2, "1"), wrString(1, "b"), wrString(2, "2"))),
			checkView{Request: authz.Request{Headers: authz.MapHeaders{"b": "2"}}}, true},
		{"entry without value", wrInHTTP(wrField(wrHTTPHeaders, wrString(1, "a"))),
			checkView{Request: authz.Request{Headers: authz.MapHeaders{"a": ""}}}, true},
		{"entry without key", wrInHTTP(wrField(wrHTTPHeaders, wrString(2, "v"))),
			checkView{Request: authz.Request{Headers: authz.MapHeaders{"": "v"}}}, true},
		{"entry with value first and an unknown field", wrInHTTP(wrField(wrHTTPHeaders, wrString(2, "v"), wrVarint(3, 1), wrString(1, "k"))),
			checkView{Request: authz.Request{Headers: authz.MapHeaders{"k": "v"}}}, true},
		{"entry key with the wrong wire type", wrInHTTP(wrField(wrHTTPHeaders, wrVarint(1, 7), wrString(2, "v"))),
			checkView{Request: authz.Request{Headers: authz.MapHeaders{"": "v"}}}, true},
		{"endpoint: later entry wins", wrField(wrAttributes, wrEntry(wrExtensions, authz.ContextEndpointKey, "a"), wrEntry(wrExtensions, "x", "y"), wrEntry(wrExtensions, authz.ContextEndpointKey, "b")),
			checkView{Request: authz.Request{Endpoint: "b"}}, true},

		// A known field with another wire type is an unknown field.
		{"method as a varint", wrInHTTP(wrString(wrHTTPMethod, "GET"), wrVarint(wrHTTPMethod, 1)),
			checkView{Request: authz.Request{Method: "GET"}}, true},
		{"attributes as fixed64", protowire.AppendFixed64(wrTag(wrAttributes, protowire.Fixed64Type), 1), checkView{}, true},
		{"headers as a varint", wrInHTTP(wrVarint(wrHTTPHeaders, 1)), checkView{}, true},
		{"size as bytes", wrInHTTP(wrString(wrHTTPSize, "x"), wrString(wrHTTPMethod, "GET")), checkView{Request: authz.Request{Method: "GET"}}, true},

		// Address is a oneof: another member replaces socket_address,
		// the same member merges.
		{"socket then pipe", wrInAddress(wrSocket(wrString(wrSocketAddressStr, "a")), wrField(wrPipe, wrString(1, "/p"))), checkView{}, true},
		{"socket then internal", wrInAddress(wrSocket(wrString(wrSocketAddressStr, "a")), wrField(wrInternalAddress)), checkView{}, true},
		{"socket merged", wrInAddress(wrSocket(wrString(wrSocketAddressStr, "a")), wrSocket(wrVarint(wrPortValue, 80))), checkView{Source: "a"}, true},
		{"socket, pipe, socket", wrInAddress(wrSocket(wrString(wrSocketAddressStr, "a")), wrField(wrPipe), wrSocket(wrVarint(wrPortValue, 80))), checkView{}, true},
		{"pipe with the wrong wire type", wrInAddress(wrSocket(wrString(wrSocketAddressStr, "a")), wrVarint(wrPipe, 1)), checkView{Source: "a"}, true},
		{"pipe in a later address", slices.Concat(wrInAddress(wrSocket(wrString(wrSocketAddressStr, "a"))), wrInAddress(wrField(wrPipe))), checkView{}, true},
		{"destination is not source", wrField(wrAttributes, wrField(wrDestination, wrField(wrPeerAddress, wrSocket(wrString(wrSocketAddressStr, "d"))))), checkView{}, true},

		// Strings are bytes: Envoy forwards header values, paths and bodies
		// that are not UTF-8, and keygate decides on them as they are.
		{"invalid UTF-8 in method, path and host", wrInHTTP(wrString(wrHTTPMethod, badUTF8), wrString(wrHTTPPath, "/"+badUTF8), wrString(wrHTTPHost, badUTF8)),
			checkView{Request: authz.Request{Method: badUTF8, Path: "/" + badUTF8, Host: badUTF8}}, true},
		{"invalid UTF-8 in a header value", wrInHTTP(wrEntry(wrHTTPHeaders, "a", badUTF8)),
			checkView{Request: authz.Request{Headers: authz.MapHeaders{"a": badUTF8}}}, true},
		{"invalid UTF-8 in an extension", wrField(wrAttributes, wrEntry(wrExtensions, badUTF8, ""), wrEntry(wrExtensions, authz.ContextEndpointKey, badUTF8)),
			checkView{Request: authz.Request{Endpoint: badUTF8}}, true},
		{"invalid UTF-8 in scheme and body", wrInHTTP(wrString(wrHTTPScheme, badUTF8), wrString(wrHTTPBody, badUTF8)), checkView{}, true},
		{"invalid UTF-8 in the source", wrInAddress(wrSocket(wrString(wrSocketAddressStr, badUTF8))), checkView{Source: badUTF8}, true},
		{"invalid UTF-8 in the destination", wrField(wrAttributes, wrField(wrDestination, wrField(wrPeerAddress, wrSocket(wrString(wrSocketAddressStr, badUTF8))))), checkView{}, true},
		{"invalid UTF-8 in a label", wrField(wrAttributes, wrField(wrSource, wrEntry(wrPeerLabels, "l", badUTF8))), checkView{}, true},
		{"invalid UTF-8 in metadata", wrField(wrAttributes, wrField(wrMetadata, wrField(wrFilterMetadata, wrString(1, "f"), wrField(2, wrField(wrStructFields, wrString(1, "k"), wrField(2, wrString(wrValueString, badUTF8))))))), checkView{}, true},
		{"invalid UTF-8 in an unknown field", slices.Concat(wrString(99, badUTF8), wrInHTTP(wrString(98, badUTF8), wrString(wrHTTPMethod, "GET"))),
			checkView{Request: authz.Request{Method: "GET"}}, true},
		{"invalid UTF-8 in a varint-typed method", wrInHTTP(wrVarint(wrHTTPMethod, 0xff)), checkView{}, true},
		{"invalid UTF-8 in x-request-id", wrInHTTP(wrEntry(wrHTTPHeaders, "x-request-id", badUTF8)),
			checkView{Request: authz.Request{Headers: authz.MapHeaders{"x-request-id": badUTF8}}, RequestID: badUTF8}, true},
		// A header name is a token in every HTTP version: one that is not
		// even UTF-8 is a malformed request (and an answer naming it in
		// headers_to_remove would not parse in Envoy).
		{"invalid UTF-8 in a header name", wrInHTTP(wrEntry(wrHTTPHeaders, "x-keygate-"+badUTF8, "spoof")), checkView{}, false},
		{"invalid UTF-8 in a header_map key", wrInHTTP(wrField(wrHTTPHeaderMap, wrField(1, wrString(1, badUTF8), wrString(2, "v")))), checkView{}, false},
		{"invalid UTF-8 in an unused header_map key", wrInHTTP(wrEntry(wrHTTPHeaders, "a", "1"), wrField(wrHTTPHeaderMap, wrField(1, wrString(1, badUTF8)))),
			checkView{Request: authz.Request{Headers: authz.MapHeaders{"a": "1"}}}, true},

		// Messages not read must still parse.
		{"malformed destination", wrField(wrAttributes, wrField(wrDestination, []byte{0xff})), checkView{}, false},
		{"malformed metadata", wrField(wrAttributes, wrField(wrMetadata, wrField(wrFilterMetadata, []byte{0x0a, 0x05}))), checkView{}, false},
		{"malformed unknown bytes field", wrString(99, "\xff"), checkView{}, true},

		// Framing.
		{"truncated length", wrInHTTP(wrString(wrHTTPMethod, "GET"))[:8], checkView{}, false},
		{"truncated tag", []byte{0x80}, checkView{}, false},
		{"field number 0", wrVarint(0, 1), checkView{}, false},
		{"field number above the maximum", wrVarint(protowire.MaxValidNumber+1, 1), checkView{}, false},
		{"end group at the top", wrTag(5, protowire.EndGroupType), checkView{}, false},
		{"unknown group", slices.Concat(wrTag(7, protowire.StartGroupType), wrVarint(1, 1), wrTag(7, protowire.EndGroupType)), checkView{}, true},
		{"unterminated group", slices.Concat(wrTag(7, protowire.StartGroupType), wrVarint(1, 1)), checkView{}, false},
		{"method as a group", wrInHTTP(wrTag(wrHTTPMethod, protowire.StartGroupType), wrTag(wrHTTPMethod, protowire.EndGroupType)), checkView{}, true},
		{"reserved wire type", wrInHTTP(wrTag(wrHTTPMethod, 6)), checkView{}, false},
		{"varint too long", slices.Concat(wrTag(wrHTTPSize, protowire.VarintType), []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}), checkView{}, false},

		// header_map (Envoy's encode_raw_headers): names lower-cased,
		// raw_value before value, repeated names joined with ",", read
		// only when headers is empty.
		{"header_map", wrInHTTP(wrField(wrHTTPHeaderMap, wrField(1, wrString(1, "Authorization"), wrString(2, "Bearer x")))),
			checkView{Request: authz.Request{Headers: authz.MapHeaders{"authorization": "Bearer x"}}}, true},
		{"header_map raw values", wrInHTTP(wrField(wrHTTPHeaderMap,
			wrField(1, wrString(1, "X-A"), wrString(2, "v"), wrString(3, badUTF8)),
			wrField(1, wrString(1, "x-a"), wrString(2, "w"), wrString(3, "")),
			wrField(1, wrString(3, "r"), wrString(1, "x-request-id"), wrVarint(4, 1)))),
			checkView{Request: authz.Request{Headers: authz.MapHeaders{"x-a": badUTF8 + ",w", "x-request-id": "r"}}, RequestID: "r"}, true},
		{"header_map merged", slices.Concat(
			wrInHTTP(wrField(wrHTTPHeaderMap, wrField(1, wrString(1, "a"), wrString(2, "1")))),
			wrInHTTP(wrField(wrHTTPHeaderMap, wrField(1, wrString(1, "a"), wrString(2, "2"))))),
			checkView{Request: authz.Request{Headers: authz.MapHeaders{"a": "1,2"}}}, true},
		{"header_map under headers", wrInHTTP(wrEntry(wrHTTPHeaders, "a", "1"), wrField(wrHTTPHeaderMap, wrField(1, wrString(1, "b"), wrString(2, "2")))),
			checkView{Request: authz.Request{Headers: authz.MapHeaders{"a": "1"}}}, true},
		{"empty header_map", wrInHTTP(wrField(wrHTTPHeaderMap)), checkView{}, true},
		{"header_map as a varint", wrInHTTP(wrString(wrHTTPMethod, "GET"), wrVarint(wrHTTPHeaderMap, 1)), checkView{Request: authz.Request{Method: "GET"}}, true},
		{"malformed header_map entry", wrInHTTP(wrField(wrHTTPHeaderMap, wrField(1, []byte{0x0a, 0x05}))), checkView{}, false},
		{"header_map entry of the wrong wire type", wrInHTTP(wrField(wrHTTPHeaderMap, wrVarint(1, 1))), checkView{}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, diff, err := decodeBoth(c.data)
			if diff != "" {
				t.Fatal(diff)
			}
			if (err == nil) != c.ok {
				t.Fatalf("error %v, want ok %v", err, c.ok)
			}
			if err != nil {
				return
			}
			if c.want.Headers == nil {
				c.want.Headers = authz.MapHeaders(nil)
			}
			if diff := diffViews(got, c.want); diff != "" {
				t.Error(diff)
			}
		})
	}
}

// TestDecodeCheckRequestDepth: nesting stops where proto.Unmarshal stops it,
// which counts a map as a level of its own.
func TestDecodeCheckRequestDepth(t *testing.T) {
	// metadata_context.filter_metadata["f"] = Struct{"k": [[[...tail]]]}
	nested := func(lists int, tail []byte) []byte {
		// Built backwards, each length prefixed in O(1).
		rev := slices.Clone(tail)
		slices.Reverse(rev)
		wrap := func(num protowire.Number) {
			h := protowire.AppendVarint(wrTag(num, protowire.BytesType), uint64(len(rev)))
			slices.Reverse(h)
			rev = append(rev, h...)
		}
		for range lists {
			wrap(wrListValues)
			wrap(wrValueList)
		}
		v := slices.Clone(rev)
		slices.Reverse(v)
		return wrField(wrAttributes, wrField(wrMetadata, wrField(wrFilterMetadata, wrString(1, "f"), wrField(2, wrField(wrStructFields, wrString(1, "k"), wrField(2, v))))))
	}
	// Values at the bottom: a string, and structs whose last map is one
	// and four levels below the value, so that, lists being two levels,
	// some request puts that map right at the limit. The map has the wrong
	// wire type: proto.Unmarshal counts its level before it looks.
	badMap := wrField(wrValueStruct, wrVarint(wrStructFields, 1))
	for _, tail := range [][]byte{
		wrString(wrValueString, "x"),
		badMap,
		wrField(wrValueStruct, wrField(wrStructFields, wrString(1, "k"), wrField(2, badMap))),
	} {
		// The most lists proto.Unmarshal accepts.
		lo, hi := 0, protowire.DefaultRecursionLimit
		for lo+1 < hi {
			mid := (lo + hi) / 2
			if proto.Unmarshal(nested(mid, tail), new(authv3.CheckRequest)) == nil {
				lo = mid
			} else {
				hi = mid
			}
		}
		if lo == 0 {
			t.Fatal("proto.Unmarshal accepted no nesting")
		}
		for _, n := range []int{lo - 1, lo, lo + 1} {
			if _, diff, _ := decodeBoth(nested(n, tail)); diff != "" {
				t.Errorf("%d lists above %x: %s", n, tail, diff)
			}
		}
	}
}

// TestDecodedHeaders: a few distinct headers are scanned in place; many,
// or repeated names, go into a map, so that no lookup or walk is worse than
// linear.
func TestDecodedHeaders(t *testing.T) {
	decode := func(data []byte) authz.Headers {
		var v checkView
		if err := decodeCheckRequest(data, &v); err != nil {
			t.Fatal(err)
		}
		return v.Headers
	}
	data, _ := proto.Marshal(envoytest.CheckRequest("k"))
	if h, ok := decode(data).(*viewHeaders); !ok || len(h.fields) != 8 {
		t.Errorf("load request: headers %T, want 8 scanned in place", h)
	}
	if _, ok := decode(wrInHTTP(wrEntry(wrHTTPHeaders, "a", "1"), wrEntry(wrHTTPHeaders, "a", "2"))).(authz.MapHeaders); !ok {
		t.Error("a repeated name: want a map")
	}
	data, _ = proto.Marshal(withHTTP(&authv3.AttributeContext_HttpRequest{Headers: numberedHeaders(10_000)}))
	h := decode(data)
	if _, ok := h.(authz.MapHeaders); !ok {
		t.Errorf("10,001 headers: %T, want a map", h)
	}
	n := 0
	h.Each(func(string) { n++ })
	if n != 10_001 || h.Get("x-h-9999") != "9999" || h.Get("authorization") != "Bearer k" {
		t.Errorf("10,001 headers: Each visited %d, Get x-h-9999 %q", n, h.Get("x-h-9999"))
	}
}

// TestDecodeCheckRequestCopies: the view does not share data, which gRPC
// reuses.
func TestDecodeCheckRequestCopies(t *testing.T) {
	data, _ := proto.Marshal(envoytest.CheckRequest("k"))
	var v checkView
	if err := decodeCheckRequest(data, &v); err != nil {
		t.Fatal(err)
	}
	clear(data)
	if v.Method != "GET" || v.Path != "/orgs/acme-eu/sales/q1?x=1" || v.Headers.Get("authorization") != "Bearer k" || v.Source != "10.12.7.31" {
		t.Errorf("view changed with data: %+v", v)
	}
}

func TestDecodeCheckRequestAllocations(t *testing.T) {
	data, _ := proto.Marshal(envoytest.CheckRequest("kg_live_4f9c2a_0123456789abcdef0123456789abcdef"))
	var v checkView
	// The copy of data and the headers.
	if n := testing.AllocsPerRun(100, func() { _ = decodeCheckRequest(data, &v) }); n > 2 {
		t.Errorf("%v allocations per request, want 2", n)
	}
}

// FuzzDecodeCheckRequest: on any input the fast decoder fails exactly when
// the reference does (proto.Unmarshal, strings read as bytes), and
// otherwise reads the same view.
func FuzzDecodeCheckRequest(f *testing.F) {
	for _, c := range viewCases() {
		if data := marshalLenient(c.req); len(data) < 4096 {
			f.Add(data)
		}
	}
	f.Add(slices.Concat(wrInAddress(wrSocket(wrString(wrSocketAddressStr, "a")), wrField(wrPipe)), wrInHTTP(wrEntry(wrHTTPHeaders, "a", "1"), wrEntry(wrHTTPHeaders, "a", "2"))))
	f.Add(wrInHTTP(wrString(wrHTTPMethod, "GET"), wrField(wrHTTPHeaderMap, wrField(1, wrString(1, "A"), wrString(2, "1")))))
	// Strings that are not UTF-8 in every place Envoy forwards them.
	const bad = "\xff\xfe\xc3"
	f.Add(wrInHTTP(wrString(wrHTTPMethod, bad), wrString(wrHTTPPath, "/"+bad), wrString(wrHTTPHost, bad), wrString(wrHTTPBody, bad),
		wrEntry(wrHTTPHeaders, "authorization", "Bearer "+bad), wrEntry(wrHTTPHeaders, "x-"+bad, "v")))
	f.Add(wrInHTTP(wrField(wrHTTPHeaderMap, wrField(1, wrString(1, "X-Api-Key"), wrString(3, bad)), wrField(1, wrString(1, bad), wrString(2, bad)))))
	f.Add(marshalLenient(withHTTP(&authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/\x80", Headers: map[string]string{"session": bad}, RawBody: []byte(bad)})))
	f.Fuzz(func(t *testing.T, data []byte) {
		if _, diff, _ := decodeBoth(data); diff != "" {
			t.Fatal(diff)
		}
	})
}

func BenchmarkDecodeCheckRequest(b *testing.B) {
	data, err := proto.Marshal(envoytest.CheckRequest("kg_live_4f9c2a_0123456789abcdef0123456789abcdef"))
	if err != nil {
		b.Fatal(err)
	}
	for _, d := range []struct {
		name   string
		decode func([]byte, *checkView) error
	}{{"fast", decodeCheckRequest}, {"proto.Unmarshal", func(data []byte, v *checkView) error {
		var req authv3.CheckRequest
		err := proto.Unmarshal(data, &req)
		*v = viewOf(&req)
		return err
	}}} {
		b.Run(d.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			var v checkView
			for b.Loop() {
				if err := d.decode(data, &v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestViewHeadersToRemove: the decoded headers take HeadersToRemove's
// closure-free path and give the same answer as a map.
func TestViewHeadersToRemove(t *testing.T) {
	const key = "kg-view-key"
	doc := fmt.Sprintf(`version: 1
groups: [{name: sales}]
tenants: [{id: acme, orgs: [acme-eu]}]
endpoints:
  - {name: sales, match: {path: "/orgs/{org}/sales/**"}, groups: [sales], org: {from: path, name: org}}
api_keys:
  - {id: k1, hash: %q, tenant: acme, user: bot, groups: [sales]}
`, policy.FormatDigest(apikey.Digest(key)))
	snap, err := policy.Load([]policy.Input{{Name: "view.yaml", Data: []byte(doc)}}, policy.Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	st := source.NewStore()
	st.Publish(snap)
	c, _ := cache.New(64, time.Minute)
	a := authz.New(st, c)
	req := envoytest.CheckRequest(key)
	req.Attributes.Request.Http.Headers["x-keygate-user"] = "spoof"
	req.Attributes.Request.Http.Headers["x-keygate-anything"] = "spoof"
	data, _ := proto.Marshal(req)

	var fast, slow checkView
	if err := decodeCheckRequest(data, &fast); err != nil {
		t.Fatal(err)
	}
	if err := decodeReference(data, &slow); err != nil {
		t.Fatal(err)
	}
	if _, ok := fast.Headers.(*viewHeaders); !ok {
		t.Fatalf("headers decoded as %T", fast.Headers)
	}
	d := a.Decide(&fast.Request)
	if d.Result != authz.Allow {
		t.Fatalf("%v %v", d.Result, d.Reason)
	}
	set := d.IdentityHeaders(nil)
	got := d.HeadersToRemove(nil, fast.Headers, set)
	want := d.HeadersToRemove(nil, slow.Headers, set)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) || !slices.Contains(got, "x-keygate-anything") {
		t.Errorf("removed %v, want %v", got, want)
	}
	buf := make([]string, 0, 16)
	allocs := func(h authz.Headers) float64 {
		return testing.AllocsPerRun(100, func() { buf = d.HeadersToRemove(buf[:0], h, set) })
	}
	if f, m := allocs(fast.Headers), allocs(slow.Headers); f > m {
		t.Errorf("HeadersToRemove allocates %v times with decoded headers, %v with a map", f, m)
	}
}

// TestWirePlanPacked: repeated scalars, absent from CheckRequest, are
// checked as proto.Unmarshal checks them, packed or not.
func TestWirePlanPacked(t *testing.T) {
	md := (&descriptorpb.SourceCodeInfo_Location{}).ProtoReflect().Descriptor()
	plan := newPlanCompiler().compile(md)
	const path, comments = 1, 3 // repeated int32 path [packed]; optional string leading_comments
	for _, data := range [][]byte{
		wrVarint(path, 1),
		slices.Concat(wrVarint(path, 1), wrVarint(path, 300)),
		wrField(path, protowire.AppendVarint(nil, 300), protowire.AppendVarint(nil, 1)),
		wrField(path),
		wrField(path, []byte{0x80}),
		wrField(path, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}),
		protowire.AppendFixed32(wrTag(path, protowire.Fixed32Type), 1),
		wrString(comments, "\xff"),
	} {
		d := viewDecoder{data: data, s: string(data)}
		err := d.message(data, plan, protowire.DefaultRecursionLimit-1)
		want := proto.Unmarshal(data, &descriptorpb.SourceCodeInfo_Location{})
		if (err == nil) != (want == nil) {
			t.Errorf("%x: error %v, proto.Unmarshal %v", data, err, want)
		}
	}
}
