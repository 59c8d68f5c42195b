package harness

import (
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/keygate/keygate/internal/apikey"
)

var (
	secretsMu sync.Mutex
	secrets   = map[string]string{} // raw value -> what it is

	outputsMu sync.Mutex
	outputs   []*Output // of every keygate started
)

// RegisterSecret records a raw secret (an API key, a session token, a
// bearer token in a kubeconfig) given to keygate, described by what (an id,
// never the value): keygate must never print it.
func RegisterSecret(raw, what string) {
	if raw == "" {
		return
	}
	secretsMu.Lock()
	defer secretsMu.Unlock()
	secrets[raw] = what
}

func registerOutput(o *Output) {
	outputsMu.Lock()
	defer outputsMu.Unlock()
	outputs = append(outputs, o)
}

// LeakedSecrets looks for every registered secret in everything every
// keygate started by this process printed, and returns one line per leak,
// naming the output, the line and the secret (replaced by its description).
func LeakedSecrets() []string {
	secretsMu.Lock()
	raws := make([]string, 0, len(secrets))
	whats := make(map[string]string, len(secrets))
	for raw, what := range secrets {
		raws = append(raws, raw)
		whats[raw] = what
	}
	secretsMu.Unlock()
	sort.Strings(raws)
	outputsMu.Lock()
	outs := append([]*Output(nil), outputs...)
	outputsMu.Unlock()
	var leaks []string
	for _, o := range outs {
		text := o.String()
		for _, raw := range raws {
			if !strings.Contains(text, raw) {
				continue
			}
			for n, line := range strings.Split(text, "\n") {
				if strings.Contains(line, raw) {
					leaks = append(leaks, fmt.Sprintf("%s leaked in output of %s, line %d: %s",
						whats[raw], o.name, n+1, strings.ReplaceAll(line, raw, "<"+whats[raw]+">")))
				}
			}
		}
	}
	return leaks
}

// CheckSecrets reports leaks (LeakedSecrets) to w as a failed pseudo-test,
// TestNoSecretsInOutput, and returns false if there is any; with verbose it
// reports a pass too, once some keygate output was scanned.
func CheckSecrets(w io.Writer, verbose bool) bool {
	if leaks := LeakedSecrets(); len(leaks) > 0 {
		fmt.Fprintln(w, "--- FAIL: TestNoSecretsInOutput (run after every test)")
		fmt.Fprintf(w, "    keygate printed %d raw secret(s); keys and tokens must never be logged:\n", len(leaks))
		for _, l := range leaks {
			fmt.Fprintln(w, "    "+l)
		}
		return false
	}
	secretsMu.Lock()
	nSecrets := len(secrets)
	secretsMu.Unlock()
	outputsMu.Lock()
	nOutputs := len(outputs)
	outputsMu.Unlock()
	if verbose && nOutputs > 0 {
		fmt.Fprintf(w, "--- PASS: TestNoSecretsInOutput (%d secrets, %d keygate outputs scanned)\n", nSecrets, nOutputs)
	}
	return true
}

// Main is a suite's TestMain body: it runs the tests, then Cleanup (the
// shared components stop, the binary goes), then fails the run if any
// keygate printed a registered secret.
//
//	func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
func Main(m *testing.M) int {
	code := m.Run()
	Cleanup()
	if !CheckSecrets(os.Stdout, testing.Verbose()) {
		fmt.Println("FAIL")
		return 1
	}
	return code
}

// NewAPIKey makes an API key in keygate's format (a fresh public id and its
// raw key) and registers the raw key as a secret.
func NewAPIKey(t testing.TB) (id, raw string) {
	t.Helper()
	id, err := apikey.NewID()
	if err != nil {
		t.Fatal(err)
	}
	if raw, err = apikey.New(id); err != nil {
		t.Fatal(err)
	}
	RegisterSecret(raw, "API key "+id)
	return id, raw
}
