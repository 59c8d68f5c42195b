// Package kube tests keygate's Kubernetes policy source and its manifests
// against a real kube-apiserver and etcd on loopback.
//
// kube-apiserver and kubectl are built from the k8s.io/kubernetes Go module
// by hack/build-kube.sh (cached under ${KEYGATE_CACHE:-~/.cache/keygate});
// etcd is Debian's etcd-server (`make test-deps` gets both). Without them the
// tests that need them are skipped, naming the script, and fail under
// CI=true; KEYGATE_SKIP_KUBE=1 skips them always. keygate itself is built
// from ./cmd/keygate and runs as a real process against the API server with
// a kubeconfig, as it would outside a cluster (test/internal/harness runs
// both, and fails the suite if keygate prints a key or a token).
//
// The figures the suite measures (revocation latency, recovery after an API
// server outage) are logged by the tests and written to
// test/.cache/kube-results.txt, which TestMain prints at the end.
package kube

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/keygate/keygate/test/internal/harness"
)

func resultsPath() string { return filepath.Join(repoRoot, "test", ".cache", "kube-results.txt") }

var repoRoot string // the module root

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	var err error
	if repoRoot, err = harness.ModuleRoot(); err != nil {
		fmt.Fprintln(os.Stderr, "kube:", err)
		return 1
	}
	_ = os.Remove(resultsPath())
	code := harness.Main(m)
	printResults()
	return code
}

// cluster is the suite's control plane (test/internal/harness runs it) and
// a client-go clientset of its admin.
type cluster struct {
	*harness.Kube
	admin *kubernetes.Clientset
}

var (
	adminOnce sync.Once
	theAdmin  *kubernetes.Clientset
	adminErr  error
)

// needCluster returns the suite's control plane, started on first use. The
// test is skipped when the binaries are missing (it fails under CI=true).
func needCluster(t *testing.T) *cluster {
	t.Helper()
	k := harness.KubeCluster(t)
	adminOnce.Do(func() {
		cfg, err := clientcmd.BuildConfigFromFlags("", k.AdminKubeconfig)
		if err != nil {
			adminErr = err
			return
		}
		theAdmin, adminErr = kubernetes.NewForConfig(cfg)
	})
	if adminErr != nil {
		t.Fatalf("admin client: %v", adminErr)
	}
	return &cluster{Kube: k, admin: theAdmin}
}

// namespace creates a namespace for one test.
func (c *cluster) namespace(t *testing.T, prefix string) string {
	t.Helper()
	ns, err := c.admin.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create namespace: %v", err)
	}
	return ns.Name
}

// kubectl runs the built kubectl as the admin.
func (c *cluster) kubectl(args ...string) (string, error) {
	cmd := exec.Command(c.Bins.Kubectl, append([]string{"--kubeconfig", c.AdminKubeconfig}, args...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
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
	fmt.Fprintf(&b, "# keygate test/kube results, %s, kube-apiserver %s\n", time.Now().UTC().Format(time.RFC3339), harness.KubeVersion())
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
