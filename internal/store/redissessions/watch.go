package redissessions

import (
	"context"
	"encoding/hex"
	"errors"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/keygate/keygate/internal/policy"
)

// pingEvery is how long the subscription may stay silent before Watch
// pings Redis; a ping unanswered by the next one means the connection is
// dead (a black-holed peer sends no reset).
const pingEvery = 2 * time.Second

// Watch receives invalidations until ctx ends: forget is called with the
// digest of every session revoked on any replica (on this one by Revoke,
// before it returns), and resync whenever the
// subscription drops, since invalidations may be missed until it is back.
// While it is down, Lookup says its answers must not be cached; each
// attempt to subscribe again also probes Redis, so Status turns up again
// without traffic.
func (s *Store) Watch(ctx context.Context, forget func(policy.Digest), resync func()) {
	s.forget.Store(&forget)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		established, err := s.watchOnce(ctx, forget)
		s.health.subscribed.Store(false)
		resync()
		if ctx.Err() != nil {
			return
		}
		if established {
			backoff = 50 * time.Millisecond
			s.log.Warn("session invalidations interrupted; subscribing again", zap.String("addr", s.addr), zap.Error(err))
		}
		s.observe(err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// watchOnce subscribes and receives until the connection fails.
// established says whether the subscription was confirmed.
func (s *Store) watchOnce(ctx context.Context, forget func(policy.Digest)) (established bool, err error) {
	ps := s.client.Subscribe(ctx, Channel) // connects on the first receive
	defer ps.Close()
	stop := context.AfterFunc(ctx, func() { _ = ps.Close() }) // ends a receive in progress
	defer stop()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(ctx, pingEvery)
		if err != nil {
			if timeout(err) && !pinged && established {
				pinged = true
				if err := ps.Ping(ctx); err != nil {
					return established, err
				}
				continue
			}
			if ctx.Err() != nil {
				return established, ctx.Err()
			}
			return established, err
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				established = true
				s.health.subscribed.Store(true)
				s.observe(nil)
			}
		case *redis.Message:
			for _, h := range strings.Fields(m.Payload) {
				if d, ok := parseDigestHex(h); ok { // not ours otherwise: keygate publishes hex digests only
					forget(d)
					s.m.invalidations.Inc()
				}
			}
		}
	}
}

// parseDigestHex reads a digest as Revoke publishes it.
func parseDigestHex(h string) (policy.Digest, bool) {
	var d policy.Digest
	if len(h) != 2*len(d) {
		return d, false
	}
	_, err := hex.Decode(d[:], []byte(h))
	return d, err == nil
}

func timeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
