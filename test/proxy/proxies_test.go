package proxy

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"text/template"
)

// proxyConfig fills the templates in testdata.
type proxyConfig struct {
	Dir     string // the proxy's own temp dir: pid, logs, temp files, storage
	Listen  string // 127.0.0.1:PORT the proxy listens on
	Keygate string // keygate's HTTP adapter, host:port
	Backend string // the backend, host:port
}

// render writes testdata/name filled with c to dir/out.
func render(t *testing.T, name string, c proxyConfig, out string) string {
	t.Helper()
	tmpl, err := template.ParseFiles(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := tmpl.Execute(&buf, c); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(c.Dir, out)
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// startNginx runs nginx in the foreground with everything it writes in a temp
// dir, and returns the address it listens on. The config is logged on failure.
func startNginx(t *testing.T, bin, keygateHTTP, backend string) string {
	t.Helper()
	dir := t.TempDir()
	var listen string
	startWithRetry(t, "nginx", func() (*process, error) {
		c := proxyConfig{Dir: dir, Listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), Keygate: keygateHTTP, Backend: backend}
		conf := render(t, "nginx.conf.tmpl", c, "nginx.conf")
		cmd := exec.Command(bin, "-c", conf, "-p", dir, "-e", filepath.Join(dir, "error.log"))
		p, err := startProcess(t, "nginx", cmd, filepath.Join(dir, "error.log"), filepath.Join(dir, "access.log"), conf)
		if err != nil {
			return nil, err
		}
		listen = c.Listen
		return p, waitReady(p, tcpReady(c.Listen))
	})
	return listen
}

// startCaddy runs Caddy with HOME and its XDG dirs in a temp dir (it writes
// its autosave and storage there), and returns the address it listens on.
// edit, if not nil, changes the rendered Caddyfile.
func startCaddy(t *testing.T, name, bin, keygateHTTP, backend string, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	var listen string
	startWithRetry(t, name, func() (*process, error) {
		c := proxyConfig{Dir: dir, Listen: fmt.Sprintf("127.0.0.1:%d", freePort(t)), Keygate: keygateHTTP, Backend: backend}
		conf := render(t, "Caddyfile.tmpl", c, "Caddyfile")
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
		p, err := startProcess(t, name, cmd, conf)
		if err != nil {
			return nil, err
		}
		listen = c.Listen
		return p, waitReady(p, tcpReady(c.Listen))
	})
	return listen
}
