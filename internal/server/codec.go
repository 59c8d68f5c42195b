package server

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	"google.golang.org/protobuf/proto"
)

// vtMarshaler is go-control-plane's generated fast path, present when
// keygate is built with -tags vtprotobuf (the Makefile does).
type vtMarshaler interface {
	MarshalVTStrict() ([]byte, error)
}

// Codec encodes answers with go-control-plane's generated marshalers where
// the build has them: a quarter of proto.Marshal's cost for a CheckResponse
// with identity headers and metadata (docs/performance.md). Anything else
// (health, reflection, a build without the tag) goes through proto as usual;
// the bytes on the wire are the same protobuf either way.
type Codec struct{}

var _ encoding.Codec = Codec{}

// Name is the content subtype this codec serves: the standard one.
func (Codec) Name() string { return "proto" }

// Marshal implements encoding.Codec.
func (Codec) Marshal(v any) ([]byte, error) {
	if m, ok := v.(vtMarshaler); ok {
		return m.MarshalVTStrict()
	}
	m, ok := v.(proto.Message)
	if !ok {
		return nil, fmt.Errorf("codec: %T is not a protobuf message", v)
	}
	return proto.Marshal(m)
}

// Unmarshal implements encoding.Codec.
func (Codec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return fmt.Errorf("codec: %T is not a protobuf message", v)
	}
	return proto.Unmarshal(data, m)
}
