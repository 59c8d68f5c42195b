package redissessions

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type op uint8

const (
	opLookup op = iota
	opCreate
	opGet
	opList
	opRevoke
	opCount
)

var opNames = [opCount]string{"lookup", "create", "get", "list", "revoke"}

type result uint8

const (
	resultOK result = iota
	resultNotFound
	resultError
	resultCount
)

var resultNames = [resultCount]string{"ok", "not_found", "error"}

// storeMetrics are the store's series; counters are resolved once, so a
// lookup does not hash its labels.
type storeMetrics struct {
	requests      [opCount][resultCount]prometheus.Counter
	invalidations prometheus.Counter
	lookupSeconds prometheus.Histogram
}

func (m *storeMetrics) count(o op, r result) { m.requests[o][r].Inc() }

func (m *storeMetrics) register(reg prometheus.Registerer, s *Store) error {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "keygate_session_store_requests_total",
		Help: "Round trips to the Redis session store by operation (lookup, create, get, list, revoke) and result (ok, not_found, error)."},
		[]string{"op", "result"})
	for o := range opCount {
		for r := range resultCount {
			m.requests[o][r] = requests.WithLabelValues(opNames[o], resultNames[r])
		}
	}
	m.invalidations = prometheus.NewCounter(prometheus.CounterOpts{Name: "keygate_session_store_invalidations_total",
		Help: "Revoked sessions this replica was told to forget through Redis pub/sub."})
	m.lookupSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "keygate_session_store_lookup_seconds",
		Help:    "Time of a session lookup in Redis, made on a cache miss for an opaque session the policy does not list.",
		Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1}})
	if reg == nil {
		return nil
	}
	for _, c := range []prometheus.Collector{requests, m.invalidations, m.lookupSeconds,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_session_store_up",
			Help: "1 when the last round trip to the Redis session store was answered, else 0: sessions only it can verify are then denied 503."},
			func() float64 { return b2f(!s.health.down.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "keygate_session_store_subscribed",
			Help: "1 while this replica receives session invalidations through Redis pub/sub, else 0 (store resolutions are then not cached)."},
			func() float64 { return b2f(s.health.subscribed.Load()) }),
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register session store metrics: %w", err)
		}
	}
	return nil
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
