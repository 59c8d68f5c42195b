package harness

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Output is everything a process printed (stdout and stderr, interleaved as
// written); the process writes while the test reads.
type Output struct {
	name string
	mu   sync.Mutex
	buf  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(p)
}

// Name says whose output this is (a test name, or a component's).
func (o *Output) Name() string { return o.name }

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// Lines returns the complete lines printed so far: a line still being
// written is not one yet.
func (o *Output) Lines() []string {
	s := o.String()
	i := strings.LastIndexByte(s, '\n')
	if i < 0 {
		return nil
	}
	return strings.Split(s[:i], "\n")
}

// Tail returns the last n lines, for failure messages.
func (o *Output) Tail(n int) string { return tail(o.String(), n) }

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// Line returns the first complete line that contains every one of parts.
func (o *Output) Line(parts ...string) (string, bool) {
	for _, l := range o.Lines() {
		if containsAll(l, parts) {
			return l, true
		}
	}
	return "", false
}

// WaitLine waits up to timeout for a complete line containing every one of
// parts and returns it; the error quotes the output's end.
func (o *Output) WaitLine(timeout time.Duration, parts ...string) (string, error) {
	deadline := time.Now().Add(timeout)
	for {
		if l, ok := o.Line(parts...); ok {
			return l, nil
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("%s printed no line with %q within %s; output ends:\n%s", o.name, parts, timeout, o.Tail(40))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}
