package proxy

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// docsPath is the page that shows the tested configurations.
var docsPath = filepath.Join("..", "..", "docs", "proxies.md")

// docsConfig is how docs/proxies.md writes the addresses the tests fill in.
var docsConfig = map[string]proxyConfig{
	"nginx.conf.tmpl": {Listen: "80", Keygate: "keygate:9002", Backend: "backend:8000"},
	"Caddyfile.tmpl":  {Listen: "api.example.com", Keygate: "keygate:9002", Backend: "backend:8000"},
}

// TestDocsShowTestedConfigs keeps docs/proxies.md honest: the configuration
// it tells people to use is the one this suite runs, addresses aside.
func TestDocsShowTestedConfigs(t *testing.T) {
	docs, err := os.ReadFile(docsPath)
	if err != nil {
		t.Fatalf("%v (docs/proxies.md shows the proxy configurations tested here)", err)
	}
	for name, c := range docsConfig {
		want := docsExcerpt(t, name, string(fill(t, name, c)))
		if !strings.Contains(string(docs), want) {
			t.Errorf("docs/proxies.md does not show testdata/%s as tested; it must contain, verbatim:\n%s", name, want)
		}
	}
}

// docsExcerpt is the part of a rendered configuration the docs show: for
// nginx the upstreams and the server block (out of the http block, so
// dedented), for Caddy the snippet and the site.
func docsExcerpt(t *testing.T, name, conf string) string {
	t.Helper()
	switch name {
	case "nginx.conf.tmpl":
		i := strings.Index(conf, "    upstream keygate {")
		j := strings.LastIndex(conf, "}")
		if i < 0 || j < i {
			t.Fatalf("%s: no upstream keygate / closing brace", name)
		}
		var out strings.Builder
		for _, line := range strings.SplitAfter(conf[i:j], "\n") {
			out.WriteString(strings.TrimPrefix(line, "    "))
		}
		return out.String()
	case "Caddyfile.tmpl":
		i := strings.Index(conf, "# Caddy 2.6's copy_headers")
		if i < 0 {
			t.Fatalf("%s: no copy_headers note", name)
		}
		return conf[i:]
	}
	t.Fatalf("no excerpt rule for %s", name)
	return ""
}

// TestReadmeSnippetsAreTested: every line of README's nginx and Caddy
// snippets is a line of the configuration this suite runs (README shows a
// shortened version; docs/proxies.md the whole one).
func TestReadmeSnippetsAreTested(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	for fence, name := range map[string]string{"```nginx\n": "nginx.conf.tmpl", "```caddyfile\n": "Caddyfile.tmpl"} {
		i := bytes.Index(readme, []byte(fence))
		if i < 0 {
			t.Errorf("README has no %s snippet", strings.TrimSpace(fence))
			continue
		}
		snippet := readme[i+len(fence):]
		snippet = snippet[:bytes.Index(snippet, []byte("```"))]
		tested := map[string]bool{}
		for _, l := range strings.Split(string(fill(t, name, docsConfig[name])), "\n") {
			tested[strings.TrimSpace(l)] = true
		}
		for _, l := range strings.Split(string(snippet), "\n") {
			l = strings.TrimSpace(l)
			if l == "" || l == "}" || strings.HasPrefix(l, "#") {
				continue
			}
			if !tested[l] {
				t.Errorf("README's %s snippet has %q, which the tested %s does not", strings.TrimSpace(fence), l, name)
			}
		}
	}
}
