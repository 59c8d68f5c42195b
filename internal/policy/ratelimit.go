package policy

import (
	"math"
	"strconv"
	"time"
)

// RateLimit is a named budget as the policy writes it: requests per period,
// which may be spent at once.
type RateLimit struct {
	Name     string    `yaml:"name" json:"name"`
	Requests int64     `yaml:"requests" json:"requests"`
	Per      *Duration `yaml:"per" json:"per"`
}

// EndpointRateLimit applies a named limit to an endpoint, counted by one
// identity of the caller.
type EndpointRateLimit struct {
	Name string `yaml:"name" json:"name"`
	By   string `yaml:"by" json:"by"` // key (default), user, org or tenant
}

// Bounds of a limit. per is a whole number of seconds because the
// rate-limit headers count in seconds.
const (
	MinRateLimitPer       = time.Second
	MaxRateLimitPer       = 24 * time.Hour
	MaxRateLimitRequests  = 1_000_000_000
	MaxRateLimitPerSecond = 1_000_000      // a request at least every microsecond: what the stores count precisely
	maxRateLimits         = math.MaxUint16 // a principal names its limit in 16 bits
)

// RateLimitBy says whose budget an endpoint's limit counts a request in.
type RateLimitBy uint8

const (
	ByKey    RateLimitBy = iota + 1 // the verified credential: the key, else the session
	ByUser                          // the acting user, within its tenant
	ByOrg                           // the organization the request acts on; a tenant-level caller without one, its tenant
	ByTenant                        // the tenant of the verified credentials
)

func (b RateLimitBy) String() string {
	switch b {
	case ByKey:
		return "key"
	case ByUser:
		return "user"
	case ByOrg:
		return "org"
	case ByTenant:
		return "tenant"
	}
	return ""
}

// Limit is a compiled rate limit. One Limit is shared by every key,
// session and endpoint that names it.
type Limit struct {
	Name     string
	Requests int64
	Per      time.Duration
	// PolicyHeader is its item of the IETF RateLimit-Policy header,
	// `"NAME";q=REQUESTS;w=SECONDS`, built once here.
	PolicyHeader string
}

// RateLimits returns the policy's limits in the order written. Read only.
func (s *Snapshot) RateLimits() []*Limit { return s.limits }

// RateLimit returns the limit with the given name, or nil.
func (s *Snapshot) RateLimit(name string) *Limit {
	for _, l := range s.limits {
		if l.Name == name {
			return l
		}
	}
	return nil
}

// RateLimitOf returns a principal's own limit, or nil. p must come from
// this snapshot.
func (s *Snapshot) RateLimitOf(p *Principal) *Limit {
	if p == nil || p.rateLimit == 0 {
		return nil
	}
	return s.limits[p.rateLimit-1]
}

// limitTable is what compiling the rate_limits section leaves for the
// endpoints and credentials that name a limit.
type limitTable struct {
	byName map[string]uint16 // 1 + the index in Snapshot.limits
	list   []*Limit
}

// rateLimits compiles every fragment's rate_limits into s. It runs before
// the endpoints and credentials, which name the limits.
func (c *compiler) rateLimits(s *Snapshot, frags []*Fragment) {
	c.limits = &limitTable{byName: map[string]uint16{}}
	for _, f := range frags {
		for i, rl := range f.Doc.RateLimits {
			l := loc{f: f}.at("rate_limits", i)
			ok := true
			if !validName(rl.Name) {
				c.errorf(l.at("name"), "rate limit name %q must be letters, digits, '-', '_' or '.'", rl.Name)
				ok = false
			}
			if rl.Requests < 1 || rl.Requests > MaxRateLimitRequests {
				c.errorf(l.at("requests"), "requests must be between 1 and %d, not %d", MaxRateLimitRequests, rl.Requests)
				ok = false
			}
			var per time.Duration
			if ok && rl.Per != nil && rl.Per.Duration >= MinRateLimitPer && float64(rl.Requests) > rl.Per.Seconds()*MaxRateLimitPerSecond {
				c.errorf(l.at("requests"), "%d requests per %s is more than %d a second, more than keygate counts", rl.Requests, rl.Per.Duration, MaxRateLimitPerSecond)
				ok = false
			}
			switch {
			case rl.Per == nil:
				c.errorf(l.at("per"), "per is required: the period the requests are counted over, from 1s to 24h")
				ok = false
			case rl.Per.Duration < MinRateLimitPer || rl.Per.Duration > MaxRateLimitPer:
				c.errorf(l.at("per"), "per must be between 1s and 24h, not %s", rl.Per.Duration)
				ok = false
			case rl.Per.Duration%time.Second != 0:
				c.errorf(l.at("per"), "per must be a whole number of seconds (the rate-limit headers count in seconds), not %s", rl.Per.Duration)
				ok = false
			default:
				per = rl.Per.Duration
			}
			if !ok || !c.unique("rate limit", rl.Name, l) {
				continue
			}
			if len(c.limits.list) == maxRateLimits {
				c.errorf(l, "a policy may define at most %d rate limits", maxRateLimits)
				continue
			}
			c.limits.list = append(c.limits.list, &Limit{
				Name: rl.Name, Requests: rl.Requests, Per: per,
				PolicyHeader: strconv.Quote(rl.Name) + ";q=" + strconv.FormatInt(rl.Requests, 10) + ";w=" + strconv.FormatInt(int64(per/time.Second), 10),
			})
			c.limits.byName[rl.Name] = uint16(len(c.limits.list))
		}
	}
	s.limits = c.limits.list
}

// endpointRateLimit compiles an endpoint's rate_limit into e; false when it
// is wrong (and said so).
func (c *compiler) endpointRateLimit(e *Endpoint, ep *EndpointRule, l loc) bool {
	rl := ep.RateLimit
	if rl == nil {
		return true
	}
	l = l.at("rate_limit")
	ok := true
	if ep.Anonymous {
		c.errorf(l, "an anonymous endpoint cannot have a rate limit: only requests whose credentials verified are counted")
		ok = false
	}
	switch rl.By {
	case "", "key":
		e.RateLimitBy = ByKey
	case "user":
		e.RateLimitBy = ByUser
	case "org":
		e.RateLimitBy = ByOrg
	case "tenant":
		e.RateLimitBy = ByTenant
	default:
		c.errorf(l.at("by"), "rate_limit.by must be key, user, org or tenant, not %q", rl.By)
		ok = false
	}
	idx, known := c.limits.byName[rl.Name]
	switch {
	case rl.Name == "":
		c.errorf(l.at("name"), "rate_limit.name is required: one of the limits under rate_limits")
		ok = false
	case !known:
		c.errorf(l.at("name"), "rate limit %q is not declared under rate_limits", rl.Name)
		ok = false
	default:
		e.RateLimit = c.limits.list[idx-1]
	}
	return ok
}

// credentialRateLimit sets a credential's own limit; false when it names
// one that is not declared (and said so).
func (c *compiler) credentialRateLimit(p *Principal, name string, cl credLoc) bool {
	if name == "" {
		return true
	}
	idx, known := c.limits.byName[name]
	if !known {
		c.errorf(cl.loc().at("rate_limit"), "rate limit %q is not declared under rate_limits", name)
		return false
	}
	p.rateLimit = idx
	return true
}
