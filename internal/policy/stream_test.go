package policy

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// streamSmall makes OpenFile, OpenDir and LoadPath leave every JSON file
// open, however small, until the test ends.
func streamSmall(t *testing.T) {
	t.Helper()
	old := streamMin
	streamMin = 0
	t.Cleanup(func() { streamMin = old })
}

// writeOpened writes data at path and opens it as a policy file; the inputs
// are closed when the test ends.
func writeOpened(t *testing.T, path string, data []byte) (os.FileInfo, []Input) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	inputs, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { CloseInputs(inputs) })
	return st, inputs
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count open files: %v", err)
	}
	return len(fds)
}

// TestStreamedLoad: a JSON file read from its descriptor loads as the same
// bytes in memory do, and a broken one gets the same errors at the same
// lines; no descriptor is left open.
func TestStreamedLoad(t *testing.T) {
	streamSmall(t)
	const n, bad = 3000, 2000
	base := scalePolicy(n)
	edit := func(old, new string) []byte { return editScalePolicy(t, base, old, new) }
	tests := []struct {
		name      string
		data      []byte
		marker    string // the first error's line holds it; "": valid
		path, msg string
	}{
		{name: "valid", data: base},
		{
			name: "valid, sessions and a null list",
			data: []byte(`{"version": 1, "tenants": [{"id": "acme"}], "api_keys": null, "sessions": [{"id": "s1", "hash": "sha256:` +
				strings.Repeat("1", 64) + `", "tenant": "acme", "user": "alice"}]}`),
		},
		{
			name:   "syntax error",
			data:   edit(scaleKeyAt(bad), `{"id" "k`+fmt.Sprint(bad)+`", `),
			marker: fmt.Sprintf(`{"id" "k%d"`, bad), path: fmt.Sprintf("api_keys[%d].id", bad),
			msg: "invalid character",
		},
		{
			name:   "semantic error",
			data:   edit(scaleKeyAt(bad), scaleKeyAt(bad)+`"org": "nowhere", `),
			marker: `"org": "nowhere"`, path: fmt.Sprintf("api_keys[%d].org", bad),
			msg: `organization "nowhere" is not declared under tenants`,
		},
		{
			name:   "credential that does not decode",
			data:   edit(scaleKeyAt(bad), scaleKeyAt(bad)+`"secret": "x", `),
			marker: scaleKeyAt(bad), path: "", // worded by the YAML decoder, as a small file's
			msg: `unknown field "secret"`,
		},
		{
			name:   "credential that does not decode, past the YAML re-read",
			data:   bytes.Replace(scalePolicy(30_000), []byte(scaleKeyAt(25_000)), []byte(scaleKeyAt(25_000)+`"secret": "x", `), 1),
			marker: scaleKeyAt(25_000), path: "api_keys[25000]",
			msg: `unknown field "secret"`,
		},
		{
			name:   "duplicate id",
			data:   edit(scaleKeyAt(bad), `{"id": "k7", `),
			marker: `{"id": "k7", "hash": "sha256:` + fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprint("key-", bad)))), path: fmt.Sprintf("api_keys[%d]", bad),
			msg: `duplicate credential id "k7" (first defined at `,
		},
		{
			name:   "wrong type, worded by the YAML decoder",
			data:   []byte("{\"version\": 1,\n \"settings\": {\"max_org_keys\": \"five\"}}"),
			marker: `"max_org_keys"`, path: "",
			msg: `"five" has the wrong type here (want a number)`,
		},
	}
	before := openFDs(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			inputs, err := OpenFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if inputs[0].file == nil || inputs[0].Data != nil {
				t.Fatal("the file was read into memory, not left open")
			}
			CloseInputs(inputs)

			got, err := LoadPath(path, Options{})
			want, wantErr := Load([]Input{{Name: path, Data: tc.data}}, Options{Source: path})
			if tc.marker == "" {
				if err != nil || wantErr != nil {
					t.Fatalf("streamed: %v; in memory: %v", err, wantErr)
				}
				if got.Counts() != want.Counts() {
					t.Errorf("counts %+v, in memory %+v", got.Counts(), want.Counts())
				}
				return
			}
			if err == nil || wantErr == nil || err.Error() != wantErr.Error() {
				t.Fatalf("streamed:  %v\nin memory: %v", err, wantErr)
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("error is %T, not Errors", err)
			}
			e := es[0]
			i := bytes.Index(tc.data, []byte(tc.marker))
			line := 1 + bytes.Count(tc.data[:i], []byte("\n"))
			if e.File != path || e.Line != line || e.Path != tc.path || !strings.Contains(e.Msg, tc.msg) {
				t.Errorf("got %s:%d: %s: %s\nwant line %d: %s: ...%s...", e.File, e.Line, e.Path, e.Msg, line, tc.path, tc.msg)
			}
		})
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d files open before, %d after", before, after)
	}
}

// TestStreamedFileChanged: a file changed in place while it loads is
// refused, naming it, rather than compiled from two versions; one renamed
// over it meanwhile does not disturb the load (the descriptor still reads
// the file opened).
func TestStreamedFileChanged(t *testing.T) {
	streamSmall(t)
	const n = 3000
	data := scalePolicy(n)
	// Same size, another user for the first key: in the first block, which
	// the syntax pass has read and the credential pass reads again.
	at := int64(bytes.Index(data, []byte(`"svc-0"`)) + len(`"svc-`))
	tests := []struct {
		name   string
		change func(t *testing.T, path string, mod time.Time)
		ok     bool
	}{
		{"rewritten in place, same size and time", func(t *testing.T, path string, mod time.Time) {
			writeAt(t, path, at, "Z")
			if err := os.Chtimes(path, mod, mod); err != nil { // only the bytes tell
				t.Fatal(err)
			}
		}, false},
		{"appended to", func(t *testing.T, path string, _ time.Time) {
			writeAt(t, path, int64(len(data)), "\n")
		}, false},
		{"truncated", func(t *testing.T, path string, _ time.Time) {
			if err := os.Truncate(path, int64(len(data))/2); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"touched", func(t *testing.T, path string, mod time.Time) {
			if err := os.Chtimes(path, mod, mod.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
		}, false},
		{"renamed over", func(t *testing.T, path string, _ time.Time) {
			writeFile(t, path+".tmp", "{}")
			if err := os.Rename(path+".tmp", path); err != nil {
				t.Fatal(err)
			}
		}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keys.json")
			st, inputs := writeOpened(t, path, data)
			changed := false
			s, err := Load(inputs, Options{Pace: func() {
				if !changed { // part-way through the syntax pass
					changed = true
					tc.change(t, path, st.ModTime())
				}
			}})
			if !changed {
				t.Fatal("the load never paced")
			}
			if tc.ok {
				if err != nil || s.Counts().APIKeys != n || !ReadWhole(inputs) {
					t.Errorf("Load = %v, %v; want the %d keys of the file opened", s, err, n)
				}
				return
			}
			want := path + ": " + msgChanged
			if err == nil || err.Error() != want || ReadWhole(inputs) {
				t.Errorf("Load = %v (read whole %v), want %q", err, ReadWhole(inputs), want)
			}
		})
	}
}

// TestStreamedFingerprint: a streamed file's fingerprint is that of the
// same bytes in memory, and a load refuses content that is not the content
// fingerprinted, so what is published is what the unchanged-content check
// saw.
func TestStreamedFingerprint(t *testing.T) {
	streamSmall(t)
	data := scalePolicy(3000)
	path := filepath.Join(t.TempDir(), "keys.json")
	st, inputs := writeOpened(t, path, data)
	calls := 0
	if got, want := Fingerprint(inputs, func() { calls++ }), Fingerprint([]Input{{Name: path, Data: data}}, nil); got != want {
		t.Error("a streamed file's fingerprint differs from its bytes'")
	}
	if want := (len(data) - 1) / streamBlock; calls != want {
		t.Errorf("paced %d times, want %d (between blocks)", calls, want)
	}

	// Another digest for the last key: in the last block.
	last := int64(bytes.LastIndex(data, []byte("sha256:")) + len("sha256:"))
	digit := "0"
	if data[last] == '0' {
		digit = "1"
	}
	writeAt(t, path, last, digit)
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(inputs, Options{}); err == nil || err.Error() != path+": "+msgChanged {
		t.Errorf("Load after a change since the fingerprint = %v, want it refused as changed", err)
	}
}

// TestOpenOnlyLargeJSON: only JSON files over streamMin are left open;
// smaller ones and YAML files are read as ReadFile reads them.
func TestOpenOnlyLargeJSON(t *testing.T) {
	dir := t.TempDir()
	small := `{"version": 1}`
	big := `{"version": 1` + strings.Repeat(" ", 64) + `}`
	for name, text := range map[string]string{"a.json": small, "b.json": big, "c.yaml": "version: 1\n" + strings.Repeat("#", 64)} {
		writeFile(t, filepath.Join(dir, name), text)
	}
	old := streamMin
	streamMin = 32
	defer func() { streamMin = old }()
	inputs, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer CloseInputs(inputs)
	var open []string
	for _, in := range inputs {
		if in.file != nil {
			open = append(open, filepath.Base(in.Name))
		}
	}
	if got := strings.Join(open, " "); got != "b.json" {
		t.Errorf("left open: %q, want b.json", got)
	}
	if s, err := Load(inputs, Options{}); err != nil || s.Counts() != (Counts{}) {
		t.Errorf("Load = %v", err)
	}
}

// TestOpenDirClosesOnError: a directory refused for one fragment leaves no
// other fragment open.
func TestOpenDirClosesOnError(t *testing.T) {
	streamSmall(t)
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.json"), `{"version": 1}`)
	if err := os.Symlink("gone.yaml", filepath.Join(dir, "b.yaml")); err != nil {
		t.Skipf("symlink: %v", err)
	}
	before := openFDs(t)
	if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), "dangling symlink") {
		t.Errorf("OpenDir = %v, want the dangling fragment refused", err)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d files open before, %d after", before, after)
	}
}

func writeAt(t *testing.T, path string, off int64, s string) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte(s), off); err != nil {
		t.Fatal(err)
	}
	if err := fh.Close(); err != nil {
		t.Fatal(err)
	}
}

// BenchmarkLoadFile is BenchmarkLoad with the policy read from its file as
// it loads (OpenFile, as keygate serve and validate read a large JSON
// policy), to compare with the text in memory:
//
//	go test -run '^$' -bench Load -benchtime 3x -benchmem ./internal/policy/
func BenchmarkLoadFile(b *testing.B) {
	old := streamMin
	streamMin = 0
	defer func() { streamMin = old }()
	for _, n := range []int{10, 10_000, 100_000, 1_000_000} {
		path := filepath.Join(b.TempDir(), "scale.json")
		data := scalePolicy(n)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("keys=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				s, err := LoadPath(path, Options{Generation: 1})
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
