package source

import (
	"runtime"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/policy"
)

// publisher is what every source shares once it has read its inputs:
// skip content already seen, then compile and publish, or refuse and keep
// the snapshot in force. One publisher per source; it serializes loads.
type publisher struct {
	store *Store
	log   *zap.Logger

	mu   sync.Mutex // serializes loads; guards last and seen
	last [32]byte   // fingerprint of the content last published or refused
	seen bool
}

// publish compiles inputs (read by the source; readErr if reading failed)
// and publishes the snapshot. Unless force is set, content whose fingerprint
// equals the last published or refused content is skipped. It reports
// whether a new snapshot was published; fields go on the "policy loaded" line.
func (p *publisher) publish(source string, inputs []policy.Input, readErr error, force bool, fields ...zap.Field) (bool, error) {
	return p.publishSum(source, inputs, nil, readErr, force, fields...)
}

// publishSum is publish for inputs whose fingerprint the caller has taken
// already (sum); a nil sum is taken here.
func (p *publisher) publishSum(source string, inputs []policy.Input, sum *[32]byte, readErr error, force bool, fields ...zap.Field) (published bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if readErr != nil {
		// Nothing was read: whatever comes back next is loaded, even if it
		// equals the content in force, so the status stops showing this error.
		p.seen = false
		p.store.Refuse(readErr)
		return false, readErr
	}
	p.run(func(pace func()) { published, err = p.load(source, inputs, sum, force, pace, fields) })
	return published, err
}

// run runs work, a load or a part of one: while requests are being served,
// beside them at a low priority if it can, and paced if not; otherwise at
// full speed. work gets the pace to call, nil for none.
func (p *publisher) run(work func(pace func())) {
	pace := p.pace()
	if pace != nil && runBeside(func() { work(nil) }) {
		return
	}
	work(pace)
}

// load is publishSum once inputs were read, with p.mu held.
func (p *publisher) load(source string, inputs []policy.Input, sum *[32]byte, force bool, pace func(), fields []zap.Field) (bool, error) {
	opt := policy.Options{Source: source, Pace: pace}
	if sum == nil {
		s := policy.Fingerprint(inputs, opt.Pace)
		sum = &s
	}
	if !force && p.seen && *sum == p.last {
		p.log.Debug("policy unchanged", zap.String("source", source))
		return false, nil
	}
	p.last, p.seen = *sum, true
	opt.Generation = p.store.NextGeneration()
	// Credentials unchanged since the snapshot in force are taken from it.
	opt.Previous = p.store.Current()
	snap, err := policy.Load(inputs, opt)
	if err != nil {
		// A file that changed in place (or failed) while it loaded was not
		// read whole: its content is loaded when read again, even if it
		// turns out to be what was fingerprinted.
		p.seen = policy.ReadWhole(inputs)
		p.store.Refuse(err)
		return false, err
	}
	p.store.Publish(snap)
	c := snap.Counts()
	p.log.Info("policy loaded", append([]zap.Field{
		zap.String("source", source),
		zap.Uint64("generation", snap.Generation),
		zap.Int("api_keys", c.APIKeys),
		zap.Int("sessions", c.Sessions),
		zap.Int("endpoints", c.Endpoints),
		zap.Int("credentials_reused", snap.Reused()),
	}, fields...)...)
	return true, nil
}

// fingerprint is policy.Fingerprint, run as a load is: hashing a large
// policy is a good part of a reload's work.
func (p *publisher) fingerprint(inputs []policy.Input) (sum [32]byte) {
	p.run(func(pace func()) { sum = policy.Fingerprint(inputs, pace) })
	return sum
}

// isLast reports whether sum is the content last published or refused, so
// that publishing it would change nothing.
func (p *publisher) isLast(sum [32]byte) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seen && sum == p.last
}

// pace is what a load calls between chunks of work: nil on an idle server
// or before the first snapshot (see pacer).
func (p *publisher) pace() func() {
	if busy := p.store.busy.Load(); busy != nil && p.store.Current() != nil {
		return newPacer(*busy).pace // requests are being served: let them run
	}
	return nil
}

// A reload competes for the CPUs with the requests keygate serves. Where it
// can, it runs beside them at a low priority (runBeside); where it cannot,
// as under a one-CPU quota, the pacer keeps it out of their way. With one
// CPU (GOMAXPROCS=1, as Go sets it under a one-CPU limit) Go runs a
// compiling goroutine for up to 10 ms at a time and polls the network only
// when nothing else is runnable, so a reload of a large policy would hold
// requests back that long. While requests are being decided, the pacer
// sleeps for a moment after each quarter millisecond of load work: the
// scheduler then polls the network and the requests that arrived become
// runnable. A goroutine woken from a sleep runs next, ahead of them, so the
// reload then yields once more and resumes only after they have run. On
// an idle server it never sleeps (Go's shortest sleep there is about a
// millisecond, which would stretch the reload fivefold for nothing).
const (
	paceWork  = 250 * time.Microsecond
	paceSleep = 50 * time.Microsecond
)

type pacer struct {
	busy  func() bool
	since time.Time
}

func newPacer(busy func() bool) *pacer { return &pacer{busy: busy, since: time.Now()} }

func (p *pacer) pace() {
	if time.Since(p.since) < paceWork {
		return
	}
	if p.busy() {
		time.Sleep(paceSleep)
		runtime.Gosched()
	}
	p.since = time.Now()
}
