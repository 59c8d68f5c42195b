package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/keygate/keygate/test/internal/harness"
)

// A key pasted where it does not belong is refused without being printed:
// not in the log, not on the unauthenticated /readyz?verbose, and a key a
// client put in a path segment not in the decision log. The error still
// says where the problem is.
func TestSecretsNeverPrinted(t *testing.T) {
	t.Parallel()
	a := newKey(t, "acme", "", "api-bot", "sales")
	good := renderPolicy(simpleEndpoints, []cred{a}, nil)
	path := newPolicyFile(t, good)
	p := startKeygate(t, path)

	t.Run("key pasted into expires_at", func(t *testing.T) {
		pasted := newKey(t, "acme", "", "paste-bot")
		anchor := "    user: api-bot\n"
		if !strings.Contains(good, anchor) {
			t.Fatalf("policy has no %q", anchor)
		}
		broken := strings.Replace(good, anchor, anchor+"    expires_at: "+pasted.Raw+"\n", 1)
		fileLine := fmt.Sprintf("policy.yaml:%d", lineOf(t, broken, "expires_at: "))
		writeAtomic(t, path, broken)

		var st harness.ReadyStatus
		if _, ok := poll(reloadDeadline, func() bool {
			_, st = p.readyVerbose(t)
			return !st.LastReloadOK
		}); !ok {
			t.Fatalf("policy with a key in expires_at not refused within %v: %+v", reloadDeadline, st)
		}
		_, body := p.Admin("/readyz?verbose")
		if strings.Contains(body, pasted.Raw) {
			t.Errorf("/readyz?verbose shows the pasted key: %s", body)
		}
		if !strings.Contains(st.LastError, fileLine) || !strings.Contains(st.LastError, "RFC 3339") {
			t.Errorf("last_error %q does not say %s and what is wrong", st.LastError, fileLine)
		}
		poll(reloadDeadline, func() bool { return strings.Contains(p.Out.String(), fileLine) })
		var logged bool
		for _, l := range p.Out.Lines() {
			if strings.Contains(l, pasted.Raw) {
				t.Errorf("log shows the pasted key: %s", l)
			}
			logged = logged || strings.Contains(l, fileLine) && strings.Contains(l, "RFC 3339")
		}
		if !logged {
			t.Errorf("no log line names %s and the bad time:\n%s", fileLine, p.Out.Tail(10))
		}
	})

	t.Run("key in a path segment", func(t *testing.T) {
		// Not listed anywhere: a client that put its key in the URL.
		stray := newKey(t, "acme", "", "stray-bot")
		for _, target := range []string{"/docs/" + stray.Raw, "/files/" + stray.Raw + "/x?y=1", "/" + stray.Raw} {
			p.httpStatus(t, "GET", target, nil)
		}
		var lines []string
		poll(reloadDeadline, func() bool {
			lines = lines[:0]
			for _, l := range p.Out.Lines() {
				if strings.Contains(l, `"decision"`) && strings.Contains(l, stray.ID) {
					lines = append(lines, l)
				}
			}
			return len(lines) >= 3
		})
		if len(lines) < 3 {
			t.Fatalf("want 3 decision lines naming %s (its public id stays), got:\n%s", stray.ID, p.Out.Tail(10))
		}
		for _, l := range lines {
			if strings.Contains(l, stray.Raw) {
				t.Errorf("decision log shows the key from the path: %s", l)
			}
		}
	})

	if code, _ := p.Admin("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d, want 200 (the last good policy keeps serving)", code)
	}
}
