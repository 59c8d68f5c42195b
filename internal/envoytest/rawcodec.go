package envoytest

import "google.golang.org/grpc/mem"

// RawCodec is a gRPC codec for messages that are already bytes (*[]byte
// both ways): a request encoded once and sent many times, or one the
// generated marshaler refuses, such as strings that are not UTF-8, which
// Envoy forwards in headers, paths and bodies. Use it with
// grpc.ForceCodecV2(envoytest.RawCodec{}).
type RawCodec struct{}

func (RawCodec) Name() string { return "proto" }

func (RawCodec) Marshal(v any) (mem.BufferSlice, error) {
	return mem.BufferSlice{mem.SliceBuffer(*v.(*[]byte))}, nil
}

func (RawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	*v.(*[]byte) = data.Materialize()
	return nil
}
