package proxy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"text/template"
	"time"

	"github.com/keygate/keygate/test/internal/harness"
)

// proxyConfig fills the templates in testdata.
type proxyConfig struct {
	Dir     string // the proxy's own temp dir: pid, logs, temp files, storage
	Listen  string // 127.0.0.1:PORT the proxy listens on
	Keygate string // keygate's HTTP adapter, host:port
	Backend string // the backend, host:port
}

// fill is testdata/name filled with c.
func fill(t *testing.T, name string, c proxyConfig) []byte {
	t.Helper()
	tmpl, err := template.ParseFiles(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, c); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// render writes testdata/name filled with c to dir/out.
func render(t *testing.T, name string, c proxyConfig, out string) string {
	t.Helper()
	path := filepath.Join(c.Dir, out)
	if err := os.WriteFile(path, fill(t, name, c), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startNginx runs nginx (harness.Nginx) with testdata/nginx.conf.tmpl in
// front of keygateHTTP and backend, and returns the address it listens on.
func startNginx(t *testing.T, keygateHTTP, backend string) string {
	t.Helper()
	return harness.Nginx(t, func(dir, listen string) string {
		return render(t, "nginx.conf.tmpl", proxyConfig{Dir: dir, Listen: listen, Keygate: keygateHTTP, Backend: backend}, "nginx.conf")
	})
}

// startCaddy runs Caddy with HOME and its XDG dirs in a temp dir (it writes
// its autosave and storage there) until the test ends, and returns the
// address it listens on. edit, if not nil, changes the rendered Caddyfile.
// Its output and Caddyfile go to the test log if the test fails.
func startCaddy(t *testing.T, name, bin, keygateHTTP, backend string, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	var listen string
	harness.Retry(t, name, func() (*harness.Process, error) {
		addr, err := harness.FreeAddr()
		if err != nil {
			return nil, err
		}
		conf := render(t, "Caddyfile.tmpl", proxyConfig{Dir: dir, Listen: addr, Keygate: keygateHTTP, Backend: backend}, "Caddyfile")
		if edit != nil {
			data, err := os.ReadFile(conf)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(conf, []byte(edit(string(data))), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(bin, "run", "--config", conf, "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(),
			"HOME="+dir,
			"XDG_DATA_HOME="+filepath.Join(dir, "xdg-data"),
			"XDG_CONFIG_HOME="+filepath.Join(dir, "xdg-config"),
		)
		p, err := harness.StartProcess(name, cmd, conf)
		if err != nil {
			return nil, err
		}
		listen = addr
		return p, p.WaitUntil(15*time.Second, harness.TCPReady(addr))
	}).StopAtCleanup(t, 5*time.Second)
	return listen
}
