package server

import (
	"bytes"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/logging"
	"github.com/keygate/keygate/internal/policy"
)

// jsonLogger logs as keygate serve does (JSON, info) to w, through the
// redacting encoder when redact is set.
func jsonLogger(w io.Writer, redact bool) *zap.Logger {
	cfg := zap.NewProductionEncoderConfig()
	cfg.EncodeTime = zapcore.ISO8601TimeEncoder
	enc := zapcore.NewJSONEncoder(cfg)
	if redact {
		enc = logging.Redacting(enc)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.AddSync(w), zapcore.InfoLevel))
}

func deniedByKey() *authz.Decision {
	return &authz.Decision{Result: authz.Deny, Status: 403, Reason: authz.ReasonOrgDenied,
		Key: &policy.Principal{ID: "kg_7Hq2pXa1", User: "api-bot", Tenant: "acme"}, Tenant: "acme"}
}

// A key a client put in the path is logged by its id only, even where the
// path is cut to its bound: the cut must not leave the start of the key
// for the logger's redaction to miss.
func TestDecisionLogRedactsKeysInPath(t *testing.T) {
	key, err := apikey.New("kg_stray001")
	if err != nil {
		t.Fatal(err)
	}
	secret := key[len("kg_stray001_"):]
	for _, path := range []string{
		"/files/" + key + "/x",
		"/files/" + key + "?key=" + key,
		"/" + strings.Repeat("a", 230) + "/" + key, // the bound falls inside the key
		"/" + strings.Repeat("a", 200) + "/" + key + "/" + key,
	} {
		var buf bytes.Buffer
		NewDecisionLog(jsonLogger(&buf, false), LogAll).write(deniedByKey(), entry{transport: "grpc", id: "req-1", method: "GET", path: path, start: time.Now()})
		line := buf.String()
		for n := 8; n <= len(secret); n += 8 {
			if strings.Contains(line, secret[:n]) {
				t.Errorf("path %.40q...: the log shows %d characters of the key's secret: %s", path, n, line)
				break
			}
		}
		if !strings.Contains(line, "kg_stray001"+apikey.Redacted) {
			t.Errorf("path %.40q...: the log does not name the key's id: %s", path, line)
		}
	}
}

// BenchmarkDecisionLog is one decision log line as keygate serve writes it,
// with and without the redacting encoder: the line names a key id, so the
// redaction checks one candidate; with a key in the path it rewrites the
// line.
func BenchmarkDecisionLog(b *testing.B) {
	key, err := apikey.New("kg_stray001")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name, path string
		redact     bool
	}{
		{"plain", "/orgs/acme-eu/sales/q1", false},
		{"redacting", "/orgs/acme-eu/sales/q1", true},
		{"redacting/key_in_path", "/files/" + key, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := NewDecisionLog(jsonLogger(io.Discard, bc.redact), LogAll)
			d := deniedByKey()
			e := entry{transport: "grpc", id: "8b1f9a0c", method: "GET", path: bc.path, source: "10.0.0.1", start: time.Now()}
			b.ReportAllocs()
			for b.Loop() {
				l.write(d, e)
			}
		})
	}
}
