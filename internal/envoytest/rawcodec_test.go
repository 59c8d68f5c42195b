package envoytest

import (
	"slices"
	"testing"
)

func TestRawCodec(t *testing.T) {
	// Not UTF-8, which the generated marshaler would refuse in a string.
	msg := []byte{0x0a, 0x02, 0xff, 0xfe}
	data, err := RawCodec{}.Marshal(&msg)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	if err := (RawCodec{}).Unmarshal(data, &got); err != nil || !slices.Equal(got, msg) {
		t.Errorf("RawCodec round trip = %x, %v; want the bytes unchanged, %x", got, err, msg)
	}
	if n := (RawCodec{}).Name(); n != "proto" {
		t.Errorf("Name = %q; want proto, the content-subtype keygate serves", n)
	}
}
