// Command keygate is an Envoy external authorization service for API keys,
// sessions, access groups and tenant/organization scopes.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/logging"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `keygate: Envoy external authorization for API keys and sessions

Usage:
  keygate serve --policy FILE|DIR [flags]   serve ext_authz (gRPC :9001, HTTP :9002, admin :9003)
  keygate serve --kube-namespace NS --kube-selector LABELS [flags]
                                            the same, with the policy from ConfigMaps
  keygate keys create|import|list|revoke|rotate [flags]
                                            make and manage API keys in a policy file
  keygate sessions create|revoke [flags]    make and revoke session tokens
  keygate policy validate FILE|DIR...       validate policies with file:line errors (for CI)
  keygate check --policy FILE --method M --path P [-H 'Name: value']...
                                            decide one request and explain why (exit 0 allow, 1 deny)
  keygate version                           print the version

Run 'keygate COMMAND -h' for a command's flags. Every flag can also be set with
KEYGATE_<FLAG> in the environment, e.g. KEYGATE_POLICY=/etc/keygate/policy.yaml.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	// No keygate key is printed except the one keys and sessions create to
	// hand over on stdout: serve's log redacts each line itself, every other
	// output is redacted as it is written.
	if args[0] != "serve" {
		stderr = logging.Writer(stderr)
	}
	switch args[0] {
	case "serve":
		err = serve(args[1:], stderr)
	case "keys":
		err = keysCmd(args[1:], os.Stdin, stdout, stderr)
	case "sessions":
		err = sessionsCmd(args[1:], stdout, stderr)
	case "policy":
		err = policyCmd(args[1:], logging.Writer(stdout), stderr)
	case "check":
		err = check(args[1:], logging.Writer(stdout), stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "keygate %s\n", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "keygate: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		return 2
	}
	fmt.Fprintf(stderr, "keygate: %s\n", apikey.Redact(err.Error()))
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return 1
}

// errUsage means the flag package already told the user what was wrong.
var errUsage = errors.New("usage")

// parseFlags parses args, then fills every flag not given on the command line
// from KEYGATE_<FLAG> (upper case, '-' as '_').
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		env := "KEYGATE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if serr := fs.Set(f.Name, v); serr != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, serr)
			}
		}
	})
	return err
}
