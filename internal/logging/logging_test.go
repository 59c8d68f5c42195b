package logging

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keygate/keygate/internal/apikey"
)

type holder struct{ Token string }

// Wherever a key enters a log line (message, string field, error, a
// logger's context, a reflected value, the standard library's logger),
// only its id comes out, in both formats.
func TestRedactingEncoder(t *testing.T) {
	key, err := apikey.New("kg_7Hq2pXa1")
	if err != nil {
		t.Fatal(err)
	}
	const id = "kg_7Hq2pXa1" + apikey.Redacted
	logs := map[string]func(l *zap.Logger){
		"message": func(l *zap.Logger) { l.Info("policy reload refused: " + key) },
		"string":  func(l *zap.Logger) { l.Info("decision", zap.String("path", "/files/"+key)) },
		"error": func(l *zap.Logger) {
			l.Error("policy reload refused", zap.Error(fmt.Errorf("policy.yaml:3: %w", errors.New(key))))
		},
		"context":   func(l *zap.Logger) { l.With(zap.String("source", key)).Named("policy").Info("loaded") },
		"reflected": func(l *zap.Logger) { l.Info("value", zap.Any("v", holder{key})) },
		"stdlib":    func(l *zap.Logger) { zap.NewStdLog(l).Printf("http: TLS handshake error from %s", key) },
	}
	for _, format := range []string{"json", "console"} {
		cfg := zap.NewProductionEncoderConfig()
		var enc zapcore.Encoder = zapcore.NewJSONEncoder(cfg)
		if format == "console" {
			enc = zapcore.NewConsoleEncoder(cfg)
		}
		for name, log := range logs {
			t.Run(format+"/"+name, func(t *testing.T) {
				var buf bytes.Buffer
				log(zap.New(zapcore.NewCore(Redacting(enc), zapcore.AddSync(&buf), zapcore.DebugLevel)))
				if out := buf.String(); strings.Contains(out, key) || !strings.Contains(out, id) {
					t.Errorf("want the key as %s only:\n%s", id, out)
				}
			})
		}
	}
}

func TestWriter(t *testing.T) {
	key, err := apikey.New("kg_7Hq2pXa1")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w := Writer(&buf)
	msg := "keygate: policy.yaml:3: api_keys[0].expires_at: \"" + key + "\" is not a time\n"
	if n, err := fmt.Fprint(w, msg); err != nil || n != len(msg) {
		t.Errorf("Fprint = %d, %v; want %d, nil (the bytes given, as io.Writer promises)", n, err, len(msg))
	}
	if want := strings.Replace(msg, key, "kg_7Hq2pXa1"+apikey.Redacted, 1); buf.String() != want {
		t.Errorf("wrote %q, want %q", buf.String(), want)
	}
}

// A line that names key ids but holds no key is written as encoded, with
// no allocation beyond the encoder's.
func TestRedactingEncoderAllocations(t *testing.T) {
	cfg := zap.NewProductionEncoderConfig()
	plain := zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(cfg), zapcore.AddSync(&bytes.Buffer{}), zapcore.InfoLevel))
	red := zap.New(zapcore.NewCore(Redacting(zapcore.NewJSONEncoder(cfg)), zapcore.AddSync(&bytes.Buffer{}), zapcore.InfoLevel))
	line := func(l *zap.Logger) func() {
		return func() { l.Info("decision", zap.String("key_id", "kg_7Hq2pXa1"), zap.String("path", "/orgs/acme-eu/x")) }
	}
	if p, r := testing.AllocsPerRun(100, line(plain)), testing.AllocsPerRun(100, line(red)); r != p {
		t.Errorf("redacting encoder: %v allocations a line, plain: %v", r, p)
	}
}
