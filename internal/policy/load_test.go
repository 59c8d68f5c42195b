package policy

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestReadPathDirectory reads a directory of fragments: policy files in name
// order, everything else (hidden files and directories, other extensions)
// skipped.
func TestReadPathDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "10-settings.yaml"), "version: 1\nsettings: {realm: api.example.com}\ngroups: [{name: sales}]\n")
	writeFile(t, filepath.Join(dir, "20-tenants.yml"), "version: 1\ntenants: [{id: acme, orgs: [acme-eu]}]\n")
	writeFile(t, filepath.Join(dir, "30-keys.json"), `{"version": 1, "api_keys": [{"id": "k1", "hash": "sha256:`+strings.Repeat("1", 64)+`", "tenant": "acme", "user": "bot", "groups": ["sales"]}]}`)
	writeFile(t, filepath.Join(dir, "40-endpoints.YAML"), "version: 1\nendpoints: [{name: all, match: {path: /**}}]\n")
	broken := "this: is: not [a policy\n"
	writeFile(t, filepath.Join(dir, ".hidden.yaml"), broken)
	writeFile(t, filepath.Join(dir, ".#10-settings.yaml"), broken)
	writeFile(t, filepath.Join(dir, "README.md"), broken)
	writeFile(t, filepath.Join(dir, "notes.txt"), broken)
	writeFile(t, filepath.Join(dir, "10-settings.yaml~"), broken)
	writeFile(t, filepath.Join(dir, "10-settings.yaml.swp"), broken)
	writeFile(t, filepath.Join(dir, "sub", "inner.yaml"), broken)
	writeFile(t, filepath.Join(dir, ".git", "config.yaml"), broken)

	inputs, err := ReadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, in := range inputs {
		names = append(names, filepath.Base(in.Name))
		if filepath.Dir(in.Name) != dir {
			t.Errorf("input %s is not named by its path in %s", in.Name, dir)
		}
	}
	if got := strings.Join(names, " "); got != "10-settings.yaml 20-tenants.yml 30-keys.json 40-endpoints.YAML" {
		t.Errorf("read %s", got)
	}

	s, err := LoadPath(dir, Options{})
	if err != nil {
		t.Fatalf("%v", strings.Join(linesOf(err), "\n"))
	}
	if s.Source != dir || s.Realm != "api.example.com" {
		t.Errorf("Source, Realm = %q, %q", s.Source, s.Realm)
	}
	if c := s.Counts(); c != (Counts{APIKeys: 1, Endpoints: 1, Groups: 1, Tenants: 1, Orgs: 1}) {
		t.Errorf("Counts() = %+v", c)
	}

	// An error in a fragment is reported with that fragment's path.
	writeFile(t, filepath.Join(dir, "50-bad.yaml"), "version: 1\nendpoints: [{name: bad, match: {path: nope}}]\n")
	_, err = LoadPath(dir, Options{})
	if err == nil || !strings.HasPrefix(err.Error(), filepath.Join(dir, "50-bad.yaml")+":2: endpoints[0].match.path: ") {
		t.Errorf("err = %v", err)
	}
}

func TestReadPathFile(t *testing.T) {
	dir := t.TempDir()
	// A file named explicitly is read whatever its name.
	p := filepath.Join(dir, "policy.conf")
	writeFile(t, p, "version: 1\n")
	inputs, err := ReadPath(p)
	if err != nil || len(inputs) != 1 || inputs[0].Name != p || string(inputs[0].Data) != "version: 1\n" {
		t.Fatalf("ReadPath(%s) = %+v, %v", p, inputs, err)
	}
}

func TestReadPathErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	onlyOthers := filepath.Join(dir, "others")
	writeFile(t, filepath.Join(onlyOthers, "README.md"), "hi")
	writeFile(t, filepath.Join(onlyOthers, ".hidden.yaml"), "version: 1\n")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "missing.yaml"), "read policy: "},
		{"empty directory", empty, "no *.yaml, *.yml or *.json files"},
		{"no policy files", onlyOthers, "no *.yaml, *.yml or *.json files"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ReadPath(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ReadPath: %v, want %q", err, tc.want)
			}
			if _, err := LoadPath(tc.path, Options{}); err == nil {
				t.Error("LoadPath succeeded")
			}
		})
	}
}

func TestIsPolicyFile(t *testing.T) {
	for name, want := range map[string]bool{
		"policy.yaml": true, "policy.yml": true, "policy.json": true, "POLICY.YAML": true,
		"dir/..data/policy.yaml": true, "policy.yaml~": false, "policy.txt": false, "policy": false,
		".policy.yaml": false, "..data": false, "..2026_11_22_15_00_00.123/": false, "a/.b.json": false,
	} {
		if got := IsPolicyFile(name); got != want {
			t.Errorf("IsPolicyFile(%q) = %v, want %v", name, got, want)
		}
	}
}

// TestReadPathKubernetesLayout reads a ConfigMap volume: each key is a
// symlink through ..data to a timestamped directory, and an update swaps the
// ..data symlink.
func TestReadPathKubernetesLayout(t *testing.T) {
	dir := t.TempDir()
	policy := "version: 1\nsettings: {realm: v1.example.com}\ntenants: [{id: acme}]\n"
	keys := `{"version": 1, "api_keys": [{"id": "k1", "hash": "sha256:` + strings.Repeat("1", 64) + `", "tenant": "acme", "user": "bot"}]}`
	publish := func(stamp string, files map[string]string) {
		t.Helper()
		ts := filepath.Join(dir, stamp)
		for n, data := range files {
			writeFile(t, filepath.Join(ts, n), data)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(stamp, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish("..2026_11_22_15_00_00.000000001", map[string]string{"policy.yaml": policy, "keys.json": keys})
	for _, n := range []string{"policy.yaml", "keys.json"} {
		if err := os.Symlink(filepath.Join("..data", n), filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}

	inputs, err := ReadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(inputs) != 2 || inputs[0].Name != filepath.Join(dir, "keys.json") || inputs[1].Name != filepath.Join(dir, "policy.yaml") {
		t.Fatalf("read %+v", inputs)
	}
	if string(inputs[1].Data) != policy {
		t.Errorf("policy.yaml read as %q", inputs[1].Data)
	}
	s, err := LoadPath(dir, Options{})
	if err != nil {
		t.Fatal(strings.Join(linesOf(err), "\n"))
	}
	if s.Realm != "v1.example.com" || s.Counts().APIKeys != 1 {
		t.Errorf("Realm = %q, Counts = %+v", s.Realm, s.Counts())
	}
	before := Fingerprint(inputs, nil)

	// The kubelet's update: a new timestamped directory, then ..data swapped.
	publish("..2026_11_22_16_00_00.000000002", map[string]string{
		"policy.yaml": strings.Replace(policy, "v1.example.com", "v2.example.com", 1), "keys.json": keys,
	})
	inputs, err = ReadPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	if Fingerprint(inputs, nil) == before {
		t.Error("Fingerprint did not change after the ..data swap")
	}
	s, err = LoadPath(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Realm != "v2.example.com" {
		t.Errorf("after the swap Realm = %q", s.Realm)
	}
}

func TestFingerprint(t *testing.T) {
	base := []Input{{Name: "a.yaml", Data: []byte("version: 1\n")}, {Name: "b.yaml", Data: []byte("groups: []\n")}}
	fp := Fingerprint(base, nil)
	tests := []struct {
		name   string
		inputs []Input
		same   bool
	}{
		{"same content", []Input{{Name: "a.yaml", Data: []byte("version: 1\n")}, {Name: "b.yaml", Data: []byte("groups: []\n")}}, true},
		{"content changed", []Input{{Name: "a.yaml", Data: []byte("version: 1\n")}, {Name: "b.yaml", Data: []byte("groups: [] \n")}}, false},
		{"renamed", []Input{{Name: "a.yaml", Data: []byte("version: 1\n")}, {Name: "c.yaml", Data: []byte("groups: []\n")}}, false},
		{"reordered", []Input{base[1], base[0]}, false},
		{"one removed", base[:1], false},
		{"boundary moved", []Input{{Name: "a.yaml", Data: []byte("version: 1\ngroups: []\n")}, {Name: "b.yaml"}}, false},
		{"name and data swapped", []Input{{Name: "a.yamlversion: 1\n", Data: nil}, base[1]}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Fingerprint(tc.inputs, nil) == fp; got != tc.same {
				t.Errorf("same fingerprint = %v, want %v", got, tc.same)
			}
		})
	}
}

// readWithin runs read and fails the test if it does not return within a
// few seconds: a FIFO opened for reading without O_NONBLOCK blocks forever.
func readWithin(t *testing.T, read func() ([]Input, error)) ([]Input, error) {
	t.Helper()
	type result struct {
		inputs []Input
		err    error
	}
	done := make(chan result, 1)
	go func() {
		in, err := read()
		done <- result{in, err}
	}()
	select {
	case r := <-done:
		return r.inputs, r.err
	case <-time.After(5 * time.Second):
		t.Fatal("the read did not return within 5s")
		return nil, nil
	}
}

// TestReadModeIsExplicit: a path read as a file is never read as a
// directory and the other way round, whatever it has become since.
func TestReadModeIsExplicit(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "policy.yaml")
	writeFile(t, file, "version: 1\n")
	frags := filepath.Join(dir, "frags")
	writeFile(t, filepath.Join(frags, "a.yaml"), "version: 1\n")

	if _, err := ReadDir(file); err == nil || !strings.Contains(err.Error(), file+": not a directory") {
		t.Errorf("ReadDir of a file: %v", err)
	}
	if _, err := ReadFile(frags); err == nil || !strings.Contains(err.Error(), frags+": cannot read: a directory, not a regular file") {
		t.Errorf("ReadFile of a directory: %v", err)
	}
	if in, err := ReadFile(file); err != nil || len(in) != 1 {
		t.Errorf("ReadFile of a file: %v, %v", in, err)
	}
	if in, err := ReadDir(frags); err != nil || len(in) != 1 {
		t.Errorf("ReadDir of a directory: %v, %v", in, err)
	}
}

// TestReadDirFragmentRemovedIsNotAnError: a fragment removed between the listing
// and the read is not part of the policy any more, as a later listing would
// say; only a name that is still there but unreadable refuses.
func TestReadDirFragmentRemovedIsNotAnError(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "a.yaml"), "version: 1\n")
	in, err := readDir(dir, func(names []string) {
		if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "b.yaml"), "version: 1\n")
	}, false)
	if err == nil || !strings.Contains(err.Error(), "no *.yaml, *.yml or *.json files") {
		t.Errorf("read %v, %v; want the directory to read as empty", in, err)
	}
}

// TestReadFileSizeBound: a fragment over MaxFragmentSize is refused from its
// size, before it is read.
func TestReadFileSizeBound(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := fh.Truncate(MaxFragmentSize + 1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	fh.Close()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = ReadFile(path)
	runtime.ReadMemStats(&after)
	want := fmt.Sprintf("%s: policy is %d bytes; the limit is %d", path, MaxFragmentSize+1, MaxFragmentSize)
	if err == nil || err.Error() != want {
		t.Errorf("ReadFile error %v, want %q", err, want)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
		t.Errorf("refusing a %d-byte fragment allocated %d bytes", MaxFragmentSize+1, n)
	}
}
