// Package metrics exposes keygate's Prometheus metrics. Decisions are
// recorded on the Check path into striped counters (striped.go), which no
// two cores need to share; everything about the cache and the policy is
// read at scrape time, so it costs Check nothing.
package metrics

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/keygate/keygate/internal/authz"
	"github.com/keygate/keygate/internal/cache"
	"github.com/keygate/keygate/internal/ratelimit"
	"github.com/keygate/keygate/internal/source"
)

// Metrics records decisions. It implements server.Observer.
type Metrics struct {
	decisions *decisionCounter
	durGRPC   *durationHistogram
	durHTTP   *durationHistogram
}

// Config names what the scrape-time collectors read.
type Config struct {
	Store  *source.Store
	Cache  *cache.Cache
	Source string // "file" or "kubernetes", the source label of reloads
	// ExpiringWithin is the window of keygate_api_keys_expiring (default 7d).
	ExpiringWithin time.Duration
	// RateLimiter, when set, is read for the keygate_ratelimit_* metrics.
	RateLimiter *ratelimit.Limiter
}

// New registers keygate's metrics, and the Go and process collectors, with
// reg. Tests pass a fresh prometheus.NewRegistry().
func New(reg prometheus.Registerer, cfg Config) (*Metrics, error) {
	if cfg.ExpiringWithin == 0 {
		cfg.ExpiringWithin = 7 * 24 * time.Hour
	}
	decisions := newDecisionCounter(prometheus.NewDesc("keygate_decisions_total",
		"Authorization decisions by result (allow, deny, shadow_deny, unavailable), reason and policy endpoint.",
		[]string{"result", "reason", "endpoint"}, nil))
	duration := &durationCollector{
		desc: prometheus.NewDesc("keygate_check_duration_seconds",
			"Time to decide and answer one check, by transport (grpc, http).", []string{"transport"}, nil),
		grpc: newDurationHistogram(), http: newDurationHistogram(),
	}
	cs := []prometheus.Collector{
		decisions, duration,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&cacheCollector{c: cfg.Cache},
		&policyCollector{store: cfg.Store, source: cfg.Source, within: cfg.ExpiringWithin},
	}
	if cfg.RateLimiter != nil {
		cs = append(cs, &rateLimitCollector{cfg.RateLimiter})
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return &Metrics{decisions: decisions, durGRPC: duration.grpc, durHTTP: duration.http}, nil
}

// ObserveDecision records one decision; labels come from closed sets and the
// policy's endpoint names, never from the request.
func (m *Metrics) ObserveDecision(transport string, d *authz.Decision, took time.Duration) {
	m.decisions.inc(decisionKey{result: d.Outcome(), reason: d.Reason, endpoint: d.EndpointName()})
	if transport == "http" {
		m.durHTTP.observe(took)
	} else {
		m.durGRPC.observe(took)
	}
}

var (
	cacheRequestsDesc = prometheus.NewDesc("keygate_cache_requests_total",
		"Credential resolutions by cache result (hit, miss, negative_hit).", []string{"result"}, nil)
	cacheEvictionsDesc = prometheus.NewDesc("keygate_cache_evictions_total",
		"Entries evicted from the credential cache to stay within its size.", nil, nil)
	cacheEntriesDesc = prometheus.NewDesc("keygate_cache_entries",
		"Entries in the credential cache.", nil, nil)
)

type cacheCollector struct{ c *cache.Cache }

func (cc *cacheCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cacheRequestsDesc
	ch <- cacheEvictionsDesc
	ch <- cacheEntriesDesc
}

func (cc *cacheCollector) Collect(ch chan<- prometheus.Metric) {
	st := cc.c.Stats()
	ch <- prometheus.MustNewConstMetric(cacheRequestsDesc, prometheus.CounterValue, float64(st.Hits), "hit")
	ch <- prometheus.MustNewConstMetric(cacheRequestsDesc, prometheus.CounterValue, float64(st.Misses), "miss")
	ch <- prometheus.MustNewConstMetric(cacheRequestsDesc, prometheus.CounterValue, float64(st.NegativeHits), "negative_hit")
	ch <- prometheus.MustNewConstMetric(cacheEvictionsDesc, prometheus.CounterValue, float64(st.Evictions))
	ch <- prometheus.MustNewConstMetric(cacheEntriesDesc, prometheus.GaugeValue, float64(st.Entries))
}

var (
	generationDesc = prometheus.NewDesc("keygate_policy_generation",
		"Generation of the policy snapshot in force; 0 before the first load.", nil, nil)
	reloadsDesc = prometheus.NewDesc("keygate_policy_reloads_total",
		"Policy loads by source and result (success, failure); a failure keeps the last good policy.", []string{"source", "result"}, nil)
	lastSuccessDesc = prometheus.NewDesc("keygate_policy_last_success_timestamp_seconds",
		"Unix time of the last successful policy load.", nil, nil)
	lastReloadOKDesc = prometheus.NewDesc("keygate_policy_last_reload_successful",
		"1 if the last policy load attempt succeeded, 0 if it was refused.", nil, nil)
	objectsDesc = prometheus.NewDesc("keygate_policy_objects",
		"Objects in the policy in force, by kind.", []string{"kind"}, nil)
	expiringDesc = prometheus.NewDesc("keygate_api_keys_expiring",
		"Active API keys that expire within the window.", []string{"within"}, nil)
)

type policyCollector struct {
	store  *source.Store
	source string
	within time.Duration
}

func (pc *policyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{generationDesc, reloadsDesc, lastSuccessDesc, lastReloadOKDesc, objectsDesc, expiringDesc} {
		ch <- d
	}
}

func (pc *policyCollector) Collect(ch chan<- prometheus.Metric) {
	st := pc.store.Status()
	snap := pc.store.Current()
	var gen uint64
	if snap != nil {
		gen = snap.Generation
	}
	ch <- prometheus.MustNewConstMetric(generationDesc, prometheus.GaugeValue, float64(gen))
	ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, float64(st.ReloadsOK), pc.source, "success")
	ch <- prometheus.MustNewConstMetric(reloadsDesc, prometheus.CounterValue, float64(st.ReloadsFailed), pc.source, "failure")
	var last float64
	if !st.LastSuccess.IsZero() {
		last = float64(st.LastSuccess.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(lastSuccessDesc, prometheus.GaugeValue, last)
	ok := 0.0
	if st.LastReloadOK {
		ok = 1
	}
	ch <- prometheus.MustNewConstMetric(lastReloadOKDesc, prometheus.GaugeValue, ok)
	if snap == nil {
		return
	}
	c := snap.Counts()
	for kind, n := range map[string]int{"api_keys": c.APIKeys, "sessions": c.Sessions, "endpoints": c.Endpoints, "groups": c.Groups} {
		ch <- prometheus.MustNewConstMetric(objectsDesc, prometheus.GaugeValue, float64(n), kind)
	}
	ch <- prometheus.MustNewConstMetric(expiringDesc, prometheus.GaugeValue,
		float64(snap.APIKeysExpiring(time.Now(), pc.within)), formatWindow(pc.within))
}

// formatWindow writes 168h as "7d", as the metric's label promises.
func formatWindow(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	return d.String()
}
