package harness

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) { os.Exit(Main(m)) }

func TestOutputLinesAndWaitLine(t *testing.T) {
	o := &Output{name: "proc"}
	fmt.Fprint(o, "one\ntwo words\nthree, still being wr")
	if got := o.Lines(); !slices.Equal(got, []string{"one", "two words"}) {
		t.Errorf("Lines = %q, want the two complete lines", got)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		fmt.Fprint(o, "itten\n")
	}()
	if l, err := o.WaitLine(5*time.Second, "three", "written"); err != nil || l != "three, still being written" {
		t.Errorf("WaitLine = %q, %v; want the line once complete", l, err)
	}
	_, err := o.WaitLine(50*time.Millisecond, "never")
	if err == nil || !strings.Contains(err.Error(), `proc printed no line with ["never"]`) || !strings.Contains(err.Error(), "two words") {
		t.Errorf("WaitLine timeout error = %v; want it to name the parts and quote the output", err)
	}
}

func sh(t *testing.T, script string) *Process {
	t.Helper()
	p, err := StartProcess("sh", exec.Command("sh", "-c", script))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop(0) })
	return p
}

func TestProcessStop(t *testing.T) {
	graceful := sh(t, `trap 'echo bye; exit 0' TERM; echo up; while :; do sleep 0.02; done`)
	if _, err := graceful.Out.WaitLine(5*time.Second, "up"); err != nil {
		t.Fatal(err)
	}
	if err := graceful.Stop(5 * time.Second); err != nil || graceful.ExitCode() != 0 || !strings.Contains(graceful.Out.String(), "bye") {
		t.Errorf("Stop of a process that exits on SIGTERM: %v, exit %d, output %q", err, graceful.ExitCode(), graceful.Out.String())
	}

	stubborn := sh(t, `trap '' TERM; echo up; while :; do sleep 0.02; done`)
	if _, err := stubborn.Out.WaitLine(5*time.Second, "up"); err != nil {
		t.Fatal(err)
	}
	err := stubborn.Stop(100 * time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "did not exit within 100ms of SIGTERM and was killed") || !stubborn.Exited() || stubborn.ExitCode() != -1 {
		t.Errorf("Stop of a process that ignores SIGTERM: %v, exit %d; want it killed and said so", err, stubborn.ExitCode())
	}
}

func TestMemory(t *testing.T) {
	before, err := ReadMemory(os.Getpid())
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	b := make([]byte, 64<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1
	}
	m, err := ReadMemory(os.Getpid())
	runtime.KeepAlive(b)
	if err != nil || m.RSS < before.RSS+60<<20 || m.Peak < m.RSS {
		t.Errorf("Memory = %+v, %v after touching 64 MiB (before %+v); want RSS grown by that, the peak at least RSS", m, err, before)
	}
	p := sh(t, `while :; do sleep 0.02; done`)
	if m, err := p.Memory(); err != nil || m.RSS <= 0 || m.RSS > 64<<20 {
		t.Errorf("a shell's Memory = %+v, %v; want a small RSS", m, err)
	}
	if _, err := ReadMemory(1 << 30); err == nil {
		t.Error("ReadMemory of a pid that does not exist: no error")
	}
}

func TestWaitUntilExited(t *testing.T) {
	p := sh(t, `echo boom; exit 3`)
	err := p.WaitUntil(5*time.Second, func() error { return errors.New("not yet") })
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "boom") || p.ExitCode() != 3 {
		t.Errorf("WaitUntil on a process that exits 3: %v (exit %d); want ErrExited with its output", err, p.ExitCode())
	}
	if err := p.ExitError(); err == nil || !strings.Contains(err.Error(), "exit status 3") {
		t.Errorf("ExitError = %v, want the exit status", err)
	}
	slow := sh(t, `sleep 10`)
	err = slow.WaitUntil(60*time.Millisecond, func() error { return errors.New("no answer") })
	if err == nil || errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "last: no answer") {
		t.Errorf("WaitUntil timeout: %v; want the probe's last complaint", err)
	}
}

// withSecrets runs the test with the secret registry and outputs of its own.
func withSecrets(t *testing.T) {
	secretsMu.Lock()
	outputsMu.Lock()
	savedS, savedO := secrets, outputs
	secrets, outputs = map[string]string{}, nil
	outputsMu.Unlock()
	secretsMu.Unlock()
	t.Cleanup(func() {
		secretsMu.Lock()
		outputsMu.Lock()
		secrets, outputs = savedS, savedO
		outputsMu.Unlock()
		secretsMu.Unlock()
	})
}

func TestLeakedSecrets(t *testing.T) {
	withSecrets(t)
	RegisterSecret("kg_abc_SECRETVALUE", "API key kg_abc")
	RegisterSecret("other-token", "a token")
	clean, leaky := &Output{name: "TestClean"}, &Output{name: "TestLeaky"}
	registerOutput(clean)
	registerOutput(leaky)
	fmt.Fprint(clean, "started\nkey kg_abc denied\n")
	fmt.Fprint(leaky, "started\nauthorization: Bearer kg_abc_SECRETVALUE\n")
	leaks := LeakedSecrets()
	want := "API key kg_abc leaked in output of TestLeaky, line 2: authorization: Bearer <API key kg_abc>"
	if !slices.Equal(leaks, []string{want}) {
		t.Errorf("LeakedSecrets = %q, want [%q]", leaks, want)
	}
	id, raw := NewAPIKey(t)
	if !strings.HasPrefix(raw, id+"_") {
		t.Errorf("NewAPIKey = %q, %q; want a key of that id", id, raw)
	}
	fmt.Fprintf(clean, "x-api-key: %s\n", raw)
	if got := LeakedSecrets(); len(got) != 2 || !strings.Contains(got[0], "API key "+id+" leaked in output of TestClean, line 3") {
		t.Errorf("LeakedSecrets = %q; want NewAPIKey's key registered", got)
	}
	var report strings.Builder
	if CheckSecrets(&report, false) || strings.Contains(report.String(), "SECRETVALUE") ||
		!strings.Contains(report.String(), "--- FAIL: TestNoSecretsInOutput") {
		t.Errorf("CheckSecrets report:\n%s\nwant a failure that does not repeat the secret", report.String())
	}
}

// recorder is a testing.TB that records Skip and Fatal and stops there.
type recorder struct {
	testing.TB
	skipped, failed string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = fmt.Sprintf(format, args...)
	panic(r)
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
	panic(r)
}

func missing(msg string) (r *recorder) {
	r = &recorder{}
	defer func() { _ = recover() }()
	Missing(r, msg)
	return r
}

func TestMissingSkipsLocallyAndFailsUnderCI(t *testing.T) {
	t.Setenv("CI", "")
	if r := missing("nginx is not installed"); r.failed != "" || !strings.HasPrefix(r.skipped, "nginx is not installed; skipped") {
		t.Errorf("locally: skipped %q, failed %q; want a skip that names what is missing", r.skipped, r.failed)
	}
	t.Setenv("CI", "true")
	if r := missing("nginx is not installed"); r.skipped != "" || !strings.HasPrefix(r.failed, "nginx is not installed (CI=true") {
		t.Errorf("under CI=true: skipped %q, failed %q; want a failure", r.skipped, r.failed)
	}
}

// fakeKeygate is a script standing in for keygate: it prints its arguments
// and the KEYGATE_* variables it sees, then waits to be stopped.
func fakeKeygate(t *testing.T) string {
	path := filepath.Join(t.TempDir(), "keygate")
	script := "#!/bin/sh\necho \"args: $*\"\nenv | grep '^KEYGATE_' || true\necho started\ntrap 'exit 0' TERM\nwhile :; do sleep 0.02; done\n"
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStartListenersAndEnvironment(t *testing.T) {
	withSecrets(t)
	t.Setenv("KEYGATE_HTTP_PATH_PREFIX", "/from-the-developer")
	for _, tc := range []struct {
		name      string
		http, api bool
	}{{"grpc and admin", false, false}, {"all four", true, true}} {
		t.Run(tc.name, func(t *testing.T) {
			k, err := Start(Options{Binary: fakeKeygate(t), NoWait: true, HTTP: tc.http, API: tc.api,
				Wrap: []string{"env"}, Env: []string{"KEYGATE_LOG_LEVEL=debug"}, Args: []string{"--policy", "p.yaml"}})
			if err != nil {
				t.Fatal(err)
			}
			line, err := k.Out.WaitLine(5*time.Second, "args:")
			if err != nil {
				t.Fatal(err)
			}
			want := "args: serve --grpc-addr=" + k.GRPCAddr + " --http-addr=" + k.HTTPAddr + " --admin-addr=" + k.AdminAddr
			if tc.api {
				want += " --api-addr=" + k.APIAddr
			}
			want += " --policy p.yaml"
			if line != want {
				t.Errorf("command line\n  %s\nwant\n  %s", line, want)
			}
			addrs := []string{k.GRPCAddr, k.AdminAddr, k.HTTPAddr, k.APIAddr}
			for i, a := range addrs {
				served := i < 2 || i == 2 && tc.http || i == 3 && tc.api
				if served != strings.HasPrefix(a, "127.0.0.1:") || slices.Index(addrs, a) != i && a != "" {
					t.Errorf("addresses %q: want distinct loopback addresses for the listeners asked for, empty for the others", addrs)
				}
			}
			if _, err := k.Out.WaitLine(5*time.Second, "started"); err != nil {
				t.Fatal(err)
			}
			if env := k.Out.String(); strings.Contains(env, "PATH_PREFIX") || !strings.Contains(env, "KEYGATE_LOG_LEVEL=debug") {
				t.Errorf("keygate's environment: %q; want only the KEYGATE_* variables of Options.Env", env)
			}
			if err := k.Stop(); err != nil {
				t.Errorf("Stop: %v", err)
			}
		})
	}
}

func TestStopReportsFaults(t *testing.T) {
	withSecrets(t)
	start := func(script string) *Keygate {
		path := filepath.Join(t.TempDir(), "keygate")
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		k, err := Start(Options{Binary: path, NoWait: true, StopTimeout: 500 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = k.Process.Stop(0) })
		return k
	}
	for _, tc := range []struct {
		name, script string
		prepare      func(*Keygate)
		want         string // in Stop's error; empty: no error
	}{
		{"clean exit on SIGTERM", `trap 'exit 0' TERM; while :; do sleep 0.02; done`, nil, ""},
		{"exit 2 on SIGTERM", `trap 'exit 2' TERM; while :; do sleep 0.02; done`, nil, "exited with exit status 2 after SIGTERM, want status 0"},
		{"died on its own", `exit 1`, func(k *Keygate) { <-k.Done() }, "keygate exited before it was stopped (exit status 1)"},
		{"exit 0 on SIGHUP, a reload", `trap 'exit 0' HUP; while :; do sleep 0.02; done`, func(k *Keygate) {
			if err := k.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			<-k.Done()
		}, "keygate exited before it was stopped (<nil>)"},
		{"exit the test waited for", `echo no policy; exit 1`, func(k *Keygate) {
			if err := k.WaitExit(5 * time.Second); err != nil {
				t.Fatal(err)
			}
		}, ""},
		{"panic", `echo 'panic: runtime error'; trap 'exit 0' TERM; while :; do sleep 0.02; done`, nil, `keygate printed "panic:"`},
		{"data race", `echo 'WARNING: DATA RACE'; trap 'exit 0' TERM; while :; do sleep 0.02; done`, nil, `keygate printed "WARNING: DATA RACE"`},
		{"ignores SIGTERM", `trap '' TERM; while :; do sleep 0.02; done`, nil, "did not exit within 500ms of SIGTERM and was killed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := start(tc.script)
			time.Sleep(50 * time.Millisecond) // the shell sets its traps
			if tc.prepare != nil {
				tc.prepare(k)
			}
			err := k.Stop()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Stop: %v, want no fault", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Stop: %v, want a fault saying %q", err, tc.want)
			}
			if again := k.Stop(); fmt.Sprint(again) != fmt.Sprint(err) {
				t.Errorf("a second Stop said %v, the first %v", again, err)
			}
		})
	}
}

// TestKeygate runs the real binary: ready on its ports, its log captured,
// stopped with exit status 0; a policy it cannot load makes it exit 1.
func TestKeygate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds keygate")
	}
	withSecrets(t)
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(policy, []byte("version: 1\nendpoints:\n  - {name: open, match: {path: \"/**\"}, anonymous: true}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k := Serve(t, Options{HTTP: true, Args: []string{"--policy", policy, "--decision-log", "all"}})
	if !k.Ready() {
		t.Fatal("Serve returned before /readyz answered 200")
	}
	resp, err := http.Get("http://" + k.HTTPAddr + "/anything")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the HTTP adapter answered %d for an anonymous path, want 200", resp.StatusCode)
	}
	if _, err := k.Out.WaitLine(5*time.Second, `"msg":"decision"`, `"path":"/anything"`); err != nil {
		t.Error(err)
	}
	code, st, err := k.Status()
	if err != nil || code != http.StatusOK || !st.Ready || st.Generation == 0 {
		t.Errorf("Status = %d %+v %v; want ready with a generation", code, st, err)
	}
	if err := k.Stop(); err != nil || k.ExitCode() != 0 {
		t.Errorf("Stop: %v (exit %d), want a clean exit 0", err, k.ExitCode())
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 99\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := Run(t, 30*time.Second, "policy", "validate", policy); r.Code != 0 {
		t.Errorf("keygate policy validate of a good policy: exit %d, output %q", r.Code, r.Out.String())
	}
	r := Run(t, 30*time.Second, "policy", "validate", bad)
	stdout, stderr, out := r.Stdout.String(), r.Stderr.String(), r.Out.String()
	if r.Code != 1 || !strings.Contains(stdout, "bad.yaml:1:") || strings.Contains(stdout, "not a valid policy") ||
		!strings.Contains(stderr, "not a valid policy") || strings.Contains(stderr, "bad.yaml:1:") ||
		!strings.Contains(out, stdout) || !strings.Contains(out, stderr) {
		t.Errorf("keygate policy validate of a bad policy: exit %d, stdout %q, stderr %q, out %q; "+
			"want 1, the problem on stdout, the verdict on stderr, both in Out", r.Code, stdout, stderr, out)
	}
	refused := Serve(t, Options{NoWait: true, Args: []string{"--policy", bad}})
	if err := refused.WaitExit(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if refused.ExitCode() != 1 || !strings.Contains(refused.Out.String(), "bad.yaml") {
		t.Errorf("keygate with a bad policy: exit %d, output %q; want 1 and the file named", refused.ExitCode(), refused.Out.String())
	}
}

// TestNginx starts nginx with a configuration that answers every request
// itself.
func TestNginx(t *testing.T) {
	listen := Nginx(t, func(dir, listen string) string {
		conf := fmt.Sprintf(`daemon off;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log info;
events { worker_connections 16; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
    server {
        listen %[2]s;
        location / { return 200 "hello from nginx\n"; }
    }
}
`, dir, listen)
		path := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	})
	resp, err := http.Get("http://" + listen + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("nginx answered %d, want 200", resp.StatusCode)
	}
}
