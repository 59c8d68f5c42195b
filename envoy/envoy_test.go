// Package envoy_test checks the Envoy configurations in this directory without
// an Envoy binary: each file is decoded strictly into go-control-plane's
// Bootstrap proto (unknown fields and unknown typed_config types fail, as they
// do in Envoy), validated with the API's protoc-gen-validate rules (inside
// every typed_config too), and then inspected for what keygate users rely on.
package envoy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/known/anypb"
	"gopkg.in/yaml.v3"
)

// Importing hcmv3, extauthzv3, routerv3 and upstreamhttpv3 registers every
// typed_config type the configs use (HttpConnectionManager, ExtAuthz,
// ExtAuthzPerRoute, Router, HttpProtocolOptions): protojson resolves "@type"
// through that registry and fails on any type not linked in. A new extension
// in a config needs its package imported here.

const (
	policyFile        = "../examples/policy.yaml"
	endpointExtension = "keygate_endpoint"
	http2OptionsKey   = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// kinds of ext_authz service.
const (
	kindGRPC = "grpc"
	kindHTTP = "http"
)

// Per file: the expected ext_authz service kind and keygate port.
var knownFiles = map[string]struct {
	kind string
	port uint32
}{
	"envoy-grpc.yaml":      {kindGRPC, 9001},
	"envoy-http.yaml":      {kindHTTP, 9002},
	"envoy-ratelimit.yaml": {kindGRPC, 9001}, // ratelimit_test.go checks the rest
}

// Headers keygate needs from the client request.
var credentialHeaders = []string{"authorization", "x-api-key", "session", "x-request-id", "x-org-id"}

// Identity headers keygate sets on an allowed request.
var identityHeaders = []string{
	"x-keygate-user", "x-keygate-tenant", "x-keygate-org", "x-keygate-key-id",
	"x-keygate-session-id", "x-keygate-groups", "x-keygate-auth", "x-keygate-endpoint",
}

// yamlToJSON converts one YAML document to JSON (what Envoy does with -c FILE).
func yamlToJSON(data []byte) ([]byte, error) {
	var doc any
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	v, err := jsonable(doc)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func jsonable(v any) (any, error) {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			c, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			out[k] = c
		}
		return out, nil
	case map[any]any:
		out := make(map[string]any, len(v))
		for k, e := range v {
			ks, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("non-string mapping key %v (%T)", k, k)
			}
			c, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			out[ks] = c
		}
		return out, nil
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			c, err := jsonable(e)
			if err != nil {
				return nil, err
			}
			out[i] = c
		}
		return out, nil
	case time.Time:
		return v.Format(time.RFC3339Nano), nil
	default:
		return v, nil
	}
}

// decode parses an Envoy YAML bootstrap strictly.
func decode(data []byte) (*bootstrapv3.Bootstrap, error) {
	j, err := yamlToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("yaml: %w", err)
	}
	bs := &bootstrapv3.Bootstrap{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(j, bs); err != nil {
		return nil, fmt.Errorf("protojson: %w", err)
	}
	return bs, nil
}

// eachMessage calls fn for m and every message nested in it, looking inside
// google.protobuf.Any (typed_config and friends) too. fromAny is true for m
// itself and for messages unpacked from an Any: ValidateAll on those covers
// everything, since protoc-gen-validate does not look inside Any.
func eachMessage(path string, m protoreflect.Message, fromAny bool, fn func(path string, m protoreflect.Message, fromAny bool) error) error {
	if err := fn(path, m, fromAny); err != nil {
		return err
	}
	if m.Descriptor().FullName() == "google.protobuf.Any" {
		a := m.Interface().(*anypb.Any)
		inner, err := a.UnmarshalNew()
		if err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		return eachMessage(path+"("+string(inner.ProtoReflect().Descriptor().FullName())+")", inner.ProtoReflect(), true, fn)
	}
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := path + "." + string(fd.Name())
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len() && err == nil; i++ {
				err = eachMessage(fmt.Sprintf("%s[%d]", p, i), l.Get(i).Message(), false, fn)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				err = eachMessage(fmt.Sprintf("%s[%v]", p, k.Interface()), mv.Message(), false, fn)
				return err == nil
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			err = eachMessage(p, v.Message(), false, fn)
		}
		return err == nil
	})
	return err
}

// validate runs the protoc-gen-validate rules on the bootstrap and inside every
// Any, and refuses deprecated fields and enum values (Envoy warns about them,
// and rejects some by default).
func validate(bs *bootstrapv3.Bootstrap) error {
	return eachMessage("bootstrap", bs.ProtoReflect(), true, func(path string, m protoreflect.Message, fromAny bool) error {
		if fromAny {
			v, ok := m.Interface().(interface{ ValidateAll() error })
			if !ok {
				return fmt.Errorf("%s: %s has no ValidateAll", path, m.Descriptor().FullName())
			}
			if err := v.ValidateAll(); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
		}
		var err error
		m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			if opts, ok := fd.Options().(*descriptorpb.FieldOptions); ok && opts.GetDeprecated() {
				err = fmt.Errorf("%s.%s: deprecated field", path, fd.Name())
				return false
			}
			if fd.Kind() == protoreflect.EnumKind && !fd.IsList() && !fd.IsMap() {
				ev := fd.Enum().Values().ByNumber(v.Enum())
				if ev != nil {
					if opts, ok := ev.Options().(*descriptorpb.EnumValueOptions); ok && opts.GetDeprecated() {
						err = fmt.Errorf("%s.%s: deprecated value %s", path, fd.Name(), ev.Name())
						return false
					}
				}
			}
			return true
		})
		return err
	})
}

// config is a decoded bootstrap with the parts keygate cares about.
type config struct {
	bs           *bootstrapv3.Bootstrap
	listenerPort uint32
	hcm          *hcmv3.HttpConnectionManager
	extAuthzName string // the HttpFilter name: key of typed_per_filter_config
	extAuthzAt   int
	routerAt     int
	extAuthz     *extauthzv3.ExtAuthz
	clusters     map[string]*clusterv3.Cluster
}

func unpack[T proto.Message](a *anypb.Any, into T) (T, error) {
	if a == nil {
		return into, fmt.Errorf("missing typed_config")
	}
	return into, a.UnmarshalTo(into)
}

func inspect(bs *bootstrapv3.Bootstrap) (*config, error) {
	c := &config{bs: bs, extAuthzAt: -1, routerAt: -1, clusters: map[string]*clusterv3.Cluster{}}
	for _, cl := range bs.GetStaticResources().GetClusters() {
		c.clusters[cl.GetName()] = cl
	}
	for _, l := range bs.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				if !f.GetTypedConfig().MessageIs(&hcmv3.HttpConnectionManager{}) {
					continue
				}
				if c.hcm != nil {
					return nil, fmt.Errorf("more than one http_connection_manager")
				}
				hcm, err := unpack(f.GetTypedConfig(), &hcmv3.HttpConnectionManager{})
				if err != nil {
					return nil, err
				}
				c.hcm = hcm
				c.listenerPort = l.GetAddress().GetSocketAddress().GetPortValue()
			}
		}
	}
	if c.hcm == nil {
		return nil, fmt.Errorf("no http_connection_manager")
	}
	for i, f := range c.hcm.GetHttpFilters() {
		switch {
		case f.GetTypedConfig().MessageIs(&extauthzv3.ExtAuthz{}):
			if c.extAuthz != nil {
				return nil, fmt.Errorf("more than one ext_authz filter")
			}
			ea, err := unpack(f.GetTypedConfig(), &extauthzv3.ExtAuthz{})
			if err != nil {
				return nil, err
			}
			c.extAuthz, c.extAuthzName, c.extAuthzAt = ea, f.GetName(), i
		case f.GetTypedConfig().MessageIs(&routerv3.Router{}):
			c.routerAt = i
		}
	}
	return c, nil
}

// problems collects what is wrong with a config.
type problems []string

func (p *problems) add(format string, args ...any) { *p = append(*p, fmt.Sprintf(format, args...)) }

func matchString(m *matcherv3.StringMatcher, s string) (bool, error) {
	if m.GetIgnoreCase() {
		s = strings.ToLower(s)
	}
	lower := func(x string) string {
		if m.GetIgnoreCase() {
			return strings.ToLower(x)
		}
		return x
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return s == lower(p.Exact), nil
	case *matcherv3.StringMatcher_Prefix:
		return strings.HasPrefix(s, lower(p.Prefix)), nil
	case *matcherv3.StringMatcher_Suffix:
		return strings.HasSuffix(s, lower(p.Suffix)), nil
	case *matcherv3.StringMatcher_Contains:
		return strings.Contains(s, lower(p.Contains)), nil
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := regexp.Compile(`^(?:` + p.SafeRegex.GetRegex() + `)$`)
		if err != nil {
			return false, err
		}
		return re.MatchString(s), nil
	default:
		return false, fmt.Errorf("unsupported string matcher %T", p)
	}
}

// listMatches reports whether a header name matches a ListStringMatcher.
func listMatches(l *matcherv3.ListStringMatcher, header string) (bool, error) {
	for _, m := range l.GetPatterns() {
		ok, err := matchString(m, header)
		if err != nil || ok {
			return ok, err
		}
	}
	return false, nil
}

// reachesKeygate tells whether Envoy copies a client request header into
// the check request: over gRPC every header unless allowed_headers is set,
// over HTTP only those allowed_headers lists; never a disallowed one.
func reachesKeygate(ea *extauthzv3.ExtAuthz, kind, header string) (bool, error) {
	sent := kind == kindGRPC && ea.GetAllowedHeaders() == nil
	if !sent {
		ok, err := listMatches(ea.GetAllowedHeaders(), header)
		if err != nil {
			return false, fmt.Errorf("allowed_headers: %w", err)
		}
		sent = ok
	}
	denied, err := listMatches(ea.GetDisallowedHeaders(), header)
	if err != nil {
		return false, fmt.Errorf("disallowed_headers: %w", err)
	}
	return sent && !denied, nil
}

// perRoute returns the ExtAuthzPerRoute under the ext_authz filter's name, if any.
func perRoute(filters map[string]*anypb.Any, name string) (*extauthzv3.ExtAuthzPerRoute, error) {
	a, ok := filters[name]
	if !ok {
		return nil, nil
	}
	if !a.MessageIs(&extauthzv3.ExtAuthzPerRoute{}) {
		return nil, fmt.Errorf("typed_per_filter_config[%s] is %s, want ExtAuthzPerRoute", name, a.GetTypeUrl())
	}
	return unpack(a, &extauthzv3.ExtAuthzPerRoute{})
}

// routeFor returns the route Envoy picks for a path: the first that matches.
func routeFor(vh *routev3.VirtualHost, path string) (*routev3.Route, error) {
	for _, r := range vh.GetRoutes() {
		m := r.GetMatch()
		if len(m.GetHeaders()) > 0 || len(m.GetQueryParameters()) > 0 || m.GetGrpc() != nil ||
			m.GetRuntimeFraction() != nil || (m.GetCaseSensitive() != nil && !m.GetCaseSensitive().GetValue()) {
			return nil, fmt.Errorf("route %q: matcher not supported by this test's route simulation", r.GetName())
		}
		var ok bool
		switch p := m.GetPathSpecifier().(type) {
		case *routev3.RouteMatch_Path:
			ok = path == p.Path
		case *routev3.RouteMatch_Prefix:
			ok = strings.HasPrefix(path, p.Prefix)
		case *routev3.RouteMatch_PathSeparatedPrefix:
			ok = path == p.PathSeparatedPrefix || strings.HasPrefix(path, p.PathSeparatedPrefix+"/")
		default:
			return nil, fmt.Errorf("route %q: path specifier %T not supported by this test", r.GetName(), p)
		}
		if ok {
			return r, nil
		}
	}
	return nil, nil
}

// authzFor is what ext_authz does on a route: whether it is disabled, and the
// merged context extensions (virtual host first, route overriding).
func authzFor(vh *routev3.VirtualHost, r *routev3.Route, name string) (disabled bool, ext map[string]string, err error) {
	ext = map[string]string{}
	for _, filters := range []map[string]*anypb.Any{vh.GetTypedPerFilterConfig(), r.GetTypedPerFilterConfig()} {
		pr, err := perRoute(filters, name)
		if err != nil {
			return false, nil, err
		}
		if pr == nil {
			continue
		}
		disabled = pr.GetDisabled()
		for k, v := range pr.GetCheckSettings().GetContextExtensions() {
			ext[k] = v
		}
	}
	return disabled, ext, nil
}

func clusterPorts(cl *clusterv3.Cluster) []uint32 {
	var ports []uint32
	for _, e := range cl.GetLoadAssignment().GetEndpoints() {
		for _, lb := range e.GetLbEndpoints() {
			ports = append(ports, lb.GetEndpoint().GetAddress().GetSocketAddress().GetPortValue())
		}
	}
	return ports
}

// A route table entry: what Envoy does for a request path.
type routeCase struct {
	path         string
	disabled     bool   // ext_authz skipped: keygate not asked
	endpointGRPC string // keygate_endpoint sent in gRPC mode ("" = keygate's first match)
}

var routeCases = []routeCase{
	{path: "/healthz", disabled: true},
	{path: "/healthz/x"}, // exact match only: sub-paths are authorized
	{path: "/orgs/acme-eu/sales/2026"},
	{path: "/whoami", endpointGRPC: "whoami"},
	{path: "/docs/index.html"},
	{path: "/"},
}

// check returns what is wrong with a decoded config for keygate users.
// wantKind and wantPort may be zero for files not in knownFiles.
func check(c *config, wantKind string, wantPort uint32, policyEndpoints []string) problems {
	var p problems
	if got := c.bs.GetAdmin().GetAddress().GetSocketAddress(); got.GetAddress() != "127.0.0.1" || got.GetPortValue() != 9901 {
		p.add("admin on %s:%d, want 127.0.0.1:9901", got.GetAddress(), got.GetPortValue())
	}
	if c.listenerPort != 8080 {
		p.add("listener port %d, want 8080", c.listenerPort)
	}

	// Filter order and the fail-closed settings.
	ea := c.extAuthz
	if ea == nil {
		p.add("no ext_authz filter")
		return p
	}
	if c.routerAt < 0 || c.extAuthzAt > c.routerAt {
		p.add("ext_authz filter (index %d) must come before the router (index %d)", c.extAuthzAt, c.routerAt)
	}
	if n := len(c.hcm.GetHttpFilters()); c.routerAt != n-1 {
		p.add("router must be the last http filter")
	}
	if ea.GetFailureModeAllow() {
		p.add("failure_mode_allow is true: requests would pass when keygate is down")
	}
	if ea.GetTransportApiVersion() != corev3.ApiVersion_V3 {
		p.add("transport_api_version %v, want V3", ea.GetTransportApiVersion())
	}
	if ea.GetWithRequestBody() != nil {
		p.add("with_request_body set: keygate decides on headers only")
	}
	if got := ea.GetStatusOnError().GetCode(); got != typev3.StatusCode_ServiceUnavailable {
		p.add("status_on_error %v, want 503", got)
	}

	// The keygate service, its cluster and port.
	kind, clusterName := "", ""
	var timeout time.Duration
	switch {
	case ea.GetGrpcService() != nil:
		kind = kindGRPC
		clusterName = ea.GetGrpcService().GetEnvoyGrpc().GetClusterName()
		if ea.GetGrpcService().GetTimeout() == nil {
			p.add("grpc_service.timeout not set")
		}
		timeout = ea.GetGrpcService().GetTimeout().AsDuration()
		if !ea.GetIncludePeerCertificate() {
			p.add("include_peer_certificate is false")
		}
	case ea.GetHttpService() != nil:
		kind = kindHTTP
		clusterName = ea.GetHttpService().GetServerUri().GetCluster()
		timeout = ea.GetHttpService().GetServerUri().GetTimeout().AsDuration()
	}
	if wantKind != "" && kind != wantKind {
		p.add("ext_authz service is %q, want %q", kind, wantKind)
	}
	if timeout <= 0 || timeout > time.Second {
		p.add("ext_authz timeout %v, want 0 < timeout <= 1s", timeout)
	}
	cl := c.clusters[clusterName]
	if cl == nil {
		p.add("ext_authz cluster %q is not defined", clusterName)
		return p
	}
	ports := clusterPorts(cl)
	if len(ports) == 0 {
		p.add("cluster %q has no endpoints", clusterName)
	}
	for _, port := range ports {
		if wantPort != 0 && port != wantPort {
			p.add("cluster %q endpoint port %d, want %d", clusterName, port, wantPort)
		}
	}
	if len(cl.GetHealthChecks()) == 0 {
		p.add("cluster %q has no health check", clusterName)
	}

	if kind == kindHTTP {
		// keygate closes idle keep-alive connections after --http-idle-timeout
		// (3m by default); Envoy must close them first (its default is 1 h).
		opts, err := unpack(cl.GetTypedExtensionProtocolOptions()[http2OptionsKey], &upstreamhttpv3.HttpProtocolOptions{})
		idle := opts.GetCommonHttpProtocolOptions().GetIdleTimeout()
		if err != nil || idle == nil || idle.AsDuration() <= 0 || idle.AsDuration() >= 3*time.Minute {
			p.add("cluster %q: common_http_protocol_options.idle_timeout %v, want under keygate's 3m --http-idle-timeout: %v", clusterName, idle.AsDuration(), err)
		}
	}
	if kind == kindGRPC {
		opts, err := unpack(cl.GetTypedExtensionProtocolOptions()[http2OptionsKey], &upstreamhttpv3.HttpProtocolOptions{})
		if err != nil || opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			p.add("cluster %q does not speak HTTP/2 (typed_extension_protocol_options[%s].explicit_http_config.http2_protocol_options): %v", clusterName, http2OptionsKey, err)
		}
		hasGRPCCheck := false
		for _, hc := range cl.GetHealthChecks() {
			hasGRPCCheck = hasGRPCCheck || hc.GetGrpcHealthCheck() != nil
		}
		if !hasGRPCCheck {
			p.add("cluster %q has no grpc_health_check", clusterName)
		}
	}

	// Headers to keygate, and back from it.
	for _, h := range credentialHeaders {
		if ok, err := reachesKeygate(ea, kind, h); err != nil {
			p.add("%v", err)
		} else if !ok {
			p.add("request header %q does not reach keygate", h)
		}
	}
	// A client-sent identity header that keygate does not set (a spoofed
	// x-keygate-session-id on a key-only request) is removed only if keygate
	// sees it and lists it for removal.
	for _, h := range identityHeaders {
		if ok, err := reachesKeygate(ea, kind, h); err != nil {
			p.add("%v", err)
		} else if !ok {
			p.add("client-sent %q does not reach keygate, which then cannot have it removed", h)
		}
	}
	if kind == kindHTTP {
		resp := ea.GetHttpService().GetAuthorizationResponse()
		for _, h := range identityHeaders {
			if ok, err := listMatches(resp.GetAllowedUpstreamHeaders(), h); err != nil || !ok {
				p.add("allowed_upstream_headers does not cover %q (%v)", h, err)
			}
			if ok, _ := listMatches(resp.GetAllowedUpstreamHeadersToAppend(), h); ok {
				p.add("%q would be appended to a client-sent copy instead of replacing it", h)
			}
		}
		for _, h := range []string{"www-authenticate", "content-type", "retry-after", "ratelimit-policy", "ratelimit"} {
			if ok, err := listMatches(resp.GetAllowedClientHeaders(), h); err != nil || !ok {
				p.add("allowed_client_headers does not cover %q (%v)", h, err)
			}
		}
	}

	// Routes: what happens for each path, and every keygate_endpoint.
	rc := c.hcm.GetRouteConfig()
	var vh *routev3.VirtualHost
	for _, v := range rc.GetVirtualHosts() {
		if slices.Contains(v.GetDomains(), "*") {
			vh = v
		}
	}
	if vh == nil {
		p.add("no static virtual host for domain \"*\"")
		return p
	}
	for _, v := range rc.GetVirtualHosts() {
		for _, r := range v.GetRoutes() {
			if name := r.GetRoute().GetCluster(); c.clusters[name] == nil {
				p.add("route %v: cluster %q is not defined", r.GetMatch().GetPathSpecifier(), name)
			}
			_, ext, err := authzFor(v, r, c.extAuthzName)
			if err != nil {
				p.add("%v", err)
				continue
			}
			if len(ext) > 0 && kind == kindHTTP {
				p.add("route %v sets context_extensions, which Envoy does not send to an http_service", r.GetMatch().GetPathSpecifier())
			}
			if name, ok := ext[endpointExtension]; ok && !slices.Contains(policyEndpoints, name) {
				p.add("route %v: %s %q is not an endpoint of %s (%v)", r.GetMatch().GetPathSpecifier(), endpointExtension, name, policyFile, policyEndpoints)
			}
		}
	}
	for _, tc := range routeCases {
		r, err := routeFor(vh, tc.path)
		if err != nil || r == nil {
			p.add("path %s: no route (%v)", tc.path, err)
			continue
		}
		disabled, ext, err := authzFor(vh, r, c.extAuthzName)
		if err != nil {
			p.add("path %s: %v", tc.path, err)
			continue
		}
		if disabled != tc.disabled {
			p.add("path %s: ext_authz disabled=%v, want %v", tc.path, disabled, tc.disabled)
		}
		want := tc.endpointGRPC
		if kind == kindHTTP {
			want = "" // context extensions do not reach an http_service
		}
		if got := ext[endpointExtension]; got != want {
			p.add("path %s: %s=%q, want %q", tc.path, endpointExtension, got, want)
		}
		if r.GetRoute().GetCluster() != "upstream" {
			p.add("path %s: routed to %q, want upstream", tc.path, r.GetRoute().GetCluster())
		}
	}
	return p
}

// policyEndpoints reads the endpoint names of the example policy.
func policyEndpoints(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile(policyFile)
	if err != nil {
		t.Fatal(err)
	}
	var pol struct {
		Endpoints []struct {
			Name string `yaml:"name"`
		} `yaml:"endpoints"`
	}
	if err := yaml.Unmarshal(data, &pol); err != nil {
		t.Fatalf("%s: %v", policyFile, err)
	}
	var names []string
	for _, e := range pol.Endpoints {
		names = append(names, e.Name)
	}
	if len(names) == 0 {
		t.Fatalf("%s: no endpoints", policyFile)
	}
	return names
}

func load(t *testing.T, data []byte) *config {
	t.Helper()
	bs, err := decode(data)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := validate(bs); err != nil {
		t.Fatalf("validate: %v", err)
	}
	c, err := inspect(bs)
	if err != nil {
		t.Fatalf("inspect: %v", err)
	}
	return c
}

func TestConfigs(t *testing.T) {
	files, err := filepath.Glob("*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for name := range knownFiles {
		if !slices.Contains(files, name) {
			t.Errorf("%s is missing", name)
		}
	}
	endpoints := policyEndpoints(t)
	for _, file := range files {
		t.Run(file, func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			want := knownFiles[file]
			for _, problem := range check(load(t, data), want.kind, want.port, endpoints) {
				t.Error(problem)
			}
		})
	}
}

// The decoder and the checks must catch broken configs, or the test above
// proves nothing. Each case edits one file in one place.
func TestBrokenConfigsFail(t *testing.T) {
	const grpcFile, httpFile = "envoy-grpc.yaml", "envoy-http.yaml"
	endpoints := policyEndpoints(t)
	cases := []struct {
		name     string
		file     string
		old, new string
		stage    string // where it must fail: decode, validate or check
		want     string // in the error or a problem
	}{
		{"misspelled ext_authz field", grpcFile, "failure_mode_allow: false", "failure_mode_alow: false", "decode", "failure_mode_alow"},
		{"misspelled bootstrap field", grpcFile, "static_resources:", "static_resource:", "decode", "static_resource"},
		{"unknown typed_config type", grpcFile, "ext_authz.v3.ExtAuthz\n", "ext_authz.v3.ExtAuthZ\n", "decode", "ExtAuthZ"},
		{"wrong value type", grpcFile, "failure_mode_allow: false", "failure_mode_allow: nope", "decode", "failureModeAllow"},
		{"rule inside a typed_config", grpcFile, "stat_prefix: ingress_http", `stat_prefix: ""`, "validate", "StatPrefix"},
		{"rule in the bootstrap", grpcFile, "port_value: 9001", "port_value: 70000", "validate", "PortValue"},
		{"fail open", grpcFile, "failure_mode_allow: false", "failure_mode_allow: true", "check", "failure_mode_allow"},
		{"keygate on another port", grpcFile, "port_value: 9001", "port_value: 9011", "check", "port 9011"},
		{"unknown keygate endpoint", grpcFile, "keygate_endpoint: whoami", "keygate_endpoint: whoiam", "check", `"whoiam" is not an endpoint`},
		{"health route authorized", grpcFile, "disabled: true", "disabled: false", "check", "path /healthz: ext_authz disabled=false"},
		{"HTTP/1.1 to keygate", grpcFile, "http2_protocol_options: {}", "http_protocol_options: {}", "check", "HTTP/2"},
		{"body buffered", grpcFile, "include_peer_certificate: true", "include_peer_certificate: true\n                      with_request_body: {max_request_bytes: 1024}", "check", "with_request_body"},
		{"credential headers not sent", grpcFile, "transport_api_version: V3", "transport_api_version: V3\n                      allowed_headers: {patterns: [{exact: authorization}]}", "check", `"x-api-key" does not reach keygate`},
		{"credential header misspelled", httpFile, "- exact: x-api-key", "- exact: x-api-kee", "check", `"x-api-key" does not reach keygate`},
		{"identity headers not copied", httpFile, "allowed_upstream_headers:\n                            patterns:\n                              - prefix: x-keygate-\n", "allowed_upstream_headers:\n                            patterns:\n                              - prefix: x-keygate-u\n", "check", `does not cover "x-keygate-tenant"`},
		{"client identity headers not sent", httpFile, "- exact: x-org-id\n                          - prefix: x-keygate-", "- exact: x-org-id", "check", `client-sent "x-keygate-user" does not reach keygate`},
		{"client identity headers disallowed", grpcFile, "transport_api_version: V3", "transport_api_version: V3\n                      disallowed_headers: {patterns: [{prefix: x-keygate-}]}", "check", `client-sent "x-keygate-session-id" does not reach keygate`},
		{"idle connections kept longer than keygate keeps them", httpFile, "idle_timeout: 60s", "idle_timeout: 600s", "check", "want under keygate's 3m"},
		{"challenge not returned", httpFile, "- exact: www-authenticate", "- exact: www-authenticat", "check", `does not cover "www-authenticate"`},
		{"context extension over HTTP", httpFile, "- match: {path: /whoami}\n", "- match: {path: /whoami}\n                          typed_per_filter_config: {envoy.filters.http.ext_authz: {\"@type\": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute, check_settings: {context_extensions: {keygate_endpoint: whoami}}}}\n", "check", "does not send to an http_service"},
		{"deprecated authorization_request.allowed_headers", httpFile, "                        authorization_response:\n", "                        authorization_request:\n                          allowed_headers: {patterns: [{exact: x-api-key}]}\n                        authorization_response:\n", "validate", "allowed_headers: deprecated field"},
		{"deprecated field", grpcFile, "connect_timeout: 0.25s", "connect_timeout: 0.25s\n      http2_protocol_options: {}", "validate", "http2_protocol_options: deprecated field"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			orig, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if n := strings.Count(string(orig), tc.old); n != 1 {
				t.Fatalf("%q occurs %d times in %s, want 1", tc.old, n, tc.file)
			}
			data := []byte(strings.Replace(string(orig), tc.old, tc.new, 1))
			var got string
			bs, err := decode(data)
			switch {
			case err != nil:
				got = "decode"
			default:
				if err = validate(bs); err != nil {
					got = "validate"
					break
				}
				c, ierr := inspect(bs)
				if ierr != nil {
					t.Fatalf("inspect: %v", ierr)
				}
				want := knownFiles[tc.file]
				if ps := check(c, want.kind, want.port, endpoints); len(ps) > 0 {
					got, err = "check", fmt.Errorf("%s", strings.Join(ps, "\n"))
				}
			}
			if got != tc.stage {
				t.Fatalf("failed at %q (%v), want failure at %q", got, err, tc.stage)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not mention %q", err, tc.want)
			}
		})
	}
}
