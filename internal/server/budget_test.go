package server

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestNewRecvBudget(t *testing.T) {
	for _, c := range []struct {
		limit, msg int64
		calls      int64
		bad        bool
	}{
		{limit: 40 << 20, msg: 10 << 20, calls: 4},
		{limit: 45 << 20, msg: 10 << 20, calls: 4}, // whole messages only
		{limit: 10 << 20, msg: 10 << 20, calls: 1},
		{limit: 9 << 20, msg: 10 << 20, bad: true},
		{limit: 1 << 20, msg: 0, bad: true},
	} {
		b, err := NewRecvBudget(c.limit, c.msg)
		if c.bad {
			if err == nil {
				t.Errorf("NewRecvBudget(%d, %d): no error", c.limit, c.msg)
			}
			continue
		}
		if err != nil {
			t.Fatalf("NewRecvBudget(%d, %d): %v", c.limit, c.msg, err)
		}
		if b.Calls() != c.calls || b.Bound() != (c.calls+1)*c.msg {
			t.Errorf("NewRecvBudget(%d, %d): %d calls, bound %d; want %d calls and one more message for streams",
				c.limit, c.msg, b.Calls(), b.Bound(), c.calls)
		}
	}
}

// capture is a registrar that keeps what is registered through it.
type capture struct{ desc *grpc.ServiceDesc }

func (c *capture) RegisterService(sd *grpc.ServiceDesc, _ any) { c.desc = sd }

// TestRecvBudgetBoundsCalls: through the registrar, no more unary calls
// than the budget holds are past the gate at once, the others wait (none
// is refused), and they all finish.
func TestRecvBudgetBoundsCalls(t *testing.T) {
	b, err := NewRecvBudget(3<<20, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var inside, most atomic.Int64
	reg := &capture{}
	b.Registrar(reg).RegisterService(&grpc.ServiceDesc{
		ServiceName: "test.Service",
		Methods: []grpc.MethodDesc{{MethodName: "Check", Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			n := inside.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(5 * time.Millisecond)
			inside.Add(-1)
			return "ok", dec(nil)
		}}},
	}, nil)
	h := reg.desc.Methods[0].Handler
	var wg sync.WaitGroup
	var answered atomic.Int64
	for range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if resp, err := h(nil, context.Background(), func(any) error { return nil }, nil); err == nil && resp == "ok" {
				answered.Add(1)
			}
		}()
	}
	wg.Wait()
	if most.Load() > 3 || most.Load() < 1 {
		t.Errorf("%d calls decoding at once, want at most 3", most.Load())
	}
	if answered.Load() != 30 {
		t.Errorf("%d of 30 calls answered", answered.Load())
	}
	if b.InUse() != 0 || b.Waiting() != 0 {
		t.Errorf("after the calls: %d reserved, %d waiting; want none", b.InUse(), b.Waiting())
	}
}

// TestGateOrderAndCancel: waiters are served in arrival order, and one
// that gives up neither keeps a slot nor loses one for the others.
func TestGateOrderAndCancel(t *testing.T) {
	g := newGate(1)
	if err := g.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	var order []int
	var mu sync.Mutex
	var wg sync.WaitGroup
	gaveUp, giveUp := context.WithCancel(context.Background())
	for i := range 4 {
		ctx := context.Background()
		if i == 1 {
			ctx = gaveUp
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := g.acquire(ctx); err != nil {
				mu.Lock()
				order = append(order, -i)
				mu.Unlock()
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			g.release()
		}()
		waitFor(t, func() bool { return g.waiting.Load() == int64(i+1) })
	}
	giveUp()
	waitFor(t, func() bool { return g.waiting.Load() == 3 })
	g.release()
	wg.Wait()
	if want := []int{-1, 0, 2, 3}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v (1 gave up first, then the others in arrival order)", order, want)
	}
	if g.used.Load() != 0 || g.waiting.Load() != 0 || len(g.queue) != 0 {
		t.Errorf("after: %d used, %d waiting, %d queued; want none", g.used.Load(), g.waiting.Load(), len(g.queue))
	}
}

func TestGateCancelAnswersWithTheCallersCode(t *testing.T) {
	b, err := NewRecvBudget(1, 1)
	if err != nil {
		t.Fatal(err)
	}
	reg := &capture{}
	b.Registrar(reg).RegisterService(&grpc.ServiceDesc{ServiceName: "t", Methods: []grpc.MethodDesc{{MethodName: "M",
		Handler: func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) { return nil, nil }}}}, nil)
	if err := b.unary.acquire(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = reg.desc.Methods[0].Handler(nil, ctx, nil, nil)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("a call whose caller gave up while waiting: %v, want DEADLINE_EXCEEDED (the caller's own)", err)
	}
}

func TestShouldReturn(t *testing.T) {
	const mib = 1 << 20
	prev := memSample{allocs: 1000 * mib}
	for _, c := range []struct {
		name string
		cur  memSample
		kept uint64 // after the last return
		want bool
	}{
		{"quiet after a burst", memSample{allocs: 1000 * mib, mapped: 400 * mib}, 50 * mib, true},
		{"quiet after the first policy load", memSample{allocs: 1000 * mib, mapped: 270 * mib}, 0, true},
		{"a little more than after the last return", memSample{allocs: 1000 * mib, mapped: 70 * mib}, 50 * mib, false},
		{"a call in flight", memSample{allocs: 1000 * mib, mapped: 400 * mib, inFlight: true}, 50 * mib, false},
		{"light traffic: a scrape, a few checks", memSample{allocs: 1002 * mib, mapped: 400 * mib}, 50 * mib, true},
		{"allocating fast: about to reuse it", memSample{allocs: 1100 * mib, mapped: 400 * mib}, 50 * mib, false},
	} {
		if got := shouldReturn(prev, c.cur, c.kept); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkRecvBudget is the gate's cost on the Check path: a reservation
// taken and released, from every P at once.
func BenchmarkRecvBudget(b *testing.B) {
	rb, err := NewRecvBudget(40<<20, 10<<20)
	if err != nil {
		b.Fatal(err)
	}
	reg := &capture{}
	rb.Registrar(reg).RegisterService(&grpc.ServiceDesc{ServiceName: "t", Methods: []grpc.MethodDesc{{MethodName: "M",
		Handler: func(any, context.Context, func(any) error, grpc.UnaryServerInterceptor) (any, error) { return nil, nil }}}}, nil)
	h := reg.desc.Methods[0].Handler
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			_, _ = h(nil, ctx, nil, nil)
		}
	})
}
