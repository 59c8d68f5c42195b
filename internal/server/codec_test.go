package server

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/internal/authz"
)

// TestCodec: a Check request decodes into the view the message gives, an
// answer goes out as the bytes it is, and any other message round-trips
// through proto.
func TestCodec(t *testing.T) {
	req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source: &authv3.AttributeContext_Peer{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
			SocketAddress: &corev3.SocketAddress{Address: "10.1.2.3"}}}},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{
			Id: "envoy-id", Method: "POST", Host: "h", Path: "/private?x=1",
			Headers: map[string]string{"x-api-key": testKey, "x-request-id": "rid"},
		}},
		ContextExtensions: map[string]string{authz.ContextEndpointKey: "private"},
	}}
	data, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	want := viewOf(req)
	for name, in := range map[string]mem.BufferSlice{
		"one buffer":  {mem.SliceBuffer(data)},
		"two buffers": {mem.SliceBuffer(data[:7]), mem.SliceBuffer(data[7:])},
	} {
		var v checkView
		if err := (Codec{}).Unmarshal(in, &v); err != nil {
			t.Fatal(err)
		}
		if v.Method != want.Method || v.Host != want.Host || v.Path != want.Path || v.Endpoint != want.Endpoint ||
			v.RequestID != "rid" || v.Source != "10.1.2.3" || v.Headers.Get("x-api-key") != testKey {
			t.Errorf("%s: decoded view %+v, want %+v", name, v, want)
		}
	}
	// A request that does not parse is decided, not refused with an
	// error, which gRPC would answer with INTERNAL: the view is empty and
	// marked malformed, so that it is denied, and says why.
	broken := checkView{Request: authz.Request{Path: "/stale"}}
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer{0xff}}, &broken); err != nil || broken.Malformed == nil || !broken.Request.Malformed ||
		broken.Path != "" || broken.Method != "" || broken.Headers != nil {
		t.Errorf("a broken request: error %v, view %+v; want no error and an empty view that says it is malformed", err, broken)
	}

	buf := answers.Get(0)
	*buf = append(*buf, "\x0a\x00\x1a\x00"...)
	answer := &wireAnswer{buf: buf}
	out, err := (Codec{}).Marshal(answer)
	if err != nil || string(out.Materialize()) != "\x0a\x00\x1a\x00" {
		t.Errorf("an encoded answer must go out as is: %q, %v", out.Materialize(), err)
	}
	out.Free()
	if _, err := (Codec{}).Marshal(answer); err == nil {
		t.Error("an answer's buffer must be handed over once")
	}

	msg := &grpc_health_v1.HealthCheckResponse{Status: grpc_health_v1.HealthCheckResponse_SERVING}
	out, err = (Codec{}).Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	got := new(grpc_health_v1.HealthCheckResponse)
	if err := (Codec{}).Unmarshal(out, got); err != nil || !proto.Equal(got, msg) {
		t.Errorf("a health answer does not round-trip: %v, %v", got, err)
	}
	r := authz.Request{Method: "GET", Path: "/whoami", Headers: authz.MapHeaders{"x-api-key": ansKey}}
	d := answerAuthorizer(t, "").Decide(&r)
	resp := referenceResponse(&d, &r, "id")
	if out, err = (Codec{}).Marshal(resp); err != nil {
		t.Fatal(err)
	}
	gotResp := new(authv3.CheckResponse)
	if err := (Codec{}).Unmarshal(out, gotResp); err != nil || !proto.Equal(gotResp, resp) {
		t.Errorf("a CheckResponse message does not round-trip: %v, %v", gotResp, err)
	}

	if _, err := (Codec{}).Marshal("not a message"); err == nil {
		t.Error("a non-message must be refused")
	}
	if err := (Codec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(data)}, new(string)); err == nil {
		t.Error("decoding into a non-message must be refused")
	}
}

// TestAnswerPool: answers are encoded into recycled buffers large enough
// for gRPC to return them to the pool.
func TestAnswerPool(t *testing.T) {
	b := answers.Get(10)
	if len(*b) != 10 || mem.IsBelowBufferPoolingThreshold(cap(*b)) {
		t.Fatalf("len %d cap %d: gRPC would not return it to the pool", len(*b), cap(*b))
	}
	answers.Put(b)
	huge := make([]byte, 0, 1<<20)
	answers.Put(&huge) // dropped: one huge answer must not stay pooled
	if b := answers.Get(0); cap(*b) > 4*answerSize {
		t.Errorf("a %d byte buffer was kept", cap(*b))
	}
}
