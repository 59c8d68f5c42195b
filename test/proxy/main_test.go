// Package proxy puts real reverse proxies in front of keygate, end to end:
// nginx (auth_request) and Caddy (forward_auth) ask keygate's HTTP adapter
// about every request before it reaches a small Go backend, and one table of
// scenarios runs against both proxies and directly against keygate's gRPC
// adapter (a real go-control-plane ext_authz client playing Envoy), so the
// test shows that every adapter decides identically.
//
// keygate, nginx and Caddy run as processes of test/internal/harness, which
// also fails the suite if keygate prints a key. The proxies come from Debian
// (`make test-deps` installs them): without one, its targets are skipped, or
// fail under CI=true; KEYGATE_SKIP_PROXIES=1 always skips them.
//
// The proxy configurations are the templates in testdata/; docs/proxies.md
// shows the same configurations with the test's paths and ports generalized.
package proxy

import (
	"os"
	"testing"

	"github.com/keygate/keygate/test/internal/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }

// skipProxies is the escape hatch for machines without nginx and Caddy.
func skipProxies() bool { return os.Getenv("KEYGATE_SKIP_PROXIES") == "1" }
