package metrics

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keygate/keygate/internal/authz"
)

// Every Check records one decision and one duration. A prometheus
// CounterVec and Histogram would have each core take the same read lock
// and add to the same words, bouncing their cache lines between cores.
// Here each series is striped: an observation adds to one of several
// stripes picked at random (math/rand/v2's per-thread generator: no shared
// state), each on its own cache line, and a scrape reads the sum.

// stripesFor is a power of two near the number of Ps, at most 16: more
// would cost memory per series for little.
func stripesFor(procs int) int {
	n := 1
	for n < procs && n < 16 {
		n *= 2
	}
	return n
}

func stripe(n int) int { return int(rand.Uint32() & uint32(n-1)) }

type paddedCount struct {
	n atomic.Uint64
	_ [56]byte // a cache line each
}

type stripedCounter []paddedCount

func (c stripedCounter) inc() { c[stripe(len(c))].n.Add(1) }

func (c stripedCounter) sum() uint64 {
	var t uint64
	for i := range c {
		t += c[i].n.Load()
	}
	return t
}

type decisionKey struct {
	result   string
	reason   authz.Reason
	endpoint string
}

// decisionCounter is keygate_decisions_total. Its series are few (outcome
// × reason × endpoint seen) and rarely new, so the map is copied on write
// and read with one atomic load: no lock, and no allocation, per decision.
type decisionCounter struct {
	desc    *prometheus.Desc
	stripes int
	series  atomic.Pointer[map[decisionKey]stripedCounter]
	mu      sync.Mutex // serializes adding a series
}

func newDecisionCounter(desc *prometheus.Desc) *decisionCounter {
	c := &decisionCounter{desc: desc, stripes: stripesFor(runtime.GOMAXPROCS(0))}
	c.series.Store(&map[decisionKey]stripedCounter{})
	return c
}

func (c *decisionCounter) inc(k decisionKey) {
	if s, ok := (*c.series.Load())[k]; ok {
		s.inc()
		return
	}
	c.mu.Lock()
	old := *c.series.Load()
	s, ok := old[k]
	if !ok {
		m := make(map[decisionKey]stripedCounter, len(old)+1)
		for k, v := range old {
			m[k] = v
		}
		s = make(stripedCounter, c.stripes)
		m[k] = s
		c.series.Store(&m)
	}
	c.mu.Unlock()
	s.inc()
}

func (c *decisionCounter) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *decisionCounter) Collect(ch chan<- prometheus.Metric) {
	for k, s := range *c.series.Load() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(s.sum()), k.result, k.reason.String(), k.endpoint)
	}
}

// durationBuckets are keygate_check_duration_seconds's upper bounds.
var durationBuckets = []float64{.00001, .000025, .00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .1}

// histStripe counts observations per bucket (not cumulated: the first
// bound at or above the value) and past the last bound, and sums them in
// nanoseconds, on its own two cache lines.
type histStripe struct {
	buckets  [12]atomic.Uint64
	inf      atomic.Uint64
	sumNanos atomic.Uint64
	_        [128 - 14*8]byte
}

// durationHistogram is keygate_check_duration_seconds for one transport.
type durationHistogram struct {
	bounds  []int64 // nanoseconds
	stripes []histStripe
}

func newDurationHistogram() *durationHistogram {
	h := &durationHistogram{bounds: make([]int64, len(durationBuckets)), stripes: make([]histStripe, stripesFor(runtime.GOMAXPROCS(0)))}
	for i, b := range durationBuckets {
		h.bounds[i] = int64(math.Round(b * 1e9))
	}
	return h
}

func (h *durationHistogram) observe(d time.Duration) {
	ns := max(d.Nanoseconds(), 0)
	s := &h.stripes[stripe(len(h.stripes))]
	s.sumNanos.Add(uint64(ns))
	for i, b := range h.bounds {
		if ns <= b {
			s.buckets[i].Add(1)
			return
		}
	}
	s.inf.Add(1)
}

// metric sums the stripes into a histogram whose count is its buckets'
// total, so that a scrape during observations is consistent.
func (h *durationHistogram) metric(desc *prometheus.Desc, transport string) prometheus.Metric {
	var per [12]uint64
	var inf, sum uint64
	for i := range h.stripes {
		s := &h.stripes[i]
		for j := range per {
			per[j] += s.buckets[j].Load()
		}
		inf += s.inf.Load()
		sum += s.sumNanos.Load()
	}
	cum := make(map[float64]uint64, len(durationBuckets))
	var running uint64
	for j, b := range durationBuckets {
		running += per[j]
		cum[b] = running
	}
	return prometheus.MustNewConstHistogram(desc, running+inf, float64(sum)/1e9, cum, transport)
}

type durationCollector struct {
	desc       *prometheus.Desc
	grpc, http *durationHistogram
}

func (c *durationCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *durationCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- c.grpc.metric(c.desc, "grpc")
	ch <- c.http.metric(c.desc, "http")
}
