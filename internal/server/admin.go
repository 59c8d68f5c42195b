package server

import (
	"encoding/json"
	"net/http"
	"sync/atomic"
	"unicode/utf8"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/source"
)

// Health tracks readiness: ready once a policy snapshot is loaded, and not
// ready again once shutdown begins, so load balancers drain first.
type Health struct {
	store    *source.Store
	draining atomic.Bool
	reports  reports // components shown by /readyz?verbose (components.go)
}

// NewHealth returns readiness backed by store.
func NewHealth(store *source.Store) *Health { return &Health{store: store} }

// Drain marks the process as shutting down.
func (h *Health) Drain() { h.draining.Store(true) }

// Ready reports whether keygate should receive traffic, and why not.
func (h *Health) Ready() (bool, string) {
	switch {
	case h.draining.Load():
		return false, "shutting down"
	case h.store.Current() == nil:
		return false, "no policy loaded yet"
	}
	return true, "ok"
}

// maxPublicError bounds last_error on /readyz?verbose: the first problem's
// file:line, field path and message fit; a long tail does not.
const maxPublicError = 300

// publicError is the reload error as /readyz?verbose, which anyone who
// reaches the admin port may read, shows it: the log's line (file:line,
// field path and what is wrong, values from the policy already quoted only
// in part by the policy package), with keygate keys redacted and the whole
// bounded. Redacting comes first, so the cut cannot leave part of a key.
func publicError(msg string) string {
	msg = apikey.Redact(msg)
	if len(msg) <= maxPublicError {
		return msg
	}
	n := maxPublicError
	for n > 0 && !utf8.RuneStart(msg[n]) {
		n--
	}
	return msg[:n] + "…"
}

// AdminHandler serves /healthz (the process is alive), /readyz (a policy is
// loaded and keygate is not draining; ?verbose shows reload status) and
// extra handlers such as /metrics.
func AdminHandler(h *Health, extra map[string]http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ready, why := h.Ready()
		if _, verbose := r.URL.Query()["verbose"]; verbose {
			w.Header().Set("Content-Type", "application/json")
			if !ready {
				w.WriteHeader(http.StatusServiceUnavailable)
			}
			st := h.store.Status()
			var gen uint64
			var src string
			if snap := h.store.Current(); snap != nil {
				gen, src = snap.Generation, snap.Source
			}
			out := map[string]any{
				"ready": ready, "reason": why, "generation": gen,
				"last_success": st.LastSuccess, "last_reload_ok": st.LastReloadOK,
				"last_error": publicError(st.LastError), "reloads_ok": st.ReloadsOK,
				"reloads_failed": st.ReloadsFailed, "source": src,
			}
			if c := h.reports.status(); len(c) > 0 {
				out["components"] = c
			}
			_ = json.NewEncoder(w).Encode(out)
			return
		}
		if !ready {
			http.Error(w, why, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	for path, handler := range extra {
		mux.Handle(path, handler)
	}
	return mux
}
