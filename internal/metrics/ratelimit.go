package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/internal/ratelimit"
)

var (
	rateDecisionsDesc = prometheus.NewDesc("keygate_ratelimit_decisions_total",
		"Requests counted against rate limits, by result: allowed, limited (answered 429), error (the store could not answer; --ratelimit-failure decided).",
		[]string{"result"}, nil)
	rateErrorsDesc = prometheus.NewDesc("keygate_ratelimit_errors_total",
		"Requests the rate-limit store could not count (Redis unreachable or slower than --ratelimit-timeout).", nil, nil)
	rateBucketsDesc = prometheus.NewDesc("keygate_ratelimit_buckets",
		"Rate-limit budgets held in memory by the local store.", nil, nil)
	rateEvictionsDesc = prometheus.NewDesc("keygate_ratelimit_evictions_total",
		"Budgets the local store forgot to stay within --ratelimit-local-size (they start full when next used).", nil, nil)
)

// rateLimitCollector reads the limiter's counters at scrape time: counting
// costs Check nothing here.
type rateLimitCollector struct{ l *ratelimit.Limiter }

func (rc *rateLimitCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{rateDecisionsDesc, rateErrorsDesc, rateBucketsDesc, rateEvictionsDesc} {
		ch <- d
	}
}

func (rc *rateLimitCollector) Collect(ch chan<- prometheus.Metric) {
	st := rc.l.Stats()
	ch <- prometheus.MustNewConstMetric(rateDecisionsDesc, prometheus.CounterValue, float64(st.Allowed), "allowed")
	ch <- prometheus.MustNewConstMetric(rateDecisionsDesc, prometheus.CounterValue, float64(st.Limited), "limited")
	ch <- prometheus.MustNewConstMetric(rateDecisionsDesc, prometheus.CounterValue, float64(st.Errors), "error")
	ch <- prometheus.MustNewConstMetric(rateErrorsDesc, prometheus.CounterValue, float64(st.Errors))
	ch <- prometheus.MustNewConstMetric(rateBucketsDesc, prometheus.GaugeValue, float64(st.Buckets))
	ch <- prometheus.MustNewConstMetric(rateEvictionsDesc, prometheus.CounterValue, float64(st.Evictions))
}
