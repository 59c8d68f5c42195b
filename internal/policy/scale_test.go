package policy

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
)

// scalePolicy is a JSON policy with n keys spread over a few orgs and group
// lists, the format large key sets should use (it decodes much faster).
func scalePolicy(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"version": 1, "groups": [{"name": "sales"}, {"name": "ops"}], "tenants": [{"id": "acme", "orgs": ["acme-eu", "acme-us"]}],
"endpoints": [{"name": "e", "match": {"path": "/orgs/{org}/**"}, "groups": ["sales"], "org": {"from": "path", "name": "org"}}],
"api_keys": [`)
	groups := []string{`["sales"]`, `["ops"]`, `["sales", "ops"]`}
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteString(",\n")
		}
		fmt.Fprintf(&b, `{"id": "k%d", "hash": "sha256:%x", "tenant": "acme", "user": "svc-%d", "groups": %s}`,
			i, sha256.Sum256([]byte(fmt.Sprint("key-", i))), i%1000, groups[i%3])
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// scaleKeyAt is how scalePolicy's key i begins.
func scaleKeyAt(i int) string { return fmt.Sprintf(`{"id": "k%d", `, i) }

// editScalePolicy replaces the first old in base by new, failing the test
// if base has no old.
func editScalePolicy(t *testing.T, base []byte, old, new string) []byte {
	t.Helper()
	if !bytes.Contains(base, []byte(old)) {
		t.Fatalf("%q not in policy", old)
	}
	return bytes.Replace(base, []byte(old), []byte(new), 1)
}

// BenchmarkLoad is parse + validate + compile of a whole policy, the work of
// one reload, at growing key counts:
//
//	go test -run '^$' -bench Load -benchtime 3x -benchmem ./internal/policy/
func BenchmarkLoad(b *testing.B) {
	for _, n := range []int{10, 10_000, 100_000, 1_000_000} {
		data := scalePolicy(n)
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				s, err := Load([]Input{{Name: "scale.json", Data: data}}, Options{Generation: 1})
				if err != nil {
					b.Fatal(err)
				}
				if s.Counts().APIKeys != n {
					b.Fatalf("%d keys, want %d", s.Counts().APIKeys, n)
				}
			}
		})
	}
}

// TestLargePolicyLoads keeps the scale path correct (the benchmark measures
// it): JSON fragments decode on the fast path and share group sets.
func TestLargePolicyLoads(t *testing.T) {
	s, err := Load([]Input{{Name: "scale.json", Data: scalePolicy(3000)}}, Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Counts().APIKeys; got != 3000 {
		t.Fatalf("%d keys", got)
	}
	a := s.Lookup(KindAPIKey, sha256.Sum256([]byte("key-2")))
	b := s.Lookup(KindAPIKey, sha256.Sum256([]byte("key-5")))
	if a == nil || b == nil || a.GroupsHeader() != "ops,sales" || &a.Groups()[0] != &b.Groups()[0] {
		t.Errorf("keys with the same groups must share one compiled group set")
	}
}

// TestLoadPaces: a reload of a large policy gives way to the requests being
// served (Options.Pace) while it reads and compiles the credentials.
func TestLoadPaces(t *testing.T) {
	const n = 3000
	calls := 0
	s, err := Load([]Input{{Name: "scale.json", Data: scalePolicy(n)}}, Options{Generation: 1, Pace: func() { calls++ }})
	if err != nil {
		t.Fatal(err)
	}
	// Once per paceEvery credentials while checking the array, and again
	// while compiling it.
	if want := 2 * (n / paceEvery); calls != want || s.Counts().APIKeys != n {
		t.Errorf("Pace called %d times for %d keys, want %d", calls, s.Counts().APIKeys, want)
	}
}
