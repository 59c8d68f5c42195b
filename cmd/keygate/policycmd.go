package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/keygate/keygate/internal/policy"
)

const policyUsage = `usage: keygate policy COMMAND [flags]

Commands:
  validate [--format text|json] FILE|DIR...
      compile each policy as keygate serve would; exit 0 when all are valid,
      1 otherwise, with every problem as file:line: path: message

Run 'keygate policy COMMAND -h' for a command's flags.
`

func policyCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return errUsage
	}
	switch args[0] {
	case "validate":
		return policyValidate(args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, policyUsage)
		return nil
	}
	fmt.Fprintf(stderr, "keygate policy: unknown command %q\n\n%s", args[0], policyUsage)
	return errUsage
}

// problem is one error of a validated input, for --format json.
type problem struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Path    string `json:"path"`
	Message string `json:"message"`
}

type validated struct {
	Input  string    `json:"input"`
	OK     bool      `json:"ok"`
	Errors []problem `json:"errors"`
}

// validateOne loads one file or directory on its own, like keygate serve.
func validateOne(path string) (validated, policy.Counts) {
	v := validated{Input: path, Errors: []problem{}}
	snap, err := policy.LoadPath(path, policy.Options{})
	if err == nil {
		v.OK = true
		return v, snap.Counts()
	}
	var pe policy.Errors
	var pathErr *fs.PathError
	switch {
	case errors.As(err, &pe):
		for _, e := range pe {
			v.Errors = append(v.Errors, problem{File: e.File, Line: e.Line, Path: e.Path, Message: e.Msg})
		}
	case errors.As(err, &pathErr):
		v.Errors = append(v.Errors, problem{File: path, Message: pathErr.Err.Error()})
	default:
		v.Errors = append(v.Errors, problem{File: path, Message: err.Error()})
	}
	return v, policy.Counts{}
}

func policyValidate(args []string, stdout, stderr io.Writer) error {
	c := newCommand("keygate policy validate", "keygate policy validate [--format text|json] FILE|DIR...", stderr)
	format := c.fs.String("format", "text", "output: text (one problem a line) or json")
	inputs, err := c.parse(args)
	if err != nil {
		return err
	}
	if len(inputs) == 0 {
		return c.fail("name at least one policy file or directory")
	}
	if *format != "text" && *format != "json" {
		return c.fail("--format must be text or json, not %q", *format)
	}
	results := make([]validated, 0, len(inputs))
	bad := 0
	for _, in := range inputs {
		v, counts := validateOne(in)
		results = append(results, v)
		if !v.OK {
			bad++
		} else if *format == "text" {
			notef(stderr, "%s: ok (%s, %s, %s)", in, count(counts.Endpoints, "endpoint", "endpoints"),
				count(counts.APIKeys, "API key", "API keys"), count(counts.Sessions, "session", "sessions"))
		}
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(results); err != nil {
			return err
		}
	} else {
		for _, v := range results {
			for _, p := range v.Errors {
				e := policy.Error{File: p.File, Line: p.Line, Path: p.Path, Msg: p.Message}
				fmt.Fprintln(stdout, e.Error())
			}
		}
	}
	switch {
	case bad == 0:
		return nil
	case len(inputs) == 1:
		return fmt.Errorf("%s is not a valid policy", inputs[0])
	}
	if bad == 1 {
		return fmt.Errorf("1 of %d policies is not valid", len(inputs))
	}
	return fmt.Errorf("%d of %d policies are not valid", bad, len(inputs))
}
