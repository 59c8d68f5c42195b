package harness

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultKubeVersion is the kube-apiserver release hack/build-kube.sh builds
// by default; KEYGATE_KUBE_VERSION overrides both.
const DefaultKubeVersion = "1.34.4"

// KubeVersion is the kube-apiserver release the tests run.
func KubeVersion() string {
	if v := os.Getenv("KEYGATE_KUBE_VERSION"); v != "" {
		return strings.TrimPrefix(v, "v")
	}
	return DefaultKubeVersion
}

// KubeBinaries are the control plane's programs.
type KubeBinaries struct {
	APIServer, Etcd, Kubectl string
}

// FindKube looks for kube-apiserver and kubectl in KEYGATE_KUBE_BIN, else in
// hack/build-kube.sh's cache (${KEYGATE_CACHE:-~/.cache/keygate}/kube-VERSION/bin),
// and for etcd there and then on PATH. The error names what is missing and
// how to get it.
func FindKube() (KubeBinaries, error) {
	version := KubeVersion()
	dir := os.Getenv("KEYGATE_KUBE_BIN")
	if dir == "" {
		cache := os.Getenv("KEYGATE_CACHE")
		if cache == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return KubeBinaries{}, err
			}
			cache = filepath.Join(home, ".cache", "keygate")
		}
		dir = filepath.Join(cache, "kube-"+version, "bin")
	}
	b := KubeBinaries{
		APIServer: filepath.Join(dir, "kube-apiserver"),
		Kubectl:   filepath.Join(dir, "kubectl"),
		Etcd:      filepath.Join(dir, "etcd"),
	}
	var missing []string
	for _, p := range []string{b.APIServer, b.Kubectl} {
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, p)
		}
	}
	if _, err := os.Stat(b.Etcd); err != nil {
		if p, err := exec.LookPath("etcd"); err == nil {
			b.Etcd = p
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
			"etcd is Debian's etcd-server; `make test-deps` does both)", strings.Join(missing, ", "), version, where)
	}
	return b, nil
}

var (
	kubeOnce sync.Once
	theKube  *Kube
	kubeErr  error
	kubeBins bool // the binaries were found
)

// KubeCluster returns the Kubernetes control plane the tests of this process
// share, started on first use and stopped by Cleanup. Without its binaries
// the test is skipped (fails under CI=true); KEYGATE_SKIP_KUBE=1 always
// skips. If a test left kube-apiserver stopped, it is started again.
func KubeCluster(t testing.TB) *Kube {
	t.Helper()
	if os.Getenv("KEYGATE_SKIP_KUBE") == "1" {
		t.Skip("KEYGATE_SKIP_KUBE=1: not running the real kube-apiserver")
	}
	kubeOnce.Do(func() {
		bins, err := FindKube()
		if err != nil {
			kubeErr = err
			return
		}
		kubeBins = true
		if theKube, kubeErr = StartKube(bins); kubeErr == nil {
			atCleanup(theKube.Stop)
		}
	})
	switch {
	case kubeErr != nil && !kubeBins:
		Missing(t, kubeErr.Error())
	case kubeErr != nil:
		t.Fatalf("control plane: %v", kubeErr)
	}
	if err := theKube.EnsureAPIServer(); err != nil {
		t.Fatalf("control plane: %v", err)
	}
	return theKube
}

// Kube is an etcd and a kube-apiserver on loopback ports, with RBAC on. Its
// admin authenticates with a static token in group system:masters.
type Kube struct {
	Bins            KubeBinaries
	Dir             string // the cluster's files: data, certificates, kubeconfigs
	Server          string // https://127.0.0.1:PORT
	AdminToken      string
	AdminKubeconfig string

	etcd    *Process
	etcdURL string

	apiMu     sync.Mutex
	api       *Process
	apiPort   int
	apiStarts int
}

// StartKube starts etcd and kube-apiserver and waits until both are ready.
// The caller stops them (Stop); KubeCluster shares one for a whole suite.
func StartKube(bins KubeBinaries) (*Kube, error) {
	dir, err := os.MkdirTemp("", "keygate-kube-cluster-")
	if err != nil {
		return nil, err
	}
	c := &Kube{Bins: bins, Dir: dir}
	if err := c.start(); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

func (c *Kube) start() error {
	addrs, err := FreeAddrs(3)
	if err != nil {
		return err
	}
	c.apiPort, err = port(addrs[2])
	if err != nil {
		return err
	}
	c.Server = "https://" + addrs[2]
	c.etcdURL = "http://" + addrs[0]
	peer := "http://" + addrs[1]
	c.etcd, err = StartProcess("etcd", exec.Command(c.Bins.Etcd,
		"--name=keygate-test",
		"--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+c.etcdURL, "--advertise-client-urls="+c.etcdURL,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=keygate-test="+peer,
		"--unsafe-no-fsync", "--log-level=warn"))
	if err != nil {
		return err
	}
	if err := c.etcd.WaitUntil(20*time.Second, HTTPReady(c.etcdURL+"/health", "")); err != nil {
		return err
	}

	// The service-account signing key, and the admin's static token.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(c.Dir, "sa.key"), keyPEM, 0o600); err != nil {
		return err
	}
	c.AdminToken = randomHex(16)
	tokens := fmt.Sprintf("%s,keygate-test-admin,admin-uid,system:masters\n", c.AdminToken)
	if err := os.WriteFile(filepath.Join(c.Dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	if err := c.StartAPIServer(); err != nil {
		return err
	}
	c.AdminKubeconfig, err = c.WriteKubeconfig("admin", c.AdminToken)
	return err
}

func port(addr string) (int, error) {
	i := strings.LastIndexByte(addr, ':')
	return strconv.Atoi(addr[i+1:])
}

// StartAPIServer starts kube-apiserver on the cluster's port and waits for
// its /readyz.
func (c *Kube) StartAPIServer() error {
	c.apiMu.Lock()
	defer c.apiMu.Unlock()
	c.apiStarts++
	p, err := StartProcess(fmt.Sprintf("kube-apiserver-%d", c.apiStarts), exec.Command(c.Bins.APIServer,
		"--etcd-servers="+c.etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(c.apiPort),
		"--cert-dir="+filepath.Join(c.Dir, "certs"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(c.Dir, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(c.Dir, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--token-auth-file="+filepath.Join(c.Dir, "tokens.csv"),
		"--enable-priority-and-fairness=false",
		"--v=0"))
	if err != nil {
		return err
	}
	c.api = p
	return p.WaitUntil(60*time.Second, HTTPReady(c.Server+"/readyz", c.AdminToken))
}

// KillAPIServer kills kube-apiserver at once, as a crash or a lost node
// would (etcd keeps running, and the data with it).
func (c *Kube) KillAPIServer() { c.StopAPIServer(0) }

// StopAPIServer stops kube-apiserver: SIGTERM, then SIGKILL after grace (at
// once if grace is 0).
func (c *Kube) StopAPIServer(grace time.Duration) {
	c.apiMu.Lock()
	defer c.apiMu.Unlock()
	if c.api != nil {
		_ = c.api.Stop(grace)
		c.api = nil
	}
}

// EnsureAPIServer starts kube-apiserver again if it is stopped.
func (c *Kube) EnsureAPIServer() error {
	c.apiMu.Lock()
	running := c.api != nil
	c.apiMu.Unlock()
	if running {
		return nil
	}
	return c.StartAPIServer()
}

// Stop stops kube-apiserver and etcd and removes the cluster's files.
func (c *Kube) Stop() {
	c.StopAPIServer(10 * time.Second)
	if c.etcd != nil {
		_ = c.etcd.Stop(5 * time.Second)
	}
	_ = os.RemoveAll(c.Dir)
}

// WriteKubeconfig writes a kubeconfig for the API server with a bearer
// token, which it registers as a secret (RegisterSecret), and returns its
// path. The server's certificate is the self-signed one kube-apiserver made
// in its --cert-dir; its bundle includes the signing CA.
func (c *Kube) WriteKubeconfig(name, token string) (string, error) {
	RegisterSecret(token, "bearer token of kubeconfig user "+name)
	ca := filepath.Join(c.Dir, "certs", "apiserver.crt")
	text := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: %s
    certificate-authority: %s
users:
- name: %s
  user:
    token: %s
contexts:
- name: test
  context: {cluster: test, user: %s}
current-context: test
`, c.Server, ca, name, token, name)
	path := filepath.Join(c.Dir, "kubeconfig-"+name+"-"+randomHex(4))
	return path, os.WriteFile(path, []byte(text), 0o600)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
