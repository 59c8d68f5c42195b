// Package kube tests keygate's Kubernetes policy source and its manifests
// against a real kube-apiserver and etcd on loopback.
//
// kube-apiserver and kubectl are built from the k8s.io/kubernetes Go module
// by hack/build-kube.sh (cached under ${KEYGATE_CACHE:-~/.cache/keygate});
// etcd is Debian's etcd-server. Without them every test fails, naming the
// script, unless KEYGATE_SKIP_KUBE=1, which skips them. keygate itself is
// built from ./cmd/keygate and runs as a real process against the API server
// with a kubeconfig, as it would outside a cluster.
//
// The figures the suite measures (revocation latency, recovery after an API
// server outage) are logged by the tests and written to
// test/.cache/kube-results.txt, which TestMain prints at the end.
package kube

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// defaultKubeVersion is the kube-apiserver release hack/build-kube.sh
// builds by default; KEYGATE_KUBE_VERSION overrides both.
const defaultKubeVersion = "1.34.4"

func kubeVersion() string {
	if v := os.Getenv("KEYGATE_KUBE_VERSION"); v != "" {
		return strings.TrimPrefix(v, "v")
	}
	return defaultKubeVersion
}

func resultsPath() string { return filepath.Join(repoRoot, "test", ".cache", "kube-results.txt") }

var (
	repoRoot   string // the module root
	keygateBin string // built by TestMain

	clusterOnce sync.Once
	theCluster  *cluster
	clusterErr  error
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	wd, err := os.Getwd()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube:", err)
		return 1
	}
	repoRoot = filepath.Clean(filepath.Join(wd, "..", ".."))
	tmp, err := os.MkdirTemp("", "keygate-kube-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "kube:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	if os.Getenv("KEYGATE_SKIP_KUBE") != "1" {
		keygateBin = filepath.Join(tmp, "keygate")
		cmd := exec.Command("go", "build", "-o", keygateBin, "./cmd/keygate")
		cmd.Dir = repoRoot
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "kube: go build ./cmd/keygate: %v\n%s", err, out)
			return 1
		}
	}
	_ = os.Remove(resultsPath())
	code := m.Run()
	if theCluster != nil {
		theCluster.stop()
	}
	printResults()
	return code
}

// needCluster returns the suite's control plane, started on first use. It
// fails the test when the binaries are missing (skips it with
// KEYGATE_SKIP_KUBE=1).
func needCluster(t *testing.T) *cluster {
	t.Helper()
	if os.Getenv("KEYGATE_SKIP_KUBE") == "1" {
		t.Skip("KEYGATE_SKIP_KUBE=1: not running the real kube-apiserver suite")
	}
	clusterOnce.Do(func() {
		bins, err := findBinaries()
		if err != nil {
			clusterErr = err
			return
		}
		theCluster, clusterErr = startCluster(bins)
	})
	if clusterErr != nil {
		t.Fatalf("control plane: %v", clusterErr)
	}
	if err := theCluster.ensureAPIServer(); err != nil {
		t.Fatalf("control plane: %v", err)
	}
	return theCluster
}

type binaries struct {
	apiserver, etcd, kubectl string
}

// findBinaries looks in KEYGATE_KUBE_BIN, else in hack/build-kube.sh's
// cache folder, and for etcd also on PATH.
func findBinaries() (binaries, error) {
	version := kubeVersion()
	dir := os.Getenv("KEYGATE_KUBE_BIN")
	if dir == "" {
		cache := os.Getenv("KEYGATE_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return binaries{}, err
			}
			cache = filepath.Join(home, ".cache", "keygate")
		}
		dir = filepath.Join(cache, "kube-"+version, "bin")
	}
	b := binaries{
		apiserver: filepath.Join(dir, "kube-apiserver"),
		kubectl:   filepath.Join(dir, "kubectl"),
		etcd:      filepath.Join(dir, "etcd"),
	}
	var missing []string
	for _, p := range []string{b.apiserver, b.kubectl} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if _, err := os.Stat(b.etcd); err != nil {
		if p, err := exec.LookPath("etcd"); err == nil {
			b.etcd = p
		} else {
			missing = append(missing, "etcd (Debian: apt-get install etcd-server)")
		}
	}
	if len(missing) > 0 {
		where := "its cache, " + dir
		if os.Getenv("KEYGATE_KUBE_BIN") != "" {
			where = "${KEYGATE_CACHE:-~/.cache/keygate}/kube-" + version + "/bin; point KEYGATE_KUBE_BIN there"
		}
		return b, fmt.Errorf("missing %s: run `bash hack/build-kube.sh %s` (builds kube-apiserver and kubectl into %s; "+
			"etcd is Debian's etcd-server), or set KEYGATE_SKIP_KUBE=1 to skip this suite", strings.Join(missing, ", "), version, where)
	}
	return b, nil
}

// ---------------------------------------------------------------------------
// Results: figures the tests measured, printed at the end and kept in
// test/.cache/kube-results.txt.

var (
	resultsMu sync.Mutex
	results   = map[string]string{}
)

// record logs a measured figure and keeps it for the results file.
func record(t *testing.T, name, format string, args ...any) {
	t.Helper()
	line := fmt.Sprintf(format, args...)
	t.Logf("%s: %s", name, line)
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results[name] = line
}

func printResults() {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	if len(results) == 0 {
		return
	}
	names := make([]string, 0, len(results))
	for n := range results {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	fmt.Fprintf(&b, "# keygate test/kube results, %s, kube-apiserver %s\n", time.Now().UTC().Format(time.RFC3339), kubeVersion())
	for _, n := range names {
		fmt.Fprintf(&b, "%s: %s\n", n, results[n])
	}
	path := resultsPath()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err == nil {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err == nil {
			fmt.Printf("kube results (%s):\n", path)
		}
	}
	fmt.Print(b.String())
}
