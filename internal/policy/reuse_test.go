package policy

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// scaleKeyText is scalePolicy's key i with the separator after it.
func scaleKeyText(t *testing.T, base []byte, i int) string {
	t.Helper()
	at := bytes.Index(base, []byte(scaleKeyAt(i)))
	end := bytes.Index(base[at:], []byte("},\n"))
	if at < 0 || end < 0 {
		t.Fatalf("key %d not in policy", i)
	}
	return string(base[at : at+end+3])
}

// TestReloadReuses: a load given the snapshot before it compiles the same
// snapshot as a load from scratch, or the same errors, whatever changed,
// while taking the credentials whose text did not change from it (and
// skimming them, skim.go). Both for a policy read into memory and for one
// read from its descriptor.
func TestReloadReuses(t *testing.T) {
	const n = 2000
	base := scalePolicy(n)
	newKey := fmt.Sprintf(`{"id": "new", "hash": "sha256:%s", "tenant": "acme", "user": "svc-new", "groups": ["ops"]},`+"\n", strings.Repeat("ab", 32))
	tests := []struct {
		name      string
		edit      func(t *testing.T) []byte
		minReused int    // credentials taken from the previous snapshot
		maxReused int    // at most
		err       string // in the error, when the edit breaks the policy
	}{
		{"nothing changed", func(t *testing.T) []byte { return base }, n, n, ""},
		{"a key's user changed", func(t *testing.T) []byte {
			return editScalePolicy(t, base, `"user": "svc-0", `, `"user": "svc-renamed", `)
		}, n - 1, n - 1, ""},
		{"a key disabled", func(t *testing.T) []byte {
			return editScalePolicy(t, base, scaleKeyAt(500), scaleKeyAt(500)+`"disabled": true, `)
		}, n - 1, n - 1, ""},
		{"a key removed", func(t *testing.T) []byte {
			return editScalePolicy(t, base, scaleKeyText(t, base, 10), "")
		}, n - 1 - rebuildAfter, n - 1, ""},
		{"a key added first", func(t *testing.T) []byte {
			return editScalePolicy(t, base, `"api_keys": [`, `"api_keys": [`+newKey)
		}, n - rebuildAfter, n, ""},
		{"a key moved to sessions", func(t *testing.T) []byte {
			k := scaleKeyText(t, base, 3)
			moved := editScalePolicy(t, base, k, "")
			return append(moved[:len(moved)-1], []byte(`, "sessions": [`+strings.TrimSuffix(k, ",\n")+`]}`)...)
		}, n - 1 - rebuildAfter, n - 1, ""},
		{"groups reordered", func(t *testing.T) []byte {
			return editScalePolicy(t, base, `[{"name": "sales"}, {"name": "ops"}]`, `[{"name": "ops"}, {"name": "sales"}]`)
		}, 0, 0, ""},
		{"an organization added", func(t *testing.T) []byte {
			return editScalePolicy(t, base, `"orgs": ["acme-eu", "acme-us"]`, `"orgs": ["acme-eu", "acme-us", "acme-ap"]`)
		}, 0, 0, ""},
		{"a changed key takes another's id", func(t *testing.T) []byte {
			return editScalePolicy(t, base, scaleKeyAt(5), scaleKeyAt(6))
		}, 0, n, `duplicate credential id "k6"`},
		{"a changed key names an undeclared tenant", func(t *testing.T) []byte {
			return editScalePolicy(t, base, `"tenant": "acme", "user": "svc-7", `, `"tenant": "nope", "user": "svc-7", `)
		}, 0, n, `tenant "nope" is not declared`},
		{"a sixth organization key", func(t *testing.T) []byte {
			edited := base
			for i := 11; i <= 16; i++ {
				edited = editScalePolicy(t, edited, fmt.Sprintf(`"user": "svc-%d", `, i), fmt.Sprintf(`"org": "acme-eu", "user": "svc-%d", `, i))
			}
			return edited
		}, 0, n, `organization "acme-eu" has more than 5 active organization-level keys`},
		{"sessions null", func(t *testing.T) []byte {
			return slices.Concat(base[:len(base)-1], []byte(`, "sessions": null}`))
		}, n, n, ""},
		{"every key respaced", func(t *testing.T) []byte {
			return bytes.ReplaceAll(base, []byte(`", "`), []byte(`","`))
		}, 0, 0, ""},
		{"the keys reformatted", func(t *testing.T) []byte {
			return bytes.ReplaceAll(base, []byte("},\n{"), []byte("} ,\r\n\t {"))
		}, n, n, ""},
		{"a trailing comma after the last key", func(t *testing.T) []byte {
			return editScalePolicy(t, base, "]}]}", "]},\n]}")
		}, 0, n, `invalid character ','`},
		{"an unchanged key followed by junk", func(t *testing.T) []byte {
			return editScalePolicy(t, base, "},\n"+scaleKeyAt(21), "} x,\n"+scaleKeyAt(21))
		}, 0, n, `invalid character 'x'`},
		{"a changed key that is not JSON", func(t *testing.T) []byte {
			return editScalePolicy(t, base, `"user": "svc-30", `, `"user": "svc-30, `)
		}, 0, n, `invalid character`},
		{"api_keys twice", func(t *testing.T) []byte {
			return editScalePolicy(t, base, `"endpoints": [`, `"api_keys": [], "endpoints": [`)
		}, 0, n, `"api_keys" already defined`},
		{"a changed key names an unknown field", func(t *testing.T) []byte {
			return editScalePolicy(t, base, scaleKeyAt(9), scaleKeyAt(9)+`"colour": "red", `)
		}, 0, n, `unknown field "colour"`},
	}
	for _, streamed := range []bool{false, true} {
		var path string // the streamed file, one per test
		load := func(t *testing.T, data []byte, prev *Snapshot) (*Snapshot, error) {
			t.Helper()
			if !streamed {
				return Load([]Input{{Name: "scale.json", Data: data}}, Options{Generation: 1, Previous: prev})
			}
			if err := os.WriteFile(path, data, 0o644); err != nil {
				t.Fatal(err)
			}
			return LoadPath(path, Options{Generation: 1, Previous: prev, Source: "scale.json"})
		}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("streamed=%v/%s", streamed, tt.name), func(t *testing.T) {
				if streamed {
					streamSmall(t)
					path = filepath.Join(t.TempDir(), "scale.json")
				}
				prev, err := load(t, base, nil)
				if err != nil {
					t.Fatal(err)
				}
				edited := tt.edit(t)
				got, err := load(t, edited, prev)
				want, wantErr := load(t, edited, nil)
				if tt.err != "" {
					if err == nil || wantErr == nil || !strings.Contains(err.Error(), tt.err) {
						t.Fatalf("error %v, want one about %s", err, tt.err)
					}
					if g, w := linesOf(err), linesOf(wantErr); !reflect.DeepEqual(g, w) {
						t.Errorf("errors with the previous snapshot:\n%s\nwithout:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
					}
					return
				}
				if err != nil || wantErr != nil {
					t.Fatalf("errors: %v; from scratch: %v", err, wantErr)
				}
				if got.reused < tt.minReused || got.reused > tt.maxReused {
					t.Errorf("reused %d credentials, want %d to %d", got.reused, tt.minReused, tt.maxReused)
				}
				reused := got.reused
				got.reused, got.LoadedAt = 0, want.LoadedAt
				if !reflect.DeepEqual(got, want) {
					t.Errorf("the snapshot compiled with the previous one differs from the one compiled from scratch")
				}
				// What it reused, it can hand on in turn.
				got.reused = reused
				again, err := load(t, edited, got)
				if err != nil {
					t.Fatal(err)
				}
				if c := again.Counts().APIKeys + again.Counts().Sessions; again.reused != c {
					t.Errorf("the same policy loaded again reused %d of %d credentials", again.reused, c)
				}
			})
		}
	}
}

// TestReloadReusesAcrossFragments: keys are found again across the
// fragments of a policy, when an edit in the first moves those of the next.
func TestReloadReusesAcrossFragments(t *testing.T) {
	const n = 2000
	all := scalePolicy(n)
	cut := bytes.Index(all, []byte(",\n"+scaleKeyAt(n/2)))
	first := slices.Concat(all[:cut], []byte("]}"))
	second := slices.Concat([]byte(`{"version": 1, "api_keys": [`), all[cut+2:])
	load := func(first, second []byte, prev *Snapshot) *Snapshot {
		t.Helper()
		s, err := Load([]Input{{Name: "a.json", Data: first}, {Name: "b.json", Data: second}}, Options{Previous: prev})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	prev := load(first, second, nil)
	first = editScalePolicy(t, first, scaleKeyText(t, first, 10), "")
	second = editScalePolicy(t, second, `"user": "svc-500", `, `"user": "svc-five-hundred", `) // key 1500
	got, want := load(first, second, prev), load(first, second, nil)
	if got.reused < n-2-rebuildAfter || got.reused > n-2 {
		t.Errorf("reused %d of %d keys, want %d to %d", got.reused, n-1, n-2-rebuildAfter, n-2)
	}
	got.reused, got.LoadedAt = 0, want.LoadedAt
	if !reflect.DeepEqual(got, want) {
		t.Errorf("the snapshot compiled with the previous one differs from the one compiled from scratch")
	}
}

// TestSkim: the syntax pass of a reload decodes only the elements whose
// text is not one the previous snapshot loaded, in memory and streamed.
func TestSkim(t *testing.T) {
	const n = 2000
	base := scalePolicy(n)
	tests := []struct {
		name     string
		edit     func(t *testing.T) []byte
		min, max int // elements checked by decoding
	}{
		{"unchanged", func(t *testing.T) []byte { return base }, 0, 0},
		{"unchanged, sessions null", func(t *testing.T) []byte {
			return slices.Concat(base[:len(base)-1], []byte(`, "sessions": null}`))
		}, 0, 0},
		{"one key changed", func(t *testing.T) []byte {
			return editScalePolicy(t, base, `"user": "svc-700", `, `"user": "svc-seven", `)
		}, 1, 1},
		{"one key removed", func(t *testing.T) []byte {
			return editScalePolicy(t, base, scaleKeyText(t, base, 10), "")
		}, 1, rebuildAfter + 1},
		{"every key changed", func(t *testing.T) []byte {
			return bytes.ReplaceAll(base, []byte(`"tenant": "acme"`), []byte(`"tenant":"acme"`))
		}, n, n},
	}
	for _, streamed := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("streamed=%v/%s", streamed, tt.name), func(t *testing.T) {
				prev, err := Load([]Input{{Name: "scale.json", Data: base}}, Options{})
				if err != nil {
					t.Fatal(err)
				}
				edited := tt.edit(t)
				var f *Fragment
				var inputs []Input
				if streamed {
					streamSmall(t)
					_, inputs = writeOpened(t, filepath.Join(t.TempDir(), "scale.json"), edited)
				}
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				if streamed {
					f, err = parseFile(inputs[0].file, nil, newSkimmer(prev))
				} else {
					f, err = parse("scale.json", edited, true, nil, newSkimmer(prev))
				}
				runtime.ReadMemStats(&after)
				if err != nil {
					t.Fatal(err)
				}
				// A changed element costs no buffer of its own.
				if allocated := after.TotalAlloc - before.TotalAlloc; allocated > 4*uint64(len(edited))+2*streamBlock {
					t.Errorf("skimming a %d-byte policy allocated %d bytes", len(edited), allocated)
				}
				d := f.deferred["api_keys"]
				if d.checked < tt.min || d.checked > tt.max {
					t.Errorf("%d of %d elements checked by decoding, want %d to %d", d.checked, d.n, tt.min, tt.max)
				}
				// Skimmed or not, the elements are where decoding finds them.
				whole, err := parse("scale.json", edited, true, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				w := whole.deferred["api_keys"]
				if d.n != w.n || d.start != w.start || d.end != w.end || !slices.Equal(d.starts, w.starts) || !slices.Equal(d.lens, w.lens) || !slices.Equal(d.sums, w.sums) {
					t.Errorf("skimmed array [%d,%d) of %d differs from the decoded one [%d,%d) of %d", d.start, d.end, d.n, w.start, w.end, w.n)
				}
			})
		}
	}
}

// BenchmarkReload is a reload of a policy in which one key of many changed,
// given the snapshot before it, as the sources load: against BenchmarkLoad,
// what reusing the unchanged credentials saves. With every key changed
// (other spacing), what trying to costs.
//
//	go test -run '^$' -bench Reload -benchtime 20x -benchmem ./internal/policy/
func BenchmarkReload(b *testing.B) {
	for _, tc := range []struct {
		n          int
		allChanged bool
	}{{10_000, false}, {100_000, false}, {1_000_000, false}, {100_000, true}} {
		n := tc.n
		a := scalePolicy(n)
		edited := bytes.Replace(a, []byte(`"user": "svc-0", `), []byte(`"user": "svc-renamed", `), 1)
		name, reused := fmt.Sprintf("keys=%d", n), n-1
		if tc.allChanged {
			edited = bytes.ReplaceAll(a, []byte(`", "`), []byte(`","`))
			name, reused = name+"/all-changed", 0
		}
		b.Run(name, func(b *testing.B) {
			prev, err := Load([]Input{{Name: "scale.json", Data: a}}, Options{Generation: 1})
			if err != nil {
				b.Fatal(err)
			}
			texts := [2][]byte{edited, a}
			b.ReportAllocs()
			b.SetBytes(int64(len(a)))
			i := 0
			for b.Loop() {
				s, err := Load([]Input{{Name: "scale.json", Data: texts[i%2]}}, Options{Generation: 1, Previous: prev})
				if err != nil {
					b.Fatal(err)
				}
				if s.reused != reused {
					b.Fatalf("reused %d of %d keys", s.reused, n)
				}
				prev, i = s, i+1
			}
		})
	}
}
