package redissessions_test

import (
	"testing"

	"github.com/keygate/keygate/internal/redistest"
)

// redisServer is a real redis-server for one test (internal/redistest).
type redisServer struct {
	*redistest.Server
	t testing.TB
}

func startRedis(t testing.TB) *redisServer {
	t.Helper()
	return &redisServer{Server: redistest.New(t), t: t}
}

// Restart starts it again on the same address, empty.
func (r *redisServer) Restart() {
	r.t.Helper()
	if err := r.Server.Restart(); err != nil {
		r.t.Fatal(err)
	}
}
