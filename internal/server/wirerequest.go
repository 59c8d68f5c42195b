package server

import (
	"cmp"
	"errors"
	"math/bits"
	"strings"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/keygate/keygate/internal/authz"
)

// decodeCheckRequest decodes a serialized envoy.service.auth.v3.CheckRequest
// into v without building the message: it reads what proto.Unmarshal and
// viewOf read, at a fraction of the cost, with one difference: strings are
// bytes. Envoy forwards header values, paths and bodies that are not UTF-8,
// and proto3's rule would refuse them, which gRPC answers with INTERNAL and
// failure_mode_allow lets through. keygate decides on them as they are.
//
// Everything else proto.Unmarshal checks is checked, in the fields keygate
// does not read too: the wire format, that nested messages parse, the
// nesting depth. Fields the schema does not know, and known fields with
// another wire type than their own, are skipped with
// protowire.ConsumeFieldValue, as proto.Unmarshal keeps them as unknown
// fields. One rule is keygate's own: a header name must be UTF-8. HTTP
// allows only tokens, and an answer that named it in headers_to_remove
// would not parse in Envoy.
//
// The fields read follow proto.Unmarshal: the last value of a scalar wins,
// a message that appears several times is merged, the last map entry with
// a key wins and an entry without key or value means "". The headers come
// from http.header_map (Envoy's encode_raw_headers) when http.headers is
// empty, as viewOf reads them.
//
// A request that does not decode is malformed: the error says why, and the
// codec decides it (checkView.Malformed). data may be reused once it
// returns: the strings of v share one copy of it, which lives as long as
// any of them.
func decodeCheckRequest(data []byte, v *checkView) error {
	d := viewDecoder{data: data, s: string(data)}
	if err := d.message(data, checkRequestPlan, protowire.DefaultRecursionLimit-1); err != nil {
		return err
	}
	var headers authz.Headers = authz.MapHeaders(nil)
	switch {
	case d.headers != nil:
		headers = d.headers.finish()
	case d.headerMap:
		m, err := rawHeaders(d.rawHeaders)
		if err != nil {
			return err
		}
		headers = m
	}
	*v = checkView{
		Request: authz.Request{
			Method:   d.slots[slotMethod],
			Host:     d.slots[slotHost],
			Path:     d.slots[slotPath],
			Headers:  headers,
			Endpoint: d.slots[slotEndpoint],
		},
		RequestID: cmp.Or(headers.Get("x-request-id"), d.slots[slotID]),
		Source:    d.slots[slotSource],
	}
	return nil
}

var (
	errWireMalformed  = errors.New("check request: malformed protobuf")
	errWireDepth      = errors.New("check request: exceeded maximum recursion depth")
	errWireHeaderName = errors.New("check request: a header name is not UTF-8")
)

// rawHeaders are the headers of http.header_map: names lower-cased as in
// http.headers, a value's raw_value before its value, and a name sent
// several times joined with ",", as Envoy joins them in http.headers.
func rawHeaders(raw []authz.Header) (authz.MapHeaders, error) {
	m := make(authz.MapHeaders, len(raw))
	for _, h := range raw {
		if !utf8.ValidString(h.Name) {
			return nil, errWireHeaderName // before ToLower, which would make it UTF-8
		}
		k := strings.ToLower(h.Name)
		if prev, dup := m[k]; dup {
			h.Value = prev + "," + h.Value
		}
		m[k] = h.Value
	}
	return m, nil
}

// Slots are the strings a plan captures.
const (
	slotNone = iota
	slotID
	slotMethod
	slotPath
	slotHost
	slotSource
	slotEndpoint
	numSlots
)

// What a plan does with a field besides checking it.
const (
	actNone      = iota
	actHeader    // a map entry of http.headers: add it to the headers
	actExtension // a map entry of context_extensions: keep keygate's
	actHeaderMap // http.header_map: the headers may come from it
	actRawHeader // a HeaderValue of http.header_map: keep it
)

// checkRequestPlan is the CheckRequest schema with the fields keygate reads
// marked, compiled once from go-control-plane's descriptors: names, not
// numbers, so the numbers are those of the generated code.
var checkRequestPlan = compileCheckRequestPlan()

func compileCheckRequestPlan() *wirePlan {
	c := newPlanCompiler()
	root := c.own(c.compile((*authv3.CheckRequest)(nil).ProtoReflect().Descriptor()))
	http := []protoreflect.Name{"attributes", "request", "http"}
	c.capture(root, slotSource, "attributes", "source", "address", "socket_address", "address")
	c.capture(root, slotID, append(http, "id")...)
	c.capture(root, slotMethod, append(http, "method")...)
	c.capture(root, slotPath, append(http, "path")...)
	c.capture(root, slotHost, append(http, "host")...)
	c.mapEntries(root, actHeader, append(http, "headers")...)
	c.mapEntries(root, actExtension, "attributes", "context_extensions")
	c.at(root, append(http, "header_map")...).act = actHeaderMap
	c.headerValues(root, append(http, "header_map", "headers")...)
	return root
}

// wirePlan says how to decode one message: its fields by number.
type wirePlan struct {
	desc   protoreflect.MessageDescriptor
	fields []wireField
}

type wireField struct {
	kind   wireKind
	list   bool // a repeated scalar, which may come packed
	desc   protoreflect.FieldDescriptor
	plan   *wirePlan // of a message, or of a map's entries
	slot   uint8     // a string to capture
	act    uint8     // an action on the field
	clears uint16    // slots to empty when this oneof member is set
}

type wireKind uint8

const (
	kindUnknown wireKind = iota
	kindVarint
	kindFixed32
	kindFixed64
	kindBytes // and strings, which keygate reads as bytes
	kindMessage
	kindMap
)

var unknownField wireField

func (p *wirePlan) field(num protowire.Number) *wireField {
	if int(num) < len(p.fields) {
		return &p.fields[num]
	}
	return &unknownField
}

type planCompiler struct {
	compiled map[protoreflect.FullName]*wirePlan
	owned    map[*wirePlan]bool // copies on the path keygate reads
}

func newPlanCompiler() *planCompiler {
	return &planCompiler{compiled: map[protoreflect.FullName]*wirePlan{}, owned: map[*wirePlan]bool{}}
}

// compile returns the plan of a message and of every message it contains.
func (c *planCompiler) compile(md protoreflect.MessageDescriptor) *wirePlan {
	if p := c.compiled[md.FullName()]; p != nil {
		return p
	}
	p := &wirePlan{desc: md}
	c.compiled[md.FullName()] = p
	fds := md.Fields()
	for i := range fds.Len() {
		n := int(fds.Get(i).Number())
		if n >= len(p.fields) {
			p.fields = append(p.fields, make([]wireField, n+1-len(p.fields))...)
		}
	}
	for i := range fds.Len() {
		fd := fds.Get(i)
		f := &p.fields[fd.Number()]
		f.desc = fd
		f.list = fd.IsList()
		switch fd.Kind() {
		case protoreflect.BoolKind, protoreflect.EnumKind,
			protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Uint32Kind,
			protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Uint64Kind:
			f.kind = kindVarint
		case protoreflect.Sfixed32Kind, protoreflect.Fixed32Kind, protoreflect.FloatKind:
			f.kind = kindFixed32
		case protoreflect.Sfixed64Kind, protoreflect.Fixed64Kind, protoreflect.DoubleKind:
			f.kind = kindFixed64
		case protoreflect.BytesKind, protoreflect.StringKind:
			f.kind = kindBytes
		case protoreflect.MessageKind:
			f.kind = kindMessage
			if fd.IsMap() {
				f.kind = kindMap
			}
			f.plan = c.compile(fd.Message())
		default: // groups: proto2 only, and the CheckRequest tree is proto3
			// The plan is compiled at start-up from the generated code: a
			// field it cannot check is a build that must not run.
			panic("server: CheckRequest plan: unsupported field " + string(fd.FullName()))
		}
	}
	return p
}

// own returns a copy of p to mark fields on: a message type keygate reads
// on one path (source) is only checked on another (destination).
func (c *planCompiler) own(p *wirePlan) *wirePlan {
	if c.owned[p] {
		return p
	}
	cp := &wirePlan{desc: p.desc, fields: append([]wireField(nil), p.fields...)}
	c.owned[cp] = true
	return cp
}

// at returns the field at the end of the path of names from root, owning
// the plans on the way.
func (c *planCompiler) at(root *wirePlan, path ...protoreflect.Name) *wireField {
	p := root
	for i, name := range path {
		fd := p.desc.Fields().ByName(name)
		if fd == nil {
			panic("server: CheckRequest plan: no field " + string(name) + " in " + string(p.desc.FullName()))
		}
		f := &p.fields[fd.Number()]
		if i == len(path)-1 {
			return f
		}
		f.plan = c.own(f.plan)
		p = f.plan
	}
	panic("server: CheckRequest plan: empty path")
}

// capture marks the string at path to be kept in slot; setting another
// member of a oneof on the way empties it, as it replaces the member.
func (c *planCompiler) capture(root *wirePlan, slot uint8, path ...protoreflect.Name) {
	c.at(root, path...).slot = slot
	p := root
	for _, name := range path {
		fd := p.desc.Fields().ByName(name)
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			for i := range od.Fields().Len() {
				if other := od.Fields().Get(i); other != fd {
					p.fields[other.Number()].clears |= 1 << slot
				}
			}
		}
		p = p.fields[fd.Number()].plan
	}
}

// mapEntries marks the map<string, string> at path: act on each entry.
func (c *planCompiler) mapEntries(root *wirePlan, act uint8, path ...protoreflect.Name) {
	f := c.at(root, path...)
	if f.kind != kindMap || !stringFields(f.plan, "key", "value") {
		panic("server: CheckRequest plan: not a map<string, string>: " + string(f.desc.FullName()))
	}
	f.act = act
}

// headerValues marks the repeated HeaderValue at path: keep each one.
func (c *planCompiler) headerValues(root *wirePlan, path ...protoreflect.Name) {
	f := c.at(root, path...)
	if f.kind != kindMessage || !f.list || !stringFields(f.plan, "key", "value", "raw_value") {
		panic("server: CheckRequest plan: not a repeated HeaderValue: " + string(f.desc.FullName()))
	}
	f.act = actRawHeader
}

// stringFields reports whether p's fields are exactly strings or bytes
// named names, numbered from 1: what viewDecoder.stringValues decodes.
func stringFields(p *wirePlan, names ...protoreflect.Name) bool {
	fds := p.desc.Fields()
	if fds.Len() != len(names) {
		return false
	}
	for i, name := range names {
		fd := fds.ByNumber(protowire.Number(i + 1))
		if fd == nil || fd.Name() != name || fd.IsList() || (fd.Kind() != protoreflect.StringKind && fd.Kind() != protoreflect.BytesKind) {
			return false
		}
	}
	return true
}

// viewDecoder walks a CheckRequest along a plan. The strings it captures
// are substrings of s, the one copy of data.
type viewDecoder struct {
	data       []byte
	s          string
	slots      [numSlots]string
	headers    *viewHeaders
	headerMap  bool           // http.header_map was sent
	rawHeaders []authz.Header // its entries, as sent
}

// str returns the string of b, a subslice of d.data, without copying.
func (d *viewDecoder) str(b []byte) string {
	i := cap(d.data) - cap(b)
	return d.s[i : i+len(b)]
}

// message decodes one message, depth being the nesting proto.Unmarshal
// still allows.
func (d *viewDecoder) message(b []byte, p *wirePlan, depth int) error {
	if depth < 0 {
		return errWireDepth
	}
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return errWireMalformed
		}
		b = b[n:]
		n, err := d.field(b, p.field(num), num, typ, depth)
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// consumeTag reads a field's tag; n < 0 where proto.Unmarshal fails: a
// malformed varint, a field number out of range, an end-group tag.
func consumeTag(b []byte) (num protowire.Number, typ protowire.Type, n int) {
	if len(b) > 0 && b[0] >= 1<<3 && b[0] < 0x80 { // field 1 to 15
		num, typ, n = protowire.Number(b[0]>>3), protowire.Type(b[0]&7), 1
	} else if num, typ, n = protowire.ConsumeTag(b); n < 0 || num > protowire.MaxValidNumber {
		return 0, 0, -1
	}
	if typ == protowire.EndGroupType {
		return 0, 0, -1
	}
	return num, typ, n
}

// field decodes the value of one field, b starting after its tag, and
// returns its length.
func (d *viewDecoder) field(b []byte, f *wireField, num protowire.Number, typ protowire.Type, depth int) (int, error) {
	if f.kind == kindMap && depth-1 < 0 { // proto.Unmarshal counts a map as a level, whatever its wire type
		return 0, errWireDepth
	}
	known := false
	switch f.kind {
	case kindVarint, kindFixed32, kindFixed64:
		if f.list && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 || !packedOK(v, f.kind) {
				return 0, errWireMalformed
			}
			return n, nil // a oneof member is never repeated: nothing to clear
		}
		known = typ == scalarType[f.kind]
	case kindBytes, kindMessage, kindMap:
		if typ != protowire.BytesType {
			break
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, errWireMalformed
		}
		switch f.kind {
		case kindBytes:
			if f.slot != slotNone {
				d.slots[f.slot] = d.str(v)
			}
		case kindMessage:
			if err := d.messageField(v, f, depth-1); err != nil {
				return 0, err
			}
		case kindMap:
			if err := d.mapEntry(v, f, depth-1); err != nil {
				return 0, err
			}
		}
		d.clearSlots(f.clears)
		return n, nil
	}
	n := protowire.ConsumeFieldValue(num, typ, b)
	if n < 0 {
		return 0, errWireMalformed
	}
	if known {
		d.clearSlots(f.clears)
	}
	return n, nil
}

// messageField decodes the value of a message field.
func (d *viewDecoder) messageField(b []byte, f *wireField, depth int) error {
	switch f.act {
	case actHeaderMap:
		d.headerMap = true
	case actRawHeader:
		if depth < 0 {
			return errWireDepth
		}
		var kvr [3]string // key, value, raw_value
		if err := d.stringValues(b, kvr[:]); err != nil {
			return err
		}
		if kvr[2] != "" {
			kvr[1] = kvr[2]
		}
		d.rawHeaders = append(d.rawHeaders, authz.Header{Name: kvr[0], Value: kvr[1]})
		return nil
	}
	return d.message(b, f.plan, depth)
}

var scalarType = [...]protowire.Type{kindVarint: protowire.VarintType, kindFixed32: protowire.Fixed32Type, kindFixed64: protowire.Fixed64Type}

func (d *viewDecoder) mapEntry(b []byte, f *wireField, depth int) error {
	if f.act == actNone {
		return d.message(b, f.plan, depth)
	}
	var kv [2]string
	if err := d.stringValues(b, kv[:]); err != nil {
		return err
	}
	switch f.act {
	case actHeader:
		if !utf8.ValidString(kv[0]) {
			return errWireHeaderName
		}
		if d.headers == nil {
			d.headers = new(viewHeaders)
			d.headers.fields = d.headers.inline[:0]
		}
		d.headers.fields = append(d.headers.fields, authz.Header{Name: kv[0], Value: kv[1]})
	case actExtension:
		if kv[0] == authz.ContextEndpointKey {
			d.slots[slotEndpoint] = kv[1]
		}
	}
	return nil
}

// stringValues decodes a message whose only fields are strings or bytes
// numbered 1 to len(out) (stringFields), the last value of each winning: a
// map<string, string> entry, a HeaderValue. message does the same on its
// plan, more slowly.
func (d *viewDecoder) stringValues(b []byte, out []string) error {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return errWireMalformed
		}
		b = b[n:]
		if num >= 1 && int(num) <= len(out) && typ == protowire.BytesType {
			s, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return errWireMalformed
			}
			out[num-1] = d.str(s)
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return errWireMalformed
		}
		b = b[n:]
	}
	return nil
}

func (d *viewDecoder) clearSlots(mask uint16) {
	for ; mask != 0; mask &= mask - 1 {
		d.slots[bits.TrailingZeros16(mask)] = ""
	}
}

// packedOK reports whether b is a whole number of packed scalars.
func packedOK(b []byte, k wireKind) bool {
	switch k {
	case kindFixed32:
		return len(b)%4 == 0
	case kindFixed64:
		return len(b)%8 == 0
	}
	for len(b) > 0 {
		_, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return false
		}
		b = b[n:]
	}
	return true
}

// maxScannedHeaders is the most headers kept as a list, looked up by
// scanning; more go into a map.
const maxScannedHeaders = 32

// viewHeaders are the headers of a decoded CheckRequest, each name once.
// The usual request's fit in the same allocation.
type viewHeaders struct {
	fields []authz.Header
	inline [8]authz.Header
}

// finish returns the headers: h itself when they are few and their names
// distinct, else a map, in which later entries win as in proto's map.
func (h *viewHeaders) finish() authz.Headers {
	f := h.fields
	if len(f) <= maxScannedHeaders && !hasDuplicateName(f) {
		return h
	}
	m := make(authz.MapHeaders, len(f))
	for _, kv := range f {
		m[kv.Name] = kv.Value
	}
	return m
}

func hasDuplicateName(f []authz.Header) bool {
	for i := 1; i < len(f); i++ {
		for j := range i {
			if f[j].Name == f[i].Name {
				return true
			}
		}
	}
	return false
}

// Get implements authz.Headers.
func (h *viewHeaders) Get(name string) string {
	for i := range h.fields {
		if h.fields[i].Name == name {
			return h.fields[i].Value
		}
	}
	return ""
}

// Each implements authz.Headers.
func (h *viewHeaders) Each(fn func(string)) {
	for i := range h.fields {
		fn(h.fields[i].Name)
	}
}

// Fields are the headers, each name once; authz.Decision.HeadersToRemove
// walks them without a closure.
func (h *viewHeaders) Fields() []authz.Header { return h.fields }
