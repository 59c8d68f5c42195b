package apikey

import (
	"strings"
	"testing"
)

// forge makes a key that verifies from an id and a 32-character secret of
// any bytes: the checksum is no secret, so anyone can.
func forge(id, secret string) string {
	body := id + "_" + secret
	return body + checksum(body)
}

// overlapping returns two keys that verify where the second starts inside
// the first and ends after it, as one string.
func overlapping() string {
	a := "kg_a_" + strings.Repeat("p", 15)
	b := "kg_b_" + strings.Repeat("q", 12) // the second key's start ends the first's secret
	k1 := a + b + checksum(a+b)
	k2body := b + checksum(a+b) + strings.Repeat("r", 14) // the first's checksum is in the second's secret
	k2 := k2body + checksum(k2body)
	return k1 + k2[len(b)+checksumLen:]
}

// chained returns a key followed by text that, once the key is replaced by
// its redacted form, makes the redacted form and the text verify as a key.
func chained() string {
	k := forge("kg_id", strings.Repeat("s", 32))
	rest := strings.Repeat("t", 29)
	return k + rest + checksum("kg_id"+Redacted+rest)
}

func TestRedact(t *testing.T) {
	key, err := New("kg_7Hq2pXa1")
	if err != nil {
		t.Fatal(err)
	}
	other, err := New("kg_other")
	if err != nil {
		t.Fatal(err)
	}
	bad := key[:len(key)-1] + string(key[len(key)-1]^1)
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", ""},
		{"no key", "policy.yaml:3: expires_at: not a time", "policy.yaml:3: expires_at: not a time"},
		{"a key id alone", `{"key_id":"kg_7Hq2pXa1","user_id":"u"}`, `{"key_id":"kg_7Hq2pXa1","user_id":"u"}`},
		{"the key alone", key, "kg_7Hq2pXa1_***"},
		{"quoted in a message", `expires_at: "` + key + `" is not a time`, `expires_at: "kg_7Hq2pXa1_***" is not a time`},
		{"a path segment", "/files/" + key + "/x", "/files/kg_7Hq2pXa1_***/x"},
		{"glued to text", "x" + key + "y", "xkg_7Hq2pXa1_***y"},
		{"two keys glued", key + other, "kg_7Hq2pXa1_***kg_other_***"},
		{"the same key twice", key + " " + key, "kg_7Hq2pXa1_*** kg_7Hq2pXa1_***"},
		{"after a stray kg_", "kg_ kg_x " + key, "kg_ kg_x kg_7Hq2pXa1_***"},
		{"a wrong checksum is not a key", bad, bad},
		{"a cut key is not a key", key[:len(key)-2], key[:len(key)-2]},
		{"a forged key of any bytes", "a " + forge("kg_x y", strings.Repeat("\"", 32)) + " b", "a kg_x y_*** b"},
		{"a key starting inside a key", "<" + overlapping() + ">", "<kg_a_***>"},
		// The replacement and the text after it verify as a key: every
		// kg_ is broken instead.
		{"text made to verify after redaction", chained(), "kg-id" + Redacted + strings.Repeat("t", 29) + checksum("kg_id"+Redacted+strings.Repeat("t", 29))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Redact(tt.in); got != tt.want {
				t.Errorf("Redact(%q)\n = %q\nwant %q", tt.in, got, tt.want)
			}
			if got := string(RedactBytes([]byte(tt.in))); got != tt.want {
				t.Errorf("RedactBytes(%q)\n = %q\nwant %q", tt.in, got, tt.want)
			}
			assertNoKey(t, Redact(tt.in))
		})
	}
}

func TestRedactTestKeysVerify(t *testing.T) {
	o := overlapping()
	if _, _, ok := Check(o[:43]); !ok {
		t.Fatalf("overlapping: first key %q does not verify", o[:43])
	}
	if _, _, ok := Check(o[20:]); !ok || len(o) <= 43 {
		t.Fatalf("overlapping: second key %q does not verify or does not end after the first", o[20:])
	}
	c, n := chained(), len("kg_id_")+secretLen+checksumLen
	if _, _, ok := Check(c[:n]); !ok {
		t.Fatalf("chained: %q does not start with a key", c)
	}
	if _, _, ok := Check("kg_id" + Redacted + c[n:]); !ok {
		t.Fatalf("chained: the redacted form does not verify with the text after it")
	}
}

// Logging calls Redact on every line: text without a key must cost no
// allocation, even when it names key ids.
func TestRedactAllocatesOnlyForKeys(t *testing.T) {
	line := `{"level":"info","logger":"decision","msg":"decision","key_id":"kg_7Hq2pXa1","path":"/orgs/acme-eu/kg_/x","user_id":"u"}`
	b := []byte(line)
	if n := testing.AllocsPerRun(100, func() { Redact(line); RedactBytes(b) }); n != 0 {
		t.Errorf("Redact of a line without a key allocated %v times", n)
	}
}

// assertNoKey fails if any substring of s verifies as a key.
func assertNoKey(t *testing.T, s string) {
	t.Helper()
	for i := strings.Index(s, Prefix); i >= 0; {
		for j := i + len(Prefix); j <= len(s); j++ {
			if _, _, ok := Check(s[i:j]); ok {
				t.Fatalf("%q holds a key: %q", s, s[i:j])
			}
		}
		next := strings.Index(s[i+1:], Prefix)
		if next < 0 {
			break
		}
		i += 1 + next
	}
}

func FuzzRedact(f *testing.F) {
	k, _ := New("kg_seed0001")
	for _, s := range []string{"", "kg_", "kg__", k, "/v1/" + k + "/x?y=" + k, k + k, overlapping(), chained(), "kg_x_" + k} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 2048 {
			return // assertNoKey is quadratic
		}
		out := Redact(s)
		assertNoKey(t, out)
		if again := Redact(out); again != out {
			t.Fatalf("not idempotent: Redact(%q) = %q, then %q", s, out, again)
		}
		if b := RedactBytes([]byte(s)); string(b) != out {
			t.Fatalf("RedactBytes(%q) = %q, Redact = %q", s, b, out)
		}
		if firstKey(s, Prefix, strings.Index, strings.IndexByte) < 0 && out != s {
			t.Fatalf("Redact(%q) = %q changed text that holds no key", s, out)
		}
	})
}

// BenchmarkRedactBytes is the logger's cost per line: a decision log line
// that names a key id (one candidate to check), and one with a key in it.
func BenchmarkRedactBytes(b *testing.B) {
	key, _ := New("kg_stray001")
	line := `{"level":"info","time":"2026-12-02T02:19:27.886Z","logger":"decision","msg":"decision","decision_id":"8b1f9a0c",` +
		`"transport":"grpc","result":"deny","status":403,"reason":"org_denied","endpoint":"sales","key_id":"kg_7Hq2pXa1",` +
		`"session_id":"","user":"api-bot","tenant":"acme","org":"","method":"GET","path":"%s","source":"10.0.0.1","latency":0.000012}`
	for _, bc := range []struct{ name, path string }{
		{"no_key", "/orgs/acme-eu/sales/q1"},
		{"key_in_path", "/files/" + key},
	} {
		b.Run(bc.name, func(b *testing.B) {
			in := []byte(strings.Replace(line, "%s", bc.path, 1))
			b.ReportAllocs()
			for b.Loop() {
				RedactBytes(in)
			}
		})
	}
}
