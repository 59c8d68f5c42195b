// Package logging holds the one place every line keygate prints passes
// through on its way out: the whole encoded line (message, fields, errors,
// a logger's context, the decision log) is scanned for keygate keys, and
// any that verifies is replaced by its public id (apikey.Redact). Whatever
// put a key into a message, it never reaches the output.
package logging

import (
	"io"

	"go.uber.org/zap/buffer"
	"go.uber.org/zap/zapcore"

	"github.com/keygate/keygate/internal/apikey"
)

// Redacting wraps a zap encoder so that every line it encodes is redacted.
// Scanning the finished line, rather than each field, covers what zap
// formats itself (errors, stringers, reflected values) too. A line without
// a key costs one scan and no allocation.
func Redacting(enc zapcore.Encoder) zapcore.Encoder { return redacting{enc} }

type redacting struct{ zapcore.Encoder }

// Clone keeps the wrapper on loggers made With fields.
func (r redacting) Clone() zapcore.Encoder { return redacting{r.Encoder.Clone()} }

func (r redacting) EncodeEntry(ent zapcore.Entry, fields []zapcore.Field) (*buffer.Buffer, error) {
	buf, err := r.Encoder.EncodeEntry(ent, fields)
	if err != nil || !apikey.HasKey(buf.Bytes()) {
		return buf, err
	}
	red := apikey.RedactBytes(buf.Bytes())
	buf.Reset()
	_, _ = buf.Write(red)
	return buf, nil
}

// Writer returns w with every write redacted, for the tools' output. Each
// fmt.Fprint and json.Encoder.Encode is one write, so a key printed by one
// call is seen whole.
func Writer(w io.Writer) io.Writer { return redactingWriter{w} }

type redactingWriter struct{ w io.Writer }

func (r redactingWriter) Write(p []byte) (int, error) {
	if _, err := r.w.Write(apikey.RedactBytes(p)); err != nil {
		return 0, err
	}
	return len(p), nil
}
