package session

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// IssuerStats is one key set's state, for /readyz?verbose and metrics.
// It never holds a key.
type IssuerStats struct {
	Issuer      string    `json:"issuer"`
	Source      string    `json:"source"` // url, inline or flag
	URL         string    `json:"jwks_url,omitempty"`
	Keys        int       `json:"keys"`
	KIDs        []string  `json:"kids"`
	Generation  uint64    `json:"key_generation"`
	FetchOK     uint64    `json:"fetches_ok"`
	FetchFailed uint64    `json:"fetches_failed"`
	KeysChanged uint64    `json:"key_changes"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	LastError   string    `json:"last_error,omitempty"`
}

func (k *KeySet) stats() IssuerStats {
	st := IssuerStats{Issuer: k.name, Source: k.source, URL: k.url, Keys: k.Len(), KIDs: k.kids(), Generation: k.Generation(),
		FetchOK: k.fetchOK.Load(), FetchFailed: k.fetchFailed.Load(), KeysChanged: k.fetchChanged.Load()}
	if st.KIDs == nil {
		st.KIDs = []string{}
	}
	if t := k.lastOK.Load(); t != 0 {
		st.LastSuccess = time.Unix(0, t).UTC()
	}
	if e := k.lastErr.Load(); e != nil {
		st.LastError = *e
	}
	return st
}

// Stats returns every key set's state: keygate's own keys first, then the
// policy's issuers by name.
func (v *Verifier) Stats() []IssuerStats {
	var out []IssuerStats
	if v.ownKeys != nil {
		out = append(out, v.ownKeys.stats())
	}
	m := *v.sets.sets.Load()
	for _, src := range sortedNames(m) {
		out = append(out, m[src].stats())
	}
	return out
}

var (
	fetchesDesc = prometheus.NewDesc("keygate_session_jwks_fetches_total",
		"Fetches of session issuers' jwks_url by issuer and result (ok, error); a failed fetch keeps the last good keys.",
		[]string{"issuer", "result"}, nil)
	keysDesc = prometheus.NewDesc("keygate_session_issuer_keys",
		"Public keys in force per session issuer.", []string{"issuer"}, nil)
	generationDesc = prometheus.NewDesc("keygate_session_issuer_key_generation",
		"Key set generation per session issuer: it moves on when the keys change, and cached verifications of older generations are dropped.",
		[]string{"issuer"}, nil)
	lastFetchDesc = prometheus.NewDesc("keygate_session_jwks_last_success_timestamp_seconds",
		"When each session issuer's jwks_url was last fetched successfully (Unix time; 0: never).", []string{"issuer"}, nil)
)

// Collector reads the key sets at scrape time: labels are the policy's
// issuer names, a closed set the operator writes.
func (v *Verifier) Collector() prometheus.Collector { return collector{v} }

type collector struct{ v *Verifier }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- fetchesDesc
	ch <- keysDesc
	ch <- generationDesc
	ch <- lastFetchDesc
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.v.Stats() {
		ch <- prometheus.MustNewConstMetric(keysDesc, prometheus.GaugeValue, float64(st.Keys), st.Issuer)
		ch <- prometheus.MustNewConstMetric(generationDesc, prometheus.GaugeValue, float64(st.Generation), st.Issuer)
		if st.Source != "url" {
			continue
		}
		ch <- prometheus.MustNewConstMetric(fetchesDesc, prometheus.CounterValue, float64(st.FetchOK), st.Issuer, "ok")
		ch <- prometheus.MustNewConstMetric(fetchesDesc, prometheus.CounterValue, float64(st.FetchFailed), st.Issuer, "error")
		var ts float64
		if !st.LastSuccess.IsZero() {
			ts = float64(st.LastSuccess.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(lastFetchDesc, prometheus.GaugeValue, ts, st.Issuer)
	}
}
