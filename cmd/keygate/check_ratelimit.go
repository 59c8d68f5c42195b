package main

import (
	"fmt"
	"io"

	"github.com/keygate/keygate/internal/authz"
)

// checkRateLimit is one budget the request would spend from. check counts
// nothing: it shows which limits apply and whose budget each counts.
type checkRateLimit struct {
	Name     string `json:"name"`
	Requests int64  `json:"requests"`
	Per      string `json:"per"`
	By       string `json:"by"`      // key, session, user, org or tenant
	Counted  string `json:"counted"` // whose budget: the key or session id, tenant/user, organization or tenant
}

func explainRateLimits(d *authz.Decision) []checkRateLimit {
	var out []checkRateLimit
	for _, l := range d.AppliedRateLimits() {
		out = append(out, checkRateLimit{Name: l.Name, Requests: l.Requests, Per: l.Per.String(), By: l.By, Counted: l.Counted})
	}
	return out
}

func printRateLimits(w io.Writer, ls []checkRateLimit) {
	if len(ls) == 0 {
		return
	}
	fmt.Fprintln(w, "rate limits (each must have room; keygate check counts nothing):")
	for _, l := range ls {
		fmt.Fprintf(w, "  %s: %d per %s, counted by %s %s\n", l.Name, l.Requests, l.Per, l.By, l.Counted)
	}
}
