package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestSyntaxErrorLines breaks the example policy one line at a time, in the
// ways people do, and checks that the error names that line: the fixtures
// in testdata/bad hold one case per kind, this holds every line.
func TestSyntaxErrorLines(t *testing.T) {
	data, err := os.ReadFile(examplePolicy)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	indent := func(s string) int { return len(s) - len(strings.TrimLeft(s, " ")) }
	content := func(s string) bool {
		s = strings.TrimSpace(s)
		return s != "" && !strings.HasPrefix(s, "#")
	}
	// Each breaks line i, or returns "" where that would not be a syntax
	// error on that line (a dedented first child just starts a block).
	breaks := map[string]func(i int) string{
		// A line indented one space less than the sibling before it.
		"dedent": func(i int) string {
			l := lines[i]
			prev := i - 1
			for prev >= 0 && !content(lines[prev]) {
				prev--
			}
			if !content(l) || indent(l) == 0 || prev < 0 || indent(lines[prev]) != indent(l) || strings.HasPrefix(strings.TrimSpace(lines[prev]), "- ") {
				return ""
			}
			return l[1:]
		},
		// A line indented one space more than the one before it.
		"indent": func(i int) string {
			if !content(lines[i]) || i == 0 || !content(lines[i-1]) || strings.HasSuffix(strings.TrimSpace(lines[i-1]), ":") || indent(lines[i-1]) != indent(lines[i]) {
				return ""
			}
			return " " + lines[i]
		},
		// A tab where the indentation starts.
		"tab": func(i int) string {
			if !content(lines[i]) || indent(lines[i]) == 0 {
				return ""
			}
			return "\t" + lines[i][1:]
		},
		// A closing quote left out.
		"quote": func(i int) string {
			j := strings.LastIndex(lines[i], `"`)
			if !content(lines[i]) || j < 0 {
				return ""
			}
			return lines[i][:j] + lines[i][j+1:]
		},
		// A closing bracket left out.
		"bracket": func(i int) string {
			j := strings.LastIndexAny(lines[i], "]}")
			if !content(lines[i]) || j < 0 {
				return ""
			}
			return lines[i][:j] + lines[i][j+1:]
		},
	}
	tried := map[string]int{}
	for kind, breakLine := range breaks {
		for i := range lines {
			broken := breakLine(i)
			if broken == "" {
				continue
			}
			tried[kind]++
			text := strings.Join(lines[:i], "") + broken + strings.Join(lines[i+1:], "")
			t.Run(fmt.Sprintf("%s line %d", kind, i+1), func(t *testing.T) {
				_, err := Parse("p.yaml", []byte(text))
				var es Errors
				if !errors.As(err, &es) || len(es) != 1 {
					t.Fatalf("want one error, got %v\n%s", err, broken)
				}
				if es[0].Line != i+1 {
					t.Errorf("%v: want line %d, %q", es[0], i+1, broken)
				}
			})
		}
	}
	for kind := range breaks {
		if tried[kind] < 5 {
			t.Errorf("%s: only %d lines broken; the example policy changed?", kind, tried[kind])
		}
	}
}

// TestJSONSyntaxErrorLines does the same to the example policy written as
// indented JSON: the error names the line to fix.
func TestJSONSyntaxErrorLines(t *testing.T) {
	frag, err := Parse(examplePolicy, mustRead(t, examplePolicy))
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.MarshalIndent(frag.Doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Parse("p.json", data); err != nil {
		t.Fatalf("the example as JSON: %v", err)
	}
	lines := strings.SplitAfter(string(data), "\n")
	next := func(i int) string {
		if i+1 < len(lines) {
			return strings.TrimSpace(lines[i+1])
		}
		return ""
	}
	breaks := map[string]func(i int) string{
		// A comma left out between two members or elements.
		"missing comma": func(i int) string {
			if l := strings.TrimRight(lines[i], "\n"); strings.HasSuffix(l, ",") {
				return strings.TrimSuffix(l, ",") + "\n"
			}
			return ""
		},
		// A comma after the last member or element.
		"trailing comma": func(i int) string {
			l := strings.TrimRight(lines[i], "\n")
			if n := next(i); (strings.HasPrefix(n, "]") || strings.HasPrefix(n, "}")) && !strings.HasSuffix(l, ",") && !strings.HasSuffix(l, "[") && !strings.HasSuffix(l, "{") {
				return l + ",\n"
			}
			return ""
		},
		// A string whose closing quote is left out.
		"open string": func(i int) string {
			l := strings.TrimRight(lines[i], ",\n")
			if strings.HasSuffix(l, `"`) && strings.Count(l, `"`) >= 2 {
				return strings.TrimSuffix(l, `"`) + strings.TrimPrefix(strings.TrimRight(lines[i], "\n"), l) + "\n"
			}
			return ""
		},
	}
	tried := map[string]int{}
	for kind, breakLine := range breaks {
		for i := range lines {
			broken := breakLine(i)
			if broken == "" {
				continue
			}
			tried[kind]++
			text := strings.Join(lines[:i], "") + broken + strings.Join(lines[i+1:], "")
			t.Run(fmt.Sprintf("%s line %d", kind, i+1), func(t *testing.T) {
				_, err := Parse("p.json", []byte(text))
				var es Errors
				if !errors.As(err, &es) || len(es) != 1 {
					t.Fatalf("want one error, got %v\n%s", err, broken)
				}
				if es[0].Line != i+1 {
					t.Errorf("%v: want line %d, %q", es[0], i+1, broken)
				}
			})
		}
	}
	for kind := range breaks {
		if tried[kind] < 5 {
			t.Errorf("%s: only %d lines broken; the example policy changed?", kind, tried[kind])
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
