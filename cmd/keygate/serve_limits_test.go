package main

import (
	"io"
	"strings"
	"testing"
)

// TestServeLimitFlags: limits that would turn a bound off are refused at
// start, before anything is loaded or listened on.
func TestServeLimitFlags(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--http-idle-timeout", "0"}, "--http-idle-timeout must be positive, not 0s"},
		{[]string{"--http-idle-timeout", "-1s"}, "--http-idle-timeout must be positive, not -1s"},
		{[]string{"--grpc-recv-budget", "1048576"}, "--grpc-recv-budget: receive budget: 1048576 bytes cannot hold one message of 10485760 bytes"},
		{[]string{"--grpc-recv-budget", "1048576", "--grpc-max-recv-msg-size", "65536"}, "no such file"}, // 16 calls: accepted
	} {
		// A policy that does not exist: past the checks, serve stops there.
		args := append([]string{"--policy", "/nonexistent/policy.yaml"}, c.args...)
		err := serve(args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("serve %s: %v, want an error with %q", strings.Join(c.args, " "), err, c.want)
		}
	}
}

// TestDefaultRecvBudget: the default lets every CPU decide a Check at once,
// and holds four messages at least.
func TestDefaultRecvBudget(t *testing.T) {
	for _, c := range []struct{ maxMsg, procs, want int }{
		{10 << 20, 1, 40 << 20},
		{10 << 20, 4, 40 << 20},
		{10 << 20, 16, 160 << 20},
		{1 << 20, 16, 40 << 20},
	} {
		if got := defaultRecvBudget(c.maxMsg, c.procs); got != c.want {
			t.Errorf("defaultRecvBudget(%d, %d) = %d, want %d", c.maxMsg, c.procs, got, c.want)
		}
	}
}
