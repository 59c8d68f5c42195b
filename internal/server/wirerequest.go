package server

import (
	"errors"
	"math/bits"
	"unicode/utf8"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/keygate/keygate/internal/authz"
)

// decodeCheckRequest decodes a serialized envoy.service.auth.v3.CheckRequest
// into v without building the message: it is decodeCheckRequestSlow
// (proto.Unmarshal, then viewOf) at a fraction of the cost.
//
// It accepts and rejects exactly what proto.Unmarshal does. Every field the
// schema knows is checked as proto.Unmarshal checks it, including the ones
// keygate does not read: nested messages must parse, strings must be valid
// UTF-8, nesting stops at the same depth. Fields the schema does not know,
// and known fields with another wire type than their own, are skipped with
// protowire.ConsumeFieldValue, as proto.Unmarshal keeps them as unknown
// fields. Rejecting what proto.Unmarshal rejects keeps one answer for a
// malformed request whichever decoder runs, and is the safe direction.
//
// The fields read follow proto.Unmarshal too: the last value of a scalar
// wins, a message that appears several times is merged, the last map entry
// with a key wins and an entry without key or value means "". A request
// with http.header_map (Envoy's encode_raw_headers) is left to
// decodeCheckRequestSlow, which reads it.
//
// data may be reused once it returns: the strings of v share one copy of
// it, which lives as long as any of them.
func decodeCheckRequest(data []byte, v *checkView) error {
	d := viewDecoder{data: data, s: string(data)}
	err := d.message(data, checkRequestPlan, protowire.DefaultRecursionLimit-1)
	if err == errWireHeaderMap {
		return decodeCheckRequestSlow(data, v)
	}
	if err != nil {
		return err
	}
	var headers authz.Headers = authz.MapHeaders(nil)
	if d.headers != nil {
		headers = d.headers.finish()
	}
	*v = checkView{
		Request: authz.Request{
			Method:   d.slots[slotMethod],
			Host:     d.slots[slotHost],
			Path:     d.slots[slotPath],
			Headers:  headers,
			Endpoint: d.slots[slotEndpoint],
		},
		RequestID: firstNonEmpty(headers.Get("x-request-id"), d.slots[slotID]),
		Source:    d.slots[slotSource],
	}
	return nil
}

var (
	errWireMalformed = errors.New("check request: malformed protobuf")
	errWireUTF8      = errors.New("check request: a string field is not valid UTF-8")
	errWireDepth     = errors.New("check request: exceeded maximum recursion depth")
	errWireHeaderMap = errors.New("check request: header_map") // decode the slow way
)

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
	actHeaderMap // http.header_map: decode the slow way
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
	kindBytes
	kindString // UTF-8 checked
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
		case protoreflect.BytesKind:
			f.kind = kindBytes
		case protoreflect.StringKind:
			f.kind = kindBytes
			if enforceUTF8(fd) {
				f.kind = kindString
			}
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

// enforceUTF8 is protobuf-go's rule for checking a string field.
func enforceUTF8(fd protoreflect.FieldDescriptor) bool {
	if fd.Syntax() == protoreflect.Editions {
		if e, ok := fd.(interface{ EnforceUTF8() bool }); ok {
			return e.EnforceUTF8()
		}
	}
	return fd.Syntax() == protoreflect.Proto3
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
	if f.kind != kindMap || f.plan.field(1).kind != kindString || f.plan.field(2).kind != kindString {
		panic("server: CheckRequest plan: not a map<string, string>: " + string(f.desc.FullName()))
	}
	f.act = act
}

// viewDecoder walks a CheckRequest along a plan. The strings it captures
// are substrings of s, the one copy of data.
type viewDecoder struct {
	data    []byte
	s       string
	slots   [numSlots]string
	headers *viewHeaders
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
	if f.act == actHeaderMap {
		return 0, errWireHeaderMap
	}
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
	case kindBytes, kindString, kindMessage, kindMap:
		if typ != protowire.BytesType {
			break
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, errWireMalformed
		}
		switch f.kind {
		case kindString:
			if !utf8.Valid(v) {
				return 0, errWireUTF8
			}
			if f.slot != slotNone {
				d.slots[f.slot] = d.str(v)
			}
		case kindMessage:
			if err := d.message(v, f.plan, depth-1); err != nil {
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

var scalarType = [...]protowire.Type{kindVarint: protowire.VarintType, kindFixed32: protowire.Fixed32Type, kindFixed64: protowire.Fixed64Type}

func (d *viewDecoder) mapEntry(b []byte, f *wireField, depth int) error {
	if f.act == actNone {
		return d.message(b, f.plan, depth)
	}
	k, v, err := d.stringEntry(b)
	if err != nil {
		return err
	}
	switch f.act {
	case actHeader:
		if d.headers == nil {
			d.headers = new(viewHeaders)
			d.headers.fields = d.headers.inline[:0]
		}
		d.headers.fields = append(d.headers.fields, authz.Header{Name: k, Value: v})
	case actExtension:
		if k == authz.ContextEndpointKey {
			d.slots[slotEndpoint] = v
		}
	}
	return nil
}

// stringEntry decodes an entry of a map<string, string>: message does the
// same on its plan, more slowly.
func (d *viewDecoder) stringEntry(b []byte) (k, v string, err error) {
	for len(b) > 0 {
		num, typ, n := consumeTag(b)
		if n < 0 {
			return "", "", errWireMalformed
		}
		b = b[n:]
		if (num == 1 || num == 2) && typ == protowire.BytesType {
			s, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", "", errWireMalformed
			}
			if !utf8.Valid(s) {
				return "", "", errWireUTF8
			}
			if num == 1 {
				k = d.str(s)
			} else {
				v = d.str(s)
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", "", errWireMalformed
		}
		b = b[n:]
	}
	return k, v, nil
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
