package source

import (
	"sync"

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
	p.mu.Lock()
	defer p.mu.Unlock()
	if readErr != nil {
		// Nothing was read: whatever comes back next is loaded, even if it
		// equals the content in force, so the status stops showing this error.
		p.seen = false
		p.store.Refuse(readErr)
		return false, readErr
	}
	sum := policy.Fingerprint(inputs)
	if !force && p.seen && sum == p.last {
		p.log.Debug("policy unchanged", zap.String("source", source))
		return false, nil
	}
	p.last, p.seen = sum, true
	snap, err := policy.Load(inputs, policy.Options{Generation: p.store.NextGeneration(), Source: source})
	if err != nil {
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
	}, fields...)...)
	return true, nil
}
