package harness

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// ZitadelOPVersion is the github.com/zitadel/oidc release whose example
// OpenID provider hack/build-zitadel-op.sh builds.
const ZitadelOPVersion = "v3.52.0"

// The example OP's own fixtures (example/server/storage in zitadel/oidc):
// web clients "web" and "api" share this secret, and its two users (the
// first named after the issuer's host) this password. Test data of someone
// else's program, never given to keygate.
const (
	ZitadelOPSecret   = "secret"
	ZitadelOPPassword = "verysecure"
	ZitadelOPUser1    = "test-user@localhost"
	ZitadelOPUser2    = "test-user2"
)

// FindZitadelOP returns the example OP that hack/build-zitadel-op.sh built
// into ${KEYGATE_CACHE:-~/.cache/keygate}/zitadel-op-VERSION/bin; the error
// says how to get it.
func FindZitadelOP() (string, error) {
	cache := os.Getenv("KEYGATE_CACHE")
	if cache == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(home, ".cache", "keygate")
	}
	bin := filepath.Join(cache, "zitadel-op-"+ZitadelOPVersion, "bin", "zitadel-op")
	if _, err := os.Stat(bin); err != nil {
		return "", fmt.Errorf("missing %s: run `bash hack/build-zitadel-op.sh` (builds zitadel/oidc %s's example OpenID provider, about a minute; `make test-deps` runs it)",
			bin, ZitadelOPVersion)
	}
	return bin, nil
}

// OIDCProvider is zitadel/oidc's example OpenID provider run as a process:
// an OP that someone else wrote, whose RS256 ID tokens come from its own
// endpoints through the authorization-code flow.
type OIDCProvider struct {
	Issuer      string // http://localhost:PORT/, exactly as its tokens' iss says
	JWKSURL     string // from its discovery document
	RedirectURI string // registered for its clients; never visited

	authorizeURL, tokenURL string
}

// ZitadelOP starts the example OP on a free port until the test ends and
// waits for its discovery document. Without the binary the test is skipped
// (fails under CI=true); KEYGATE_SKIP_OIDC=1 always skips.
func ZitadelOP(t testing.TB) *OIDCProvider {
	t.Helper()
	if os.Getenv("KEYGATE_SKIP_OIDC") == "1" {
		t.Skip("KEYGATE_SKIP_OIDC=1: not running the OpenID provider")
	}
	bin, err := FindZitadelOP()
	if err != nil {
		Missing(t, err.Error())
	}
	// The redirect URI only has to be registered: the code is read from the
	// Location header that points there.
	op := &OIDCProvider{RedirectURI: "http://127.0.0.1:9/keygate-test/callback"}
	Retry(t, "zitadel-op", func() (*Process, error) {
		addr, err := FreeAddr()
		if err != nil {
			return nil, err
		}
		_, port, _ := strings.Cut(addr, ":")
		// It listens on every interface and names itself localhost:PORT.
		op.Issuer = "http://localhost:" + port + "/"
		cmd := exec.Command(bin)
		cmd.Env = []string{"PORT=" + port, "REDIRECT_URI=" + op.RedirectURI}
		p, err := StartProcess("zitadel-op", cmd)
		if err != nil {
			return nil, err
		}
		return p, p.WaitUntil(15*time.Second, op.discover)
	}).StopAtCleanup(t, 5*time.Second)
	return op
}

// discover reads the discovery document: it answers once the OP serves,
// and names the endpoints the login uses.
func (o *OIDCProvider) discover() error {
	var doc struct {
		Issuer                string `json:"issuer"`
		AuthorizationEndpoint string `json:"authorization_endpoint"`
		TokenEndpoint         string `json:"token_endpoint"`
		JWKSURI               string `json:"jwks_uri"`
	}
	resp, err := probeClient.Get(o.Issuer + ".well-known/openid-configuration")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		return fmt.Errorf("discovery document: %w", err)
	}
	if doc.Issuer != o.Issuer || doc.AuthorizationEndpoint == "" || doc.TokenEndpoint == "" || doc.JWKSURI == "" {
		return fmt.Errorf("discovery document names issuer %q, endpoints %q %q %q", doc.Issuer,
			doc.AuthorizationEndpoint, doc.TokenEndpoint, doc.JWKSURI)
	}
	o.authorizeURL, o.tokenURL, o.JWKSURL = doc.AuthorizationEndpoint, doc.TokenEndpoint, doc.JWKSURI
	return nil
}

// OIDCTokens are what the token endpoint answered after a login.
type OIDCTokens struct {
	IDToken     string         // a JWT signed by the OP
	AccessToken string         // the example OP's is opaque (encrypted), not a JWT
	Kid         string         // the ID token's key id
	Claims      map[string]any // the ID token's claims as sent, not verified here
}

var (
	loginFormID     = regexp.MustCompile(`<input type="hidden" name="id" value="([^"]*)">`)
	loginFormAction = regexp.MustCompile(`<form method="POST" action="([^"]*)"`)
)

// Login signs user in at the OP as a browser would, for client clientID
// ("web" or "api"): the authorization request (with state, nonce and PKCE),
// the OP's login form, the redirect back carrying the code, and the code
// exchanged at the token endpoint with the client's secret. The tokens are
// registered as secrets (RegisterSecret). The test fails at any step that
// does not go as the OP's own flow says.
func (o *OIDCProvider) Login(t testing.TB, clientID, user, password string) OIDCTokens {
	t.Helper()
	tok, err := o.login(clientID, user, password)
	if err != nil {
		t.Fatalf("login of %s at the OP for client %s: %v", user, clientID, err)
	}
	return tok
}

func (o *OIDCProvider) login(clientID, user, password string) (OIDCTokens, error) {
	jar, _ := cookiejar.New(nil)
	client := &http.Client{
		Timeout:       5 * time.Second,
		Jar:           jar,
		Transport:     &http.Transport{Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	state, nonce, verifier := randomHex(16), randomHex(16), randomHex(32)
	challenge := sha256.Sum256([]byte(verifier))
	q := url.Values{
		"client_id": {clientID}, "redirect_uri": {o.RedirectURI}, "response_type": {"code"},
		"scope": {"openid profile email"}, "state": {state}, "nonce": {nonce},
		"code_challenge": {base64.RawURLEncoding.EncodeToString(challenge[:])}, "code_challenge_method": {"S256"},
	}

	// The authorization request sends the browser to the login page.
	loc, err := redirect(client, o.authorizeURL+"?"+q.Encode())
	if err != nil {
		return OIDCTokens{}, fmt.Errorf("authorization request: %w", err)
	}
	resp, err := client.Get(loc.String())
	if err != nil {
		return OIDCTokens{}, fmt.Errorf("login page: %w", err)
	}
	page, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		return OIDCTokens{}, fmt.Errorf("login page %s: %s %v", loc, resp.Status, err)
	}
	id, action := loginFormID.FindSubmatch(page), loginFormAction.FindSubmatch(page)
	if id == nil || action == nil {
		return OIDCTokens{}, fmt.Errorf("login page %s has no form with a request id:\n%s", loc, page)
	}
	formURL, err := loc.Parse(html.UnescapeString(string(action[1])))
	if err != nil {
		return OIDCTokens{}, err
	}

	// The form, then the OP's callback, which redirects to the client.
	resp, err = client.PostForm(formURL.String(), url.Values{
		"id": {html.UnescapeString(string(id[1]))}, "username": {user}, "password": {password},
	})
	if err != nil {
		return OIDCTokens{}, fmt.Errorf("login form: %w", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		return OIDCTokens{}, fmt.Errorf("login form answered %s (wrong user or password?): %s", resp.Status, body)
	}
	callback, err := formURL.Parse(resp.Header.Get("Location"))
	if err != nil {
		return OIDCTokens{}, err
	}
	back, err := redirect(client, callback.String())
	if err != nil {
		return OIDCTokens{}, fmt.Errorf("login callback: %w", err)
	}
	if !strings.HasPrefix(back.String(), o.RedirectURI+"?") {
		return OIDCTokens{}, fmt.Errorf("login callback redirects to %s, not the client's redirect URI", back.Redacted())
	}
	if got := back.Query().Get("state"); got != state {
		return OIDCTokens{}, fmt.Errorf("the redirect carries state %q, want %q", got, state)
	}
	code := back.Query().Get("code")
	if code == "" {
		return OIDCTokens{}, fmt.Errorf("the redirect carries no code: error %q %q", back.Query().Get("error"), back.Query().Get("error_description"))
	}
	RegisterSecret(code, "authorization code from the OP for "+user)

	// The code for tokens, with the client's secret (HTTP Basic).
	req, err := http.NewRequest(http.MethodPost, o.tokenURL, strings.NewReader(url.Values{
		"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {o.RedirectURI}, "code_verifier": {verifier},
	}.Encode()))
	if err != nil {
		return OIDCTokens{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(clientID, ZitadelOPSecret)
	resp, err = client.Do(req)
	if err != nil {
		return OIDCTokens{}, fmt.Errorf("token request: %w", err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return OIDCTokens{}, fmt.Errorf("token endpoint answered %s: %s", resp.Status, body)
	}
	var answer struct {
		IDToken     string `json:"id_token"`
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(body, &answer); err != nil || answer.IDToken == "" {
		return OIDCTokens{}, fmt.Errorf("token endpoint answer has no id_token (%v)", err)
	}
	RegisterSecret(answer.IDToken, "ID token from the OP for "+user)
	RegisterSecret(answer.AccessToken, "access token from the OP for "+user)

	tok := OIDCTokens{IDToken: answer.IDToken, AccessToken: answer.AccessToken}
	parts := strings.Split(answer.IDToken, ".")
	if len(parts) != 3 {
		return OIDCTokens{}, fmt.Errorf("the ID token has %d segments, want 3", len(parts))
	}
	var header struct {
		Kid string `json:"kid"`
	}
	if err := decodeSegment(parts[0], &header); err != nil {
		return OIDCTokens{}, fmt.Errorf("ID token header: %w", err)
	}
	if err := decodeSegment(parts[1], &tok.Claims); err != nil {
		return OIDCTokens{}, fmt.Errorf("ID token claims: %w", err)
	}
	tok.Kid = header.Kid
	if tok.Claims["nonce"] != nonce {
		return OIDCTokens{}, fmt.Errorf("the ID token carries nonce %v, want the request's", tok.Claims["nonce"])
	}
	return tok, nil
}

// redirect GETs u and returns where its 302 points, resolved against u.
func redirect(client *http.Client, u string) (*url.URL, error) {
	resp, err := client.Get(u)
	if err != nil {
		return nil, err
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return nil, fmt.Errorf("answered %s, want a redirect: %s", resp.Status, body)
	}
	return resp.Request.URL.Parse(resp.Header.Get("Location"))
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
