package server

import (
	"testing"

	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/protobuf/proto"

	"github.com/keygate/keygate/internal/authz"
)

// TestCodecRoundTrips: whatever path Marshal takes (vtproto with the build
// tag, proto without), Envoy decodes the same answer.
func TestCodecRoundTrips(t *testing.T) {
	h := testHTTPAuth(t, "", OriginAuto) // for its authorizer and policy
	r := authz.Request{Method: "POST", Host: "h", Path: "/private", Headers: authz.MapHeaders{"x-api-key": testKey, "x-keygate-user": "spoof"}}
	d := h.authz.Decide(&r)
	for name, resp := range map[string]*authv3.CheckResponse{
		"allow": checkResponse(&d, &r, "req-1"),
		"deny": func() *authv3.CheckResponse {
			r2 := r
			r2.Headers = authz.MapHeaders{}
			d2 := h.authz.Decide(&r2)
			return checkResponse(&d2, &r2, "req-2")
		}(),
	} {
		b, err := Codec{}.Marshal(resp)
		if err != nil {
			t.Fatal(err)
		}
		var got authv3.CheckResponse
		if err := (Codec{}).Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(resp, &got) {
			t.Errorf("%s: the answer does not round-trip:\n%v\n%v", name, resp, &got)
		}
	}
	if _, err := (Codec{}).Marshal("not a message"); err == nil {
		t.Error("a non-message must be refused")
	}
}
