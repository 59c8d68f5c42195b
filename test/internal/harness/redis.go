package harness

import (
	"errors"
	"testing"

	"github.com/keygate/keygate/internal/redistest"
)

// RedisServer is a real redis-server (internal/redistest): on a free
// loopback port, nothing written to disk; Kill and Restart make an honest
// outage.
type RedisServer = redistest.Server

// Redis starts redis-server until the test ends. Without redis-server the
// test is skipped (fails under CI=true: hack/test-deps.sh installs it).
func Redis(t testing.TB) *RedisServer {
	t.Helper()
	r, err := redistest.Start(t.TempDir())
	if errors.Is(err, redistest.ErrNotInstalled) {
		Missing(t, err.Error())
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		r.Stop()
		if t.Failed() {
			t.Logf("redis-server output:\n%s", r.Output())
		}
	})
	return r
}

// StartRedis starts redis-server with dir as its working directory, for
// programs (test/load); the caller stops it (Stop).
func StartRedis(dir string) (*RedisServer, error) { return redistest.Start(dir) }
