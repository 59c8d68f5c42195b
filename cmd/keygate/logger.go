package main

import (
	"fmt"
	"io"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/keygate/keygate/internal/logging"
)

// newLogger builds keygate serve's logger. Every line goes through the
// redacting encoder: a keygate key that reaches a message or a field (a
// policy value quoted in an error, a path in the decision log) is printed
// as its public id only.
func newLogger(format, level string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	enc := zap.NewProductionEncoderConfig()
	enc.TimeKey = "time"
	enc.EncodeTime = zapcore.ISO8601TimeEncoder
	var encoder zapcore.Encoder
	switch format {
	case "json":
		encoder = zapcore.NewJSONEncoder(enc)
	case "console":
		enc.EncodeLevel = zapcore.CapitalLevelEncoder
		encoder = zapcore.NewConsoleEncoder(enc)
	default:
		return nil, fmt.Errorf("--log-format must be json or console, not %q", format)
	}
	core := zapcore.NewCore(logging.Redacting(encoder), zapcore.Lock(zapcore.AddSync(w)), lvl)
	return zap.New(core), nil
}
