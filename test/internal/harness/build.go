package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error

	cleanupMu sync.Mutex
	cleanups  []func()
)

// Binary builds ./cmd/keygate once per process (the first caller waits for
// the build, later ones get its result) into a temporary directory that
// Cleanup removes. KEYGATE_TEST_RACE=1 builds it with the race detector.
func Binary() (string, error) {
	buildOnce.Do(func() {
		buildBin, buildErr = build()
		if buildErr != nil {
			buildErr = fmt.Errorf("build keygate: %w", buildErr)
		}
	})
	return buildBin, buildErr
}

func build() (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir, err := os.MkdirTemp("", "keygate-harness-")
	if err != nil {
		return "", err
	}
	cleanupMu.Lock()
	buildDir = dir
	cleanupMu.Unlock()
	bin := filepath.Join(dir, "keygate")
	args := []string{"build", "-o", bin}
	if RaceBuild() {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/keygate")
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// RaceBuild reports whether Binary builds keygate with the race detector
// (KEYGATE_TEST_RACE=1), which makes it slower and its memory mostly the
// detector's.
func RaceBuild() bool { return os.Getenv("KEYGATE_TEST_RACE") == "1" }

// ModuleRoot is the directory of keygate's go.mod, found upwards from the
// working directory (a test's is its package directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil &&
			strings.Contains(string(b), "module github.com/keygate/keygate\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not inside the keygate module (no go.mod of github.com/keygate/keygate above the working directory)")
		}
		dir = parent
	}
}

// atCleanup registers fn to run in Cleanup, before the binary is removed.
func atCleanup(fn func()) {
	cleanupMu.Lock()
	defer cleanupMu.Unlock()
	cleanups = append(cleanups, fn)
}

// Cleanup stops the shared components (the Kubernetes control plane) and
// removes the built binary. Main calls it; a TestMain or a program that does
// not use Main calls it once its last keygate has stopped.
func Cleanup() {
	cleanupMu.Lock()
	fns, dir := cleanups, buildDir
	cleanups, buildDir = nil, ""
	cleanupMu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
	if dir != "" {
		_ = os.RemoveAll(dir)
	}
}
