package server

import (
	"errors"
	"fmt"
	"sync"

	"google.golang.org/grpc/encoding"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
)

// Codec is the gRPC server's codec (grpc.ForceServerCodecV2). Check
// requests decode straight into the handler's checkView, and its answers
// arrive already encoded, in a pooled buffer gRPC releases once it has
// written them (Register). Any other message (health, reflection) goes
// through proto.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// Name is the content subtype this codec serves: the standard one.
func (Codec) Name() string { return "proto" }

// Marshal implements encoding.CodecV2.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	switch m := v.(type) {
	case *wireAnswer:
		if m.buf == nil {
			return nil, errors.New("codec: an answer is sent once")
		}
		m.out[0] = mem.NewBuffer(m.buf, answers)
		m.buf = nil // gRPC owns it now
		return m.out[:], nil
	case proto.Message:
		b, err := proto.Marshal(m)
		if err != nil {
			return nil, err
		}
		return mem.BufferSlice{mem.SliceBuffer(b)}, nil
	}
	return nil, fmt.Errorf("codec: %T is not a protobuf message", v)
}

// Unmarshal implements encoding.CodecV2. gRPC reuses data once it returns.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool()) // no copy when data is one buffer
	defer buf.Free()
	switch m := v.(type) {
	case *checkView:
		// A request that does not decode is decided, not refused: gRPC
		// would answer the error with INTERNAL, which failure_mode_allow
		// lets through.
		if err := decodeCheckRequest(buf.ReadOnlyData(), m); err != nil { // copies what the view keeps
			*m = malformedView(err)
		}
		return nil
	case proto.Message:
		return proto.Unmarshal(buf.ReadOnlyData(), m)
	}
	return fmt.Errorf("codec: %T is not a protobuf message", v)
}

// wireAnswer is a CheckResponse encoded by appendCheckResponse into a
// buffer from answers; the codec hands the buffer to gRPC as it is, in a
// BufferSlice backed by out.
type wireAnswer struct {
	buf *[]byte
	out [1]mem.Buffer
}

// answerSize is the capacity of a fresh answer buffer: a few allow answers
// with every identity header and metadata. It must be above gRPC's pooling
// threshold, under which mem.NewBuffer does not return buffers to a pool.
const answerSize = 4 << 10

// answers recycles answer buffers. Unlike gRPC's default pool it does not
// clear them: an answer is written before it is read.
var answers mem.BufferPool = &answerPool{}

type answerPool struct{ p sync.Pool }

// Get returns a buffer of length n.
func (a *answerPool) Get(n int) *[]byte {
	if b, ok := a.p.Get().(*[]byte); ok && cap(*b) >= n {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, max(n, answerSize))
	return &b
}

// Put keeps the buffer unless an unusually large answer grew it.
func (a *answerPool) Put(b *[]byte) {
	if c := cap(*b); c >= answerSize && c <= 4*answerSize {
		a.p.Put(b)
	}
}
