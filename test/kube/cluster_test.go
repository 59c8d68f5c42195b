package kube

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// cluster is an etcd and a kube-apiserver on loopback ports, with RBAC on.
// The suite's admin authenticates with a static token in group
// system:masters; keygate gets its own kubeconfigs.
type cluster struct {
	bins    binaries
	dir     string
	etcd    *proc
	etcdURL string

	apiMu      sync.Mutex
	api        *proc
	apiPort    int
	apiStarts  int
	server     string // https://127.0.0.1:PORT
	adminToken string
	admin      *kubernetes.Clientset
	adminCfg   string // kubeconfig of the admin
}

func startCluster(bins binaries) (*cluster, error) {
	dir, err := os.MkdirTemp("", "keygate-kube-cluster-")
	if err != nil {
		return nil, err
	}
	c := &cluster{bins: bins, dir: dir}
	if err := c.start(); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *cluster) start() error {
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	c.apiPort = ports[2]
	c.server = fmt.Sprintf("https://127.0.0.1:%d", c.apiPort)
	c.etcdURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	c.etcd, err = startProc("etcd", c.dir, c.bins.etcd,
		"--name=keygate-test",
		"--data-dir="+filepath.Join(c.dir, "etcd"),
		"--listen-client-urls="+c.etcdURL, "--advertise-client-urls="+c.etcdURL,
		"--listen-peer-urls="+peer, "--initial-advertise-peer-urls="+peer,
		"--initial-cluster=keygate-test="+peer,
		"--unsafe-no-fsync", "--log-level=warn")
	if err != nil {
		return err
	}
	if err := waitHTTP(c.etcdURL+"/health", "", 20*time.Second, c.etcd); err != nil {
		return fmt.Errorf("etcd: %w\n%s", err, c.etcd.tail())
	}

	// The service-account signing key, and the admin's static token.
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	if err := os.WriteFile(filepath.Join(c.dir, "sa.key"), keyPEM, 0o600); err != nil {
		return err
	}
	c.adminToken = randomHex(16)
	tokens := fmt.Sprintf("%s,keygate-test-admin,admin-uid,system:masters\n", c.adminToken)
	if err := os.WriteFile(filepath.Join(c.dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		return err
	}
	if err := c.startAPIServer(); err != nil {
		return err
	}
	c.adminCfg, err = c.writeKubeconfig("admin", c.adminToken)
	if err != nil {
		return err
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", c.adminCfg)
	if err != nil {
		return err
	}
	c.admin, err = kubernetes.NewForConfig(cfg)
	return err
}

// startAPIServer starts kube-apiserver on c.apiPort and waits for /readyz.
func (c *cluster) startAPIServer() error {
	c.apiMu.Lock()
	defer c.apiMu.Unlock()
	c.apiStarts++
	p, err := startProc(fmt.Sprintf("kube-apiserver-%d", c.apiStarts), c.dir, c.bins.apiserver,
		"--etcd-servers="+c.etcdURL,
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		"--secure-port="+strconv.Itoa(c.apiPort),
		"--cert-dir="+filepath.Join(c.dir, "certs"),
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file="+filepath.Join(c.dir, "sa.key"),
		"--service-account-signing-key-file="+filepath.Join(c.dir, "sa.key"),
		"--service-cluster-ip-range=10.0.0.0/24",
		"--authorization-mode=RBAC",
		"--token-auth-file="+filepath.Join(c.dir, "tokens.csv"),
		"--enable-priority-and-fairness=false",
		"--v=0")
	if err != nil {
		return err
	}
	c.api = p
	if err := waitHTTP(c.server+"/readyz", c.adminToken, 60*time.Second, p); err != nil {
		return fmt.Errorf("kube-apiserver: %w\n%s", err, p.tail())
	}
	return nil
}

// killAPIServer kills kube-apiserver at once, as a crash or a lost node
// would (etcd keeps running, and the data with it).
func (c *cluster) killAPIServer() {
	c.stopAPIServerWithin(0)
}

// stopAPIServerWithin stops kube-apiserver: SIGTERM, then SIGKILL after
// grace (at once if grace is 0).
func (c *cluster) stopAPIServerWithin(grace time.Duration) {
	c.apiMu.Lock()
	defer c.apiMu.Unlock()
	if c.api != nil {
		c.api.terminate(grace)
		c.api = nil
	}
}

// ensureAPIServer restarts kube-apiserver if a failed test left it stopped.
func (c *cluster) ensureAPIServer() error {
	c.apiMu.Lock()
	running := c.api != nil
	c.apiMu.Unlock()
	if running {
		return nil
	}
	return c.startAPIServer()
}

func (c *cluster) stop() {
	c.stopAPIServerWithin(10 * time.Second)
	if c.etcd != nil {
		c.etcd.terminate(5 * time.Second)
	}
	_ = os.RemoveAll(c.dir)
}

// writeKubeconfig writes a kubeconfig for the server with a bearer token.
// The server's certificate is the self-signed one kube-apiserver made in
// --cert-dir; its bundle includes the signing CA.
func (c *cluster) writeKubeconfig(name, token string) (string, error) {
	ca := filepath.Join(c.dir, "certs", "apiserver.crt")
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
`, c.server, ca, name, token, name)
	path := filepath.Join(c.dir, "kubeconfig-"+name+"-"+randomHex(4))
	return path, os.WriteFile(path, []byte(text), 0o600)
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
	cmd := exec.Command(c.bins.kubectl, append([]string{"--kubeconfig", c.adminCfg}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// ---------------------------------------------------------------------------
// Processes.

// proc is a child process whose output goes to a file in the cluster dir.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startProc(name, dir, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	// Die with the test binary rather than outlive it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// terminate sends SIGTERM, then SIGKILL after grace; SIGKILL at once if
// grace is 0.
func (p *proc) terminate(grace time.Duration) {
	if p.exited() {
		return
	}
	if grace == 0 {
		_ = p.cmd.Process.Kill()
		<-p.done
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// tail returns the end of the process's log, for failure messages.
func (p *proc) tail() string {
	data, _ := os.ReadFile(p.log)
	const max = 4000
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return fmt.Sprintf("--- %s log (%s), end:\n%s", p.name, p.log, data)
}

// waitHTTP polls url until it answers 200, p exits or timeout passes.
func waitHTTP(url, token string, timeout time.Duration, p *proc) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, // a readiness poll; the kubeconfigs verify
	}}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		}
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("%s not ready within %s (last: %s)", url, timeout, last)
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
