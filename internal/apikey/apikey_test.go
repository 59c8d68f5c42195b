package apikey

import (
	"crypto/sha256"
	"strings"
	"testing"
)

func TestNewKeysCheckOut(t *testing.T) {
	seen := map[string]bool{}
	for i := 0; i < 200; i++ {
		id, err := NewID()
		if err != nil {
			t.Fatal(err)
		}
		key, err := New(id)
		if err != nil {
			t.Fatal(err)
		}
		if seen[key] {
			t.Fatalf("key repeated: random source is broken")
		}
		seen[key] = true
		got, ours, valid := Check(key)
		if !ours || !valid || got != id {
			t.Fatalf("Check(%q) = %q, %v, %v; want %q, true, true", key, got, ours, valid, id)
		}
		if !strings.HasPrefix(key, id+"_") || len(key) != len(id)+1+secretLen+checksumLen {
			t.Fatalf("key %q does not have the kg_<id>_<secret><checksum> shape", key)
		}
	}
}

func TestCheckRefusesMistypedAndForgedKeys(t *testing.T) {
	key, err := New("kg_abc123")
	if err != nil {
		t.Fatal(err)
	}
	flip := func(i int) string {
		b := []byte(key)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	tests := []struct {
		name        string
		key         string
		ours, valid bool
	}{
		{"valid", key, true, true},
		{"one secret character changed", flip(len("kg_abc123_") + 3), true, false},
		{"checksum changed", flip(len(key) - 1), true, false},
		{"id changed", strings.Replace(key, "kg_abc123", "kg_abc124", 1), true, false},
		{"truncated", key[:len(key)-1], true, false},
		{"no separator", "kg_abc123", true, false},
		{"empty id", "kg__" + strings.Repeat("a", secretLen+checksumLen), true, false},
		{"not ours", "sk_live_1234", false, false},
		{"empty", "", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ours, valid := Check(tt.key)
			if ours != tt.ours || valid != tt.valid {
				t.Errorf("Check = ours %v valid %v, want %v %v", ours, valid, tt.ours, tt.valid)
			}
		})
	}
}

func TestNewRefusesBadIDs(t *testing.T) {
	for _, id := range []string{"", "kg_", "abc", "kg_a_b"} {
		if _, err := New(id); err == nil {
			t.Errorf("New(%q) must fail", id)
		}
	}
}

func TestDigestIsSHA256(t *testing.T) {
	for _, s := range []string{"", "short", strings.Repeat("x", 256), strings.Repeat("y", 1000)} {
		if Digest(s) != sha256.Sum256([]byte(s)) {
			t.Errorf("Digest of a %d-byte credential is not its SHA-256", len(s))
		}
	}
	if n := testing.AllocsPerRun(100, func() { Digest("kg_abc123_0123456789012345678901234567890123456") }); n != 0 {
		t.Errorf("Digest allocated %v times", n)
	}
}

// Check runs on every request that presents a kg_ key.
func TestCheckDoesNotAllocate(t *testing.T) {
	key, err := New("kg_abc123")
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { Check(key) }); n != 0 {
		t.Errorf("Check allocated %v times", n)
	}
}

func BenchmarkCheck(b *testing.B) {
	key, err := New("kg_7Hq2pXa1")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		Check(key)
	}
}

func FuzzCheck(f *testing.F) {
	k, _ := New("kg_seed0001")
	for _, s := range []string{k, "kg_", "kg_x_", "", "Bearer x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, ours, valid := Check(s)
		if valid && (!ours || !strings.HasPrefix(s, id+"_")) {
			t.Fatalf("Check(%q) = %q valid but inconsistent", s, id)
		}
	})
}
