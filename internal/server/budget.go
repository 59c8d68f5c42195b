package server

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// RecvBudget bounds the bytes of gRPC requests keygate receives and decides
// at once, across every connection and stream, by making callers wait.
//
// gRPC opens a stream's flow-control window to the whole message as soon
// as the handler asks to read it, so the only place to hold a sender back
// is before the read starts, when the message's size is not yet known:
// each call reserves the largest message gRPC accepts (maxMsg) until its
// handler returns. A call that finds the budget spent waits, in arrival
// order, before it reads; meanwhile its stream's window (the server's
// static initial window) holds the rest of the message at the sender. A
// call is never refused for want of budget: a refusal is a gRPC error,
// which Envoy's failure_mode_allow would let through. A caller that gives
// up while waiting gets its own cancellation back, which nobody hears.
//
// Unary methods (Check, health Check) share the budget. Streaming methods
// (reflection, health Watch) reserve from a separate room of one message,
// per message received: a client-streaming caller that keeps a stream
// open while sending nothing holds that room, and must not be able to
// hold back Checks with it.
type RecvBudget struct {
	unary, streams *gate
	maxMsg         int64
}

// NewRecvBudget returns a budget of limit bytes for unary calls, each
// reserving maxMsg; streaming calls get a further maxMsg of their own.
func NewRecvBudget(limit, maxMsg int64) (*RecvBudget, error) {
	if maxMsg <= 0 {
		return nil, fmt.Errorf("receive budget: message size %d must be positive", maxMsg)
	}
	if limit < maxMsg {
		return nil, fmt.Errorf("receive budget: %d bytes cannot hold one message of %d bytes", limit, maxMsg)
	}
	return &RecvBudget{unary: newGate(limit / maxMsg), streams: newGate(1), maxMsg: maxMsg}, nil
}

// Calls returns how many unary calls may read and decide at once.
func (b *RecvBudget) Calls() int64 { return b.unary.slots }

// Bound is the most bytes of request messages the budget lets gRPC hold
// at once: the unary calls' share and the streams'.
func (b *RecvBudget) Bound() int64 { return (b.unary.slots + b.streams.slots) * b.maxMsg }

// InUse is the unary calls holding a reservation now.
func (b *RecvBudget) InUse() int64 { return b.unary.used.Load() }

// Waiting is the unary calls waiting for a reservation now.
func (b *RecvBudget) Waiting() int64 { return b.unary.waiting.Load() }

// Registrar returns r with every service registered through it gated by
// the budget. It serves reflection too when r lists its services.
func (b *RecvBudget) Registrar(r grpc.ServiceRegistrar) grpc.ServiceRegistrar {
	if p, ok := r.(serviceInfoProvider); ok {
		return budgetInfoRegistrar{budgetRegistrar{r, b}, p}
	}
	return budgetRegistrar{r, b}
}

type serviceInfoProvider interface {
	GetServiceInfo() map[string]grpc.ServiceInfo
}

type budgetRegistrar struct {
	r grpc.ServiceRegistrar
	b *RecvBudget
}

type budgetInfoRegistrar struct {
	budgetRegistrar
	serviceInfoProvider
}

// RegisterService registers a copy of sd whose handlers reserve before
// they read.
func (g budgetRegistrar) RegisterService(sd *grpc.ServiceDesc, impl any) {
	d := *sd
	d.Methods = make([]grpc.MethodDesc, len(sd.Methods))
	for i, m := range sd.Methods {
		m.Handler = g.b.unary.method(m.Handler)
		d.Methods[i] = m
	}
	d.Streams = make([]grpc.StreamDesc, len(sd.Streams))
	for i, s := range sd.Streams {
		s.Handler = g.b.streams.stream(s.Handler)
		d.Streams[i] = s
	}
	g.r.RegisterService(&d, impl)
}

// method reserves before the handler decodes its request (the first thing
// a unary handler does) and releases once the handler has returned, when
// nothing it decoded is needed any more.
func (g *gate) method(h grpc.MethodHandler) grpc.MethodHandler {
	return func(srv any, ctx context.Context, dec func(any) error, ic grpc.UnaryServerInterceptor) (any, error) {
		if err := g.acquire(ctx); err != nil {
			return nil, status.FromContextError(err).Err()
		}
		defer g.release()
		return h(srv, ctx, dec, ic)
	}
}

func (g *gate) stream(h grpc.StreamHandler) grpc.StreamHandler {
	return func(srv any, ss grpc.ServerStream) error {
		return h(srv, gatedStream{ss, g})
	}
}

// gatedStream reserves for each message it receives.
type gatedStream struct {
	grpc.ServerStream
	g *gate
}

func (s gatedStream) RecvMsg(m any) error {
	if err := s.g.acquire(s.Context()); err != nil {
		return status.FromContextError(err).Err()
	}
	defer s.g.release()
	return s.ServerStream.RecvMsg(m)
}

// gate is a counting semaphore whose waiters are served in order. Taking
// a free slot is one atomic compare-and-swap and no lock; the lock is for
// the queue, when the slots are all taken.
type gate struct {
	slots   int64
	used    atomic.Int64
	waiting atomic.Int64 // callers in the slow path, queued or about to be

	mu    sync.Mutex
	queue []*waiter
}

type waiter struct {
	ready   chan struct{} // closed when a slot is handed over
	granted bool          // guarded by gate.mu
}

func newGate(slots int64) *gate { return &gate{slots: slots} }

// tryTake takes a slot if one is free.
func (g *gate) tryTake() bool {
	for {
		u := g.used.Load()
		if u >= g.slots {
			return false
		}
		if g.used.CompareAndSwap(u, u+1) {
			return true
		}
	}
}

// acquire takes a slot, waiting behind earlier callers while none is free.
func (g *gate) acquire(ctx context.Context) error {
	if g.waiting.Load() == 0 && g.tryTake() {
		return nil
	}
	g.mu.Lock()
	// Counted before trying, so that a release from now on sees a waiter
	// and hands its slot over.
	g.waiting.Add(1)
	if len(g.queue) == 0 && g.tryTake() {
		g.waiting.Add(-1)
		g.mu.Unlock()
		return nil
	}
	w := &waiter{ready: make(chan struct{})}
	g.queue = append(g.queue, w)
	g.mu.Unlock()
	select {
	case <-w.ready:
		return nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	if w.granted { // handed a slot as the caller gave up: pass it on
		g.mu.Unlock()
		g.release()
		return ctx.Err()
	}
	for i, q := range g.queue {
		if q == w {
			g.queue = append(g.queue[:i], g.queue[i+1:]...)
			break
		}
	}
	g.waiting.Add(-1)
	g.mu.Unlock()
	return ctx.Err()
}

// release frees a slot and hands free slots to the waiters in order.
func (g *gate) release() {
	g.used.Add(-1)
	if g.waiting.Load() == 0 {
		return
	}
	g.mu.Lock()
	for len(g.queue) > 0 && g.tryTake() {
		w := g.queue[0]
		g.queue[0] = nil
		g.queue = g.queue[1:]
		w.granted = true
		g.waiting.Add(-1)
		close(w.ready)
	}
	g.mu.Unlock()
}
