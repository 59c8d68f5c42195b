package server

import (
	"time"

	"github.com/keygate/keygate/internal/authz"
)

// Observer records decisions (metrics). The adapters call it once per check.
type Observer interface {
	ObserveDecision(transport string, d *authz.Decision, took time.Duration)
}

type nopObserver struct{}

func (nopObserver) ObserveDecision(string, *authz.Decision, time.Duration) {}

func orNop(o Observer) Observer {
	if o == nil {
		return nopObserver{}
	}
	return o
}
