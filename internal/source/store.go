// Package source produces policy snapshots (from files or Kubernetes) and
// publishes them through one atomic pointer. The Check path only ever calls
// Store.Current; nothing it does waits for a reload.
package source

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keygate/keygate/internal/policy"
)

// Store holds the snapshot in force.
type Store struct {
	current atomic.Pointer[policy.Snapshot]
	gen     atomic.Uint64
	busy    atomic.Pointer[func() bool]

	mu        sync.Mutex // guards status and listeners; never taken by Check
	status    Status
	listeners []func(*policy.Snapshot)
}

// Status says how reloads have gone, for readiness, logs and metrics. The
// snapshot in force (its generation and source) is Current().
type Status struct {
	LastSuccess   time.Time
	LastError     string // one line; names file and line, never a secret
	ReloadsOK     uint64
	ReloadsFailed uint64
	LastReloadOK  bool
}

// NewStore returns an empty store: Current is nil until the first Publish.
func NewStore() *Store { return &Store{} }

// YieldWhile makes long reloads give way to requests while busy reports
// that requests are being decided (see pacer).
func (s *Store) YieldWhile(busy func() bool) { s.busy.Store(&busy) }

// Current returns the snapshot in force, or nil before the first load.
func (s *Store) Current() *policy.Snapshot { return s.current.Load() }

// NextGeneration returns the generation number for the next snapshot.
func (s *Store) NextGeneration() uint64 { return s.gen.Add(1) }

// Publish makes snap current and records the success.
func (s *Store) Publish(snap *policy.Snapshot) {
	s.current.Store(snap)
	s.mu.Lock()
	now := time.Now()
	s.status.LastSuccess = now
	s.status.LastError = ""
	s.status.ReloadsOK++
	s.status.LastReloadOK = true
	ls := slices.Clone(s.listeners)
	s.mu.Unlock()
	for _, l := range ls {
		l(snap)
	}
}

// Refuse records a reload that failed; the current snapshot stays.
func (s *Store) Refuse(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.LastError = err.Error()
	s.status.ReloadsFailed++
	s.status.LastReloadOK = false
}

// Status returns a copy of the reload status.
func (s *Store) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// OnPublish registers fn to run after each new snapshot is published.
func (s *Store) OnPublish(fn func(*policy.Snapshot)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listeners = append(s.listeners, fn)
}
