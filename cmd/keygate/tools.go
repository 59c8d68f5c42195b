package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/policyedit"
)

// exitError ends keygate with a specific exit code (check: 3 when the
// policy cannot be loaded) after printing err like any other error.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// command is one tool subcommand: its flags and its usage line.
type command struct {
	fs     *flag.FlagSet
	usage  string // "keygate keys create --tenant T [flags]"
	stderr io.Writer
}

func newCommand(name, usage string, stderr io.Writer) *command {
	fset := flag.NewFlagSet(name, flag.ContinueOnError)
	fset.SetOutput(stderr)
	fset.Usage = func() {
		fmt.Fprintf(stderr, "usage: %s\n\nFlags (each also read from KEYGATE_<FLAG> in the environment):\n", usage)
		fset.PrintDefaults()
	}
	return &command{fs: fset, usage: usage, stderr: stderr}
}

// parse reads flags placed before, between or after the positional
// arguments, which it returns; then it fills unset flags from KEYGATE_*.
func (c *command) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := c.fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, errUsage
		}
		if c.fs.NArg() == 0 {
			break
		}
		pos = append(pos, c.fs.Arg(0))
		args = c.fs.Args()[1:]
	}
	return pos, parseFlags(c.fs, nil)
}

// fail reports a usage mistake with the usage line; keygate exits 2.
func (c *command) fail(format string, args ...any) error {
	fmt.Fprintf(c.stderr, "%s: %s\nusage: %s\nRun '%s -h' for the flags.\n",
		c.fs.Name(), fmt.Sprintf(format, args...), c.usage, c.fs.Name())
	return errUsage
}

// multiFlag collects a flag given several times (-H, --context).
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ", ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// listFlag splits "a,b" into its items, dropping blanks.
func listFlag(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

var daysRe = regexp.MustCompile(`^(\d+)d(.*)$`)

// parseLifetime reads a Go duration that may start with whole days: 90d,
// 1d12h, 8h, 30m.
func parseLifetime(s string) (time.Duration, error) {
	var days time.Duration
	if m := daysRe.FindStringSubmatch(s); m != nil {
		n, err := strconv.Atoi(m[1])
		if err != nil || n > 100*366 {
			return 0, fmt.Errorf("%q: too many days", s)
		}
		days = time.Duration(n) * 24 * time.Hour
		if s = m[2]; s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is neither a duration such as 90d, 36h or 1h30m nor an RFC 3339 time", s)
	}
	return days + d, nil
}

// parseExpiry reads --expires: a lifetime from now (90d, 36h), an RFC 3339
// time or a date. The result is in the future, in UTC, to the second.
func parseExpiry(s string, now time.Time) (time.Time, error) {
	var at time.Time
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		at = t
	} else if t, err := time.Parse("2006-01-02", s); err == nil {
		at = t
	} else {
		d, err := parseLifetime(s)
		if err != nil {
			return time.Time{}, err
		}
		at = now.Add(d)
	}
	at = at.UTC().Truncate(time.Second)
	if !at.After(now) {
		return time.Time{}, fmt.Errorf("%s is not in the future", at.Format(time.RFC3339))
	}
	return at, nil
}

// now is the tools' clock: UTC, to the second, as the policy writes times.
func now() time.Time { return time.Now().UTC().Truncate(time.Second) }

func timestamp(t time.Time) *policy.Timestamp { return &policy.Timestamp{Time: t} }

// newCredential makes a fresh key or session token in keygate's format and
// the digest the policy lists for it.
func newCredential() (id, secret, hash string, err error) {
	if id, err = apikey.NewID(); err != nil {
		return "", "", "", err
	}
	if secret, err = apikey.New(id); err != nil {
		return "", "", "", err
	}
	return id, secret, policy.FormatDigest(apikey.Digest(secret)), nil
}

// editError makes policyedit's refusals read as one message.
func editError(path string, err error) error {
	var nf *policyedit.NotFoundError
	if errors.As(err, &nf) {
		return fmt.Errorf("%s: %w", path, err)
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("policy %s: %w", pe.Path, pe.Err)
	}
	return err
}

// maskCredential hides a credential value for display: a keygate key keeps
// its public id (kg_7Hq2pXa1_***), anything else becomes ***.
func maskCredential(v string) string {
	if id, _, valid := apikey.Check(v); valid {
		return id + "_***"
	}
	return "***"
}

// notef writes a note for people to stderr; stdout is for what scripts read.
func notef(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, format+"\n", args...)
}

const shownOnce = "It is shown only this once: keygate keeps only its SHA-256. Store it in your secret manager now."

// count writes "1 key", "3 keys".
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
