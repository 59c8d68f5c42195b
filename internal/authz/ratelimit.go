package authz

import (
	"strconv"
	"time"

	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/ratelimit"
)

// limits is how an Authorizer counts requests against the policy's rate
// limits.
type limits struct {
	limiter  *ratelimit.Limiter // nil: nothing is counted; decisions still name the limit
	failOpen bool
}

// WithRateLimiter counts, in l, every request an endpoint would otherwise
// allow against the rate limits that apply to it. When l cannot answer
// (Redis unreachable or slow), failOpen allows the request; otherwise it is
// denied with 503, reason ratelimit_unavailable. Without this option no
// request is counted, and a decision only names the limit that applies
// (for Envoy's own rate limit service, through the dynamic metadata).
func WithRateLimiter(l *ratelimit.Limiter, failOpen bool) Option {
	return func(a *Authorizer) { a.limits = limits{limiter: l, failOpen: failOpen} }
}

// RateLimitState is what a decision says about rate limits.
type RateLimitState struct {
	// Limit is the limit a 429 exceeded; on an allow, the first that
	// applied: the endpoint's, else the key's own, else the session's own.
	// nil when none applies.
	Limit *policy.Limit
	// Counted is whose budget of Limit: the key or session id, the user
	// (within Decision.Tenant), the organization or the tenant.
	Counted string
	// RetryAfter and Reset are, for a 429, how long until the budget has
	// room for one more request and until it is full again.
	RetryAfter, Reset time.Duration
	// StoreFailed: the store could not answer, and --ratelimit-failure
	// decided (open: allowed; closed: 503).
	StoreFailed bool
}

// maxLimits is how many limits can apply to one request: the endpoint's,
// the key's own and the session's own.
const maxLimits = 3

// rateLimit counts an otherwise allowed request against every limit that
// applies, and says whether it is over one (ReasonRateLimited) or could not
// be counted with the failure mode closed (ReasonRateLimitUnavailable).
// Only verified credentials reach here: a flood of bad keys spends no
// one's budget.
func (a *Authorizer) rateLimit(d *Decision, e *policy.Endpoint, now int64) Reason {
	var bs [maxLimits]ratelimit.Bucket
	var ls [maxLimits]*policy.Limit
	n := d.rateBuckets(e, &bs, &ls)
	if n == 0 {
		return ReasonAllowed
	}
	d.RateLimit.Limit, d.RateLimit.Counted = ls[0], bs[0].ID
	if a.limits.limiter == nil {
		return ReasonAllowed
	}
	v, err := a.limits.limiter.Take(time.Unix(0, now), bs[:n])
	switch {
	case err != nil:
		d.RateLimit.StoreFailed = true
		if a.limits.failOpen {
			return ReasonAllowed
		}
		return ReasonRateLimitUnavailable
	case !v.Allowed:
		d.RateLimit = RateLimitState{Limit: ls[v.Denied], Counted: bs[v.Denied].ID, RetryAfter: v.RetryAfter, Reset: v.Reset}
		return ReasonRateLimited
	}
	return ReasonAllowed
}

func rateLimitStatus(r Reason) int {
	if r == ReasonRateLimited {
		return 429
	}
	return 503
}

// rateBuckets fills bs with the budgets a request on e spends from, and ls
// with their limits, and returns how many. A limit named in several places
// and counted by the same identity is one budget, spent once.
func (d *Decision) rateBuckets(e *policy.Endpoint, bs *[maxLimits]ratelimit.Bucket, ls *[maxLimits]*policy.Limit) int {
	n := 0
	add := func(l *policy.Limit, by, scope, id string) {
		b := ratelimit.Bucket{Name: l.Name, Requests: l.Requests, Per: l.Per, By: by, Scope: scope, ID: id}
		for i := range n {
			if bs[i] == b {
				return
			}
		}
		bs[n], ls[n] = b, l
		n++
	}
	if e != nil && e.RateLimit != nil {
		by, scope, id := d.countedBy(e.RateLimitBy)
		add(e.RateLimit, by, scope, id)
	}
	if l := d.Snapshot.RateLimitOf(d.Key); l != nil {
		add(l, "key", "", d.Key.ID)
	}
	if l := d.Snapshot.RateLimitOf(d.Session); l != nil {
		add(l, "session", "", d.Session.ID)
	}
	return n
}

// countedBy is the identity an endpoint's limit counts a request by: the
// key (else the session), the user within its tenant, the organization the
// request acts on (a tenant-level caller without one: its tenant), or the
// tenant.
func (d *Decision) countedBy(by policy.RateLimitBy) (kind, scope, id string) {
	switch by {
	case policy.ByUser:
		return "user", d.Tenant, d.User()
	case policy.ByOrg:
		if d.Org != "" {
			return "org", "", d.Org
		}
		return "tenant", "", d.Tenant
	case policy.ByTenant:
		return "tenant", "", d.Tenant
	}
	if d.Key != nil {
		return "key", "", d.Key.ID
	}
	return "session", "", d.Session.ID
}

// AppliedRateLimit is one budget a request spends from, for people
// (keygate check).
type AppliedRateLimit struct {
	Name     string
	Requests int64
	Per      time.Duration
	By       string // key, session, user, org or tenant
	Counted  string // whose budget: the key or session id, user, organization or tenant
}

// AppliedRateLimits lists the budgets an allowed request on d's endpoint
// spends from; none for a denial or an anonymous endpoint.
func (d *Decision) AppliedRateLimits() []AppliedRateLimit {
	if d.Result != Allow && d.Reason != ReasonRateLimited && d.Reason != ReasonRateLimitUnavailable || d.Endpoint == nil || d.Endpoint.Anonymous {
		return nil
	}
	var bs [maxLimits]ratelimit.Bucket
	var ls [maxLimits]*policy.Limit
	n := d.rateBuckets(d.Endpoint, &bs, &ls)
	out := make([]AppliedRateLimit, n)
	for i, b := range bs[:n] {
		counted := b.ID
		if b.Scope != "" {
			counted = b.Scope + "/" + b.ID
		}
		out[i] = AppliedRateLimit{Name: b.Name, Requests: b.Requests, Per: b.Per, By: b.By, Counted: counted}
	}
	return out
}

// RateLimitHeaders appends the headers of a 429: retry-after, and the IETF
// httpapi rate-limit headers for the limit exceeded, ratelimit-policy
// (`"NAME";q=REQUESTS;w=SECONDS`) and ratelimit (`"NAME";r=0;t=SECONDS`,
// no requests remaining and the seconds until the budget is full again).
func (d *Decision) RateLimitHeaders(dst []Header) []Header {
	rl := &d.RateLimit
	if d.Result != Deny || d.Reason != ReasonRateLimited || rl.Limit == nil {
		return dst
	}
	retry := max(ratelimit.Seconds(rl.RetryAfter), 1) // 0 would invite an immediate retry, refused again
	reset := max(ratelimit.Seconds(rl.Reset), retry)
	return append(dst,
		Header{Name: "retry-after", Value: strconv.FormatInt(retry, 10)},
		Header{Name: "ratelimit-policy", Value: rl.Limit.PolicyHeader},
		Header{Name: "ratelimit", Value: strconv.Quote(rl.Limit.Name) + ";r=0;t=" + strconv.FormatInt(reset, 10)},
	)
}

// rateLimitBody is the error and message of a rate-limit denial's body.
func (d *Decision) rateLimitBody() (code, message string, ok bool) {
	switch d.Reason {
	case ReasonRateLimited:
		return "rate_limited", "too many requests: retry after " + strconv.FormatInt(max(ratelimit.Seconds(d.RateLimit.RetryAfter), 1), 10) + " seconds", true
	case ReasonRateLimitUnavailable:
		return "unavailable", "the request could not be counted against its rate limit; try again shortly", true
	}
	return "", "", false
}
