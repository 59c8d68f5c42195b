package server

import "sync"

// reports are the components besides the policy that /readyz?verbose
// describes, such as the session store: what is wrong with one shows
// there (and in its metrics) without making keygate unready, since
// requests that do not need it are still decided.
type reports struct {
	mu     sync.Mutex
	byName map[string]func() any
}

// Report adds a component to /readyz?verbose under "components": status is
// called on each request and encoded as JSON. It must name no secret.
func (h *Health) Report(name string, status func() any) {
	h.reports.mu.Lock()
	defer h.reports.mu.Unlock()
	if h.reports.byName == nil {
		h.reports.byName = map[string]func() any{}
	}
	h.reports.byName[name] = status
}

func (r *reports) status() map[string]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]any, len(r.byName))
	for name, f := range r.byName {
		out[name] = f()
	}
	return out
}
