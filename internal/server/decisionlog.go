package server

import (
	"fmt"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
)

// DecisionLogMode says which decisions are logged.
type DecisionLogMode uint8

const (
	LogDenied DecisionLogMode = iota // denials and shadow-mode would-be denials
	LogAll
	LogOff
)

// ParseDecisionLogMode reads the --decision-log flag.
func ParseDecisionLogMode(s string) (DecisionLogMode, error) {
	switch s {
	case "denied":
		return LogDenied, nil
	case "all":
		return LogAll, nil
	case "off":
		return LogOff, nil
	}
	return 0, fmt.Errorf("decision log must be all, denied or off, not %q", s)
}

// DecisionLog writes one structured line per decision. It names key and
// session ids and the user, never a key, a token or a query string.
type DecisionLog struct {
	log  *zap.Logger
	mode DecisionLogMode
}

// NewDecisionLog returns a decision log writing to log.
func NewDecisionLog(log *zap.Logger, mode DecisionLogMode) *DecisionLog {
	return &DecisionLog{log: log.Named("decision"), mode: mode}
}

// entry is what an adapter knows about one check besides the decision.
type entry struct {
	transport string
	id        string
	method    string
	path      string
	source    string
	start     time.Time
}

func (l *DecisionLog) wants(d *authz.Decision) bool {
	switch l.mode {
	case LogAll:
		return true
	case LogDenied:
		return d.Result != authz.Allow || d.Shadowed
	}
	return false
}

func (l *DecisionLog) write(d *authz.Decision, e entry) {
	l.log.Info("decision",
		zap.String("decision_id", e.id),
		zap.String("transport", e.transport),
		zap.String("result", d.Outcome()),
		zap.Int("status", d.Status),
		zap.String("reason", d.Reason.String()),
		zap.String("endpoint", d.EndpointName()),
		zap.String("key_id", d.KeyID()),
		zap.String("session_id", d.SessionID()),
		zap.String("user", d.User()),
		zap.String("tenant", d.Tenant),
		zap.String("org", d.Org),
		zap.String("method", bound(e.method, 32)),
		zap.String("path", logPath(e.path)),
		zap.String("source", e.source),
		zap.Duration("latency", time.Since(e.start)),
	)
}

// logPath drops the query string (it may carry secrets), replaces a keygate
// key a client put in a path segment by its public id, and bounds the
// length: redacting first, so the cut cannot leave the start of a key that
// the logger's own redaction would no longer recognize. A key made elsewhere
// cannot be told from any other segment and is logged as the client sent it.
func logPath(p string) string {
	if i := strings.IndexAny(p, "?#"); i >= 0 {
		p = p[:i]
	}
	return bound(apikey.Redact(p), 256)
}

// bound cuts a value the client chose to at most n bytes.
func bound(s string, n int) string {
	if len(s) > n {
		return s[:n] + "..."
	}
	return s
}
