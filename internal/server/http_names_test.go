package server

import (
	"fmt"
	"net/http"
	"testing"
)

// The allow answer writes identity headers into net/http's map under cached
// canonical names: they must be the names hdr.Set would have used, and the
// cache must stay bounded whatever names policies bring.
func TestCanonicalNames(t *testing.T) {
	var c canonicalNames
	for _, name := range []string{"x-keygate-user", "X-KEYGATE-org", "x-envoy-auth-headers-to-remove", "x_odd name", "x-keygate-user"} {
		if got, want := c.canonical(name), http.CanonicalHeaderKey(name); got != want {
			t.Errorf("canonical(%q) = %q, want %q", name, got, want)
		}
	}
	for i := range 2 * maxCanonicalNames {
		name := fmt.Sprintf("x-p%d-user", i)
		if got, want := c.canonical(name), http.CanonicalHeaderKey(name); got != want {
			t.Fatalf("canonical(%q) = %q, want %q", name, got, want)
		}
	}
	if n := len(*c.m.Load()); n > maxCanonicalNames {
		t.Errorf("%d names cached, want at most %d", n, maxCanonicalNames)
	}
}
