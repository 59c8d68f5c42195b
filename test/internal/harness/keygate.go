package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

// Options say how to run `keygate serve`. The harness chooses the listen
// addresses: gRPC and admin always, HTTP and the management API on request.
type Options struct {
	Args []string // serve flags besides the listen addresses (--policy, --decision-log, ...)
	HTTP bool     // serve ext_authz HTTP (--http-addr); else --http-addr= turns it off
	API  bool     // serve the management API (--api-addr)

	NoWait       bool          // return once started, not when /readyz answers 200
	ReadyTimeout time.Duration // for /readyz; default 30s
	StopTimeout  time.Duration // from SIGTERM to SIGKILL; default 20s

	Binary string   // the keygate binary; default Binary(), built once
	Wrap   []string // a command that execs keygate, such as taskset -c 0
	Env    []string // added to the environment, which has none of the caller's KEYGATE_* variables
	Name   string   // names the process in messages and in the secret scan; default "keygate"
}

// Keygate is a running `keygate serve`. Its output is captured in Out and
// scanned for registered secrets by LeakedSecrets.
type Keygate struct {
	*Process
	GRPCAddr  string // 127.0.0.1:PORT
	HTTPAddr  string // empty unless Options.HTTP
	AdminAddr string
	APIAddr   string // empty unless Options.API

	opts     Options
	stopOnce sync.Once
	stopErr  error
}

// errPortTaken says keygate lost one of its free ports to another process.
var errPortTaken = errors.New("address already in use")

// Start runs `keygate serve` on free loopback ports and, unless
// Options.NoWait, waits until /readyz answers 200; it retries with fresh
// ports when another process took one of them. The caller stops it (Stop);
// in a test, Serve does that.
func Start(o Options) (*Keygate, error) {
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 30 * time.Second
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = 20 * time.Second
	}
	if o.Name == "" {
		o.Name = "keygate"
	}
	if o.Binary == "" {
		bin, err := Binary()
		if err != nil {
			return nil, err
		}
		o.Binary = bin
	}
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var k *Keygate
		if k, err = start(o); err == nil {
			return k, nil
		}
		if !errors.Is(err, errPortTaken) {
			break
		}
	}
	return nil, err
}

func start(o Options) (*Keygate, error) {
	n := 2
	if o.HTTP {
		n++
	}
	if o.API {
		n++
	}
	addrs, err := FreeAddrs(n)
	if err != nil {
		return nil, err
	}
	k := &Keygate{opts: o, GRPCAddr: addrs[0], AdminAddr: addrs[1]}
	addrs = addrs[2:]
	if o.HTTP {
		k.HTTPAddr, addrs = addrs[0], addrs[1:]
	}
	if o.API {
		k.APIAddr = addrs[0]
	}
	argv := append(append([]string(nil), o.Wrap...), o.Binary, "serve",
		"--grpc-addr="+k.GRPCAddr, "--http-addr="+k.HTTPAddr, "--admin-addr="+k.AdminAddr)
	if o.API {
		argv = append(argv, "--api-addr="+k.APIAddr)
	}
	argv = append(argv, o.Args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(hermeticEnv(), o.Env...)
	if k.Process, err = StartProcess(o.Name, cmd); err != nil {
		return nil, err
	}
	registerOutput(k.Out)
	if o.NoWait {
		return k, nil
	}
	if _, err := k.WaitReady(o.ReadyTimeout); err != nil {
		_ = k.Process.Stop(0)
		if strings.Contains(k.Out.String(), "address already in use") {
			return nil, fmt.Errorf("%w: %v", errPortTaken, err)
		}
		return nil, err
	}
	return k, nil
}

// hermeticEnv is this process's environment without KEYGATE_* variables:
// keygate reads every flag from KEYGATE_<FLAG> too, and a developer's must
// not change what a test runs.
func hermeticEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "KEYGATE_") {
			env = append(env, kv)
		}
	}
	return env
}

// Serve is Start for a test: it fails the test when keygate does not start
// (or become ready), and when the test ends it stops keygate and fails the
// test if Stop finds a fault. The output is named after the test, and goes
// to the test log when the test fails.
func Serve(t testing.TB, o Options) *Keygate {
	t.Helper()
	if o.Name == "" {
		o.Name = t.Name()
	}
	k, err := Start(o)
	if err != nil {
		t.Fatalf("keygate: %v", err)
	}
	t.Cleanup(func() {
		if err := k.Stop(); err != nil {
			t.Error(err)
		} else if t.Failed() {
			t.Logf("keygate (%s) output:\n%s", k.Name, k.Out.Tail(200))
		}
	})
	return k
}

// Stop ends keygate gracefully (SIGTERM, then SIGKILL after
// Options.StopTimeout) and reports what a user would call a fault: it exited
// before it was stopped, did not exit 0 on SIGTERM, or printed a panic, a
// data race or a fatal error. An exit the caller waited for (WaitExit) is
// its to judge. Later calls return the first call's result.
func (k *Keygate) Stop() error {
	k.stopOnce.Do(func() { k.stopErr = k.stop() })
	return k.stopErr
}

func (k *Keygate) stop() error {
	expected := k.expected.Load()
	diedEarly := k.Exited() && !k.signaled.Load() && !expected
	stopErr := k.Process.Stop(k.opts.StopTimeout)
	out := k.Out.String()
	var errs []error
	switch {
	case diedEarly:
		errs = append(errs, fmt.Errorf("%s: keygate exited before it was stopped (%v); output ends:\n%s", k.Name, k.waitErr, tail(out, 40)))
	case stopErr != nil:
		errs = append(errs, fmt.Errorf("%s: %w; output ends:\n%s", k.Name, stopErr, tail(out, 40)))
	case !expected && k.ExitCode() != 0:
		errs = append(errs, fmt.Errorf("%s: keygate exited with %v after SIGTERM, want status 0; output ends:\n%s", k.Name, k.waitErr, tail(out, 40)))
	}
	for _, bad := range []string{"panic:", "WARNING: DATA RACE", "fatal error:"} {
		if strings.Contains(out, bad) {
			errs = append(errs, fmt.Errorf("%s: keygate printed %q; output ends:\n%s", k.Name, bad, tail(out, 80)))
		}
	}
	return errors.Join(errs...)
}

// adminClient talks to admin listeners on loopback.
var adminClient = &http.Client{
	Timeout:   2 * time.Second,
	Transport: &http.Transport{Proxy: nil, DisableCompression: true},
}

// Admin GETs path (with its query) from the admin listener and returns the
// status and body; status 0 and the error's text when there is no answer.
func (k *Keygate) Admin(path string) (int, string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+k.AdminAddr+path, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := adminClient.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Ready reports whether /readyz answers 200.
func (k *Keygate) Ready() bool {
	code, _ := k.Admin("/readyz")
	return code == http.StatusOK
}

// WaitReady waits up to timeout for /readyz to answer 200 and returns how
// long that took; the error wraps ErrExited when keygate exited first.
func (k *Keygate) WaitReady(timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	err := k.WaitUntil(timeout, func() error {
		if code, body := k.Admin("/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz: %d %s", code, strings.TrimSpace(body))
		}
		return nil
	})
	return time.Since(start), err
}

// ReadyStatus is /readyz?verbose: readiness and the policy's reload state.
type ReadyStatus struct {
	Ready         bool   `json:"ready"`
	Reason        string `json:"reason"`
	Generation    uint64 `json:"generation"`
	LastReloadOK  bool   `json:"last_reload_ok"`
	LastError     string `json:"last_error"`
	ReloadsOK     uint64 `json:"reloads_ok"`
	ReloadsFailed uint64 `json:"reloads_failed"`
	Source        string `json:"source"`
}

// Status reads /readyz?verbose; the HTTP status is returned as well, since
// a keygate that is not ready answers 503 with the same document.
func (k *Keygate) Status() (int, ReadyStatus, error) {
	var st ReadyStatus
	code, body := k.Admin("/readyz?verbose")
	if code == 0 {
		return 0, st, fmt.Errorf("/readyz?verbose: %s", body)
	}
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		return code, st, fmt.Errorf("/readyz?verbose: status %d, body %q: %w", code, body, err)
	}
	return code, st, nil
}
