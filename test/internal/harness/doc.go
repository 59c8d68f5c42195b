// Package harness runs keygate as a real process for the suites under test/
// that talk to it over sockets, and the real components they put next to it.
//
// It builds ./cmd/keygate once per process (Binary), starts `keygate serve`
// on free loopback ports it chooses (Start, or Serve in a test), waits for
// /readyz, captures everything keygate prints (Output: lines, WaitLine),
// stops it with SIGTERM and reports a fault (an early or non-zero exit, a
// panic, a data race). Every raw secret a test gives keygate is registered
// (RegisterSecret); Main fails the run if any keygate printed one. Run runs
// a keygate command to completion (`policy validate`, a serve that must
// refuse to start) under the same rules; Memory reads a process's RSS and its peak.
// KEYGATE_TEST_RACE=1 builds keygate with -race (RaceBuild).
//
// Real components: Nginx, Redis, ZitadelOP (an OpenID provider whose login
// Login drives), and KubeCluster (etcd and kube-apiserver, shared by a suite). They install nothing (hack/test-deps.sh does): without their
// binary a test is skipped, or fails under CI=true (Missing). StartProcess,
// Retry and the readiness probes (TCPReady, HTTPReady) run any other.
//
// A new suite:
//
//	package mysuite
//
//	func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
//
//	func TestWhoami(t *testing.T) {
//		key := makeKey(t) // a raw API key, its digest in policy.yaml
//		harness.RegisterSecret(key, "the whoami key")
//		kg := harness.Serve(t, harness.Options{
//			HTTP: true,
//			Args: []string{"--policy", writePolicy(t, key), "--decision-log", "all"},
//		})
//		// ... requests to kg.GRPCAddr, kg.HTTPAddr, kg.AdminAddr ...
//		if _, err := kg.Out.WaitLine(5*time.Second, `"msg":"decision"`, `"result":"allow"`); err != nil {
//			t.Fatal(err)
//		}
//	} // keygate is stopped here; it must exit 0
//
// Programs that are not tests (test/load) use Start, Stop and Cleanup.
package harness
