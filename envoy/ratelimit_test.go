package envoy_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	ratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ratelimit/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/envoytest"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/server"
	"github.com/keygate/keygate/internal/source"
)

// Importing ratelimitv3 registers the RateLimit filter's typed_config for
// decode (envoy-ratelimit.yaml).

const rateLimitFile = "envoy-ratelimit.yaml"

// TestRateLimitConfig checks what envoy-ratelimit.yaml adds to the gRPC
// setup (TestConfigs checks the rest): Envoy's ratelimit filter after
// ext_authz and before the router, its service cluster over HTTP/2, and a
// descriptor whose every entry reads a value keygate really puts in its
// dynamic metadata, as keygate's own gRPC adapter answers it.
func TestRateLimitConfig(t *testing.T) {
	data, err := os.ReadFile(rateLimitFile)
	if err != nil {
		t.Fatal(err)
	}
	c := load(t, data)
	rlAt := -1
	var rl *ratelimitv3.RateLimit
	for i, f := range c.hcm.GetHttpFilters() {
		if f.GetTypedConfig().MessageIs(&ratelimitv3.RateLimit{}) {
			if rl, err = unpack(f.GetTypedConfig(), &ratelimitv3.RateLimit{}); err != nil {
				t.Fatal(err)
			}
			rlAt = i
		}
	}
	switch {
	case rl == nil:
		t.Fatal("no ratelimit filter")
	case !(c.extAuthzAt < rlAt && rlAt < c.routerAt):
		t.Errorf("ratelimit filter at %d: it must come after ext_authz (%d), whose metadata it reads, and before the router (%d)", rlAt, c.extAuthzAt, c.routerAt)
	}
	if rl.GetDomain() == "" {
		t.Error("ratelimit filter has no domain")
	}
	if to := rl.GetTimeout().AsDuration(); to <= 0 || to > time.Second {
		t.Errorf("ratelimit timeout %v, want 0 < timeout <= 1s", to)
	}
	cluster := rl.GetRateLimitService().GetGrpcService().GetEnvoyGrpc().GetClusterName()
	if cl := c.clusters[cluster]; cl == nil {
		t.Errorf("rate limit service cluster %q is not defined", cluster)
	} else if opts, err := unpack(cl.GetTypedExtensionProtocolOptions()[http2OptionsKey], &upstreamhttpv3.HttpProtocolOptions{}); err != nil || opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("cluster %q does not speak HTTP/2 (gRPC): %v", cluster, err)
	}

	// The metadata keygate answers for a key with its own limit.
	const key = "envoy-ratelimit-test-key"
	doc := fmt.Sprintf(`version: 1
tenants: [{id: acme, orgs: [acme-eu]}]
rate_limits: [{name: standard, requests: 100, per: 1m}]
endpoints: [{name: sales, match: {path: "/orgs/{org}/sales/**"}, org: {from: path, name: org}}]
api_keys: [{id: k1, hash: %q, tenant: acme, user: bot, rate_limit: standard}]
`, policy.FormatDigest(apikey.Digest(key)))
	snap, err := policy.Load([]policy.Input{{Name: "p.yaml", Data: []byte(doc)}}, policy.Options{Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	st := source.NewStore()
	st.Publish(snap)
	creds, _ := cache.New(10, time.Second)
	// No limiter: --ratelimit-store none, as the config's header says.
	srv := server.NewAuthServer(authz.New(st, creds), server.NewDecisionLog(zap.NewNop(), server.LogOff), nil)
	resp, err := srv.Check(context.Background(), envoytest.CheckRequest(key))
	if err != nil {
		t.Fatal(err)
	}
	meta := resp.GetDynamicMetadata().GetFields()

	var vh *routev3.VirtualHost
	for _, v := range c.hcm.GetRouteConfig().GetVirtualHosts() {
		if slices.Contains(v.GetDomains(), "*") {
			vh = v
		}
	}
	if len(vh.GetRateLimits()) != 1 {
		t.Fatalf("virtual host has %d rate_limits entries, want 1", len(vh.GetRateLimits()))
	}
	var descriptor []string
	for _, a := range vh.GetRateLimits()[0].GetActions() {
		md := a.GetMetadata()
		if md == nil {
			t.Errorf("action %v does not read metadata", a)
			continue
		}
		descriptor = append(descriptor, md.GetDescriptorKey())
		mk := md.GetMetadataKey()
		if mk.GetKey() != c.extAuthzName || md.GetSource() != routev3.RateLimit_Action_MetaData_DYNAMIC {
			t.Errorf("descriptor %s reads %s metadata of %q, want ext_authz's dynamic metadata (%q)", md.GetDescriptorKey(), md.GetSource(), mk.GetKey(), c.extAuthzName)
		}
		if len(mk.GetPath()) != 1 {
			t.Errorf("descriptor %s: path %v, want one key", md.GetDescriptorKey(), mk.GetPath())
			continue
		}
		name := mk.GetPath()[0].GetKey()
		if v := meta[name].GetStringValue(); v == "" {
			t.Errorf("descriptor %s reads %q, which keygate's metadata does not carry as a string (it has %v)", md.GetDescriptorKey(), name, meta)
		}
		if md.GetSkipIfAbsent() || md.GetDefaultValue() != "" {
			t.Errorf("descriptor %s: a request without keygate's limit must not be sent to the rate limit service", md.GetDescriptorKey())
		}
	}
	if want := []string{"rate_limit", "tenant", "rate_limit_id"}; !slices.Equal(descriptor, want) {
		t.Errorf("descriptor %v, want %v (the ratelimit service's configuration nests them in this order)", descriptor, want)
	}
	if meta["rate_limit"].GetStringValue() != "standard" || meta["rate_limit_id"].GetStringValue() != "k1" || meta["tenant"].GetStringValue() != "acme" {
		t.Errorf("keygate's metadata %v, want rate_limit standard, tenant acme, rate_limit_id k1", meta)
	}
}
