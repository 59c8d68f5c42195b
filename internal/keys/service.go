package keys

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/keygate/keygate/internal/apikey"
	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/store"
)

// Service creates, rotates, revokes and lists API keys through a store.
type Service struct {
	Store store.Store
	// Policy is the policy in force: the management rules, max_org_keys and
	// the declared tenants and organizations.
	Policy func() *policy.Snapshot
	// Now is the clock (nil: time.Now); times are kept to the second.
	Now func() time.Time
}

var errNoPolicy = errors.New("no policy is loaded")

func (s *Service) begin(a Actor, scope store.Scope) (*policy.Snapshot, store.Scope, time.Time, error) {
	var snap *policy.Snapshot
	if s.Policy != nil {
		snap = s.Policy()
	}
	if snap == nil {
		return nil, scope, time.Time{}, errNoPolicy
	}
	scope, err := authorize(snap, a, scope)
	return snap, scope, s.now(), err
}

func (s *Service) now() time.Time {
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	return now.UTC().Truncate(time.Second)
}

// docKeys are the API keys of the text a change edits (tx.Others are the
// rest of the policy's).
func docKeys(tx *store.Tx) ([]policy.APIKey, error) {
	f, err := policy.Parse(tx.Doc.Name(), tx.Doc.Bytes())
	if err != nil {
		return nil, err
	}
	return f.Doc.APIKeys, nil
}

// find returns the key with id in the edited text; a key of the scope
// defined elsewhere is a conflict, anything else not found.
func find(tx *store.Tx, scope store.Scope, id string) (policy.APIKey, []policy.APIKey, error) {
	doc, err := docKeys(tx)
	if err != nil {
		return policy.APIKey{}, nil, err
	}
	for _, k := range doc {
		if k.ID == id && inScope(k, scope) {
			return k, doc, nil
		}
	}
	for _, k := range tx.Others {
		if k.ID == id && inScope(k, scope) {
			return policy.APIKey{}, nil, conflict("%s is defined outside the keys keygate manages; change it where it is defined", id)
		}
	}
	return policy.APIKey{}, nil, notFound("no API key %q among %s", id, describeScope(scope))
}

// activeOrgKeys counts the organization's keys that count against
// max_org_keys.
func activeOrgKeys(org string, now time.Time, lists ...[]policy.APIKey) int {
	n := 0
	for _, l := range lists {
		for _, k := range l {
			if k.Org == org && active(k, now) {
				n++
			}
		}
	}
	return n
}

func limitMessage(org string, n, max int) *Error {
	return limitReached("organization %q has %d of %d active organization-level keys (max_org_keys); revoke one to make another", org, n, max)
}

// newSecret makes a key id, the key and its digest.
func newSecret() (id, secret, hash string, err error) {
	if id, err = apikey.NewID(); err != nil {
		return "", "", "", err
	}
	if secret, err = apikey.New(id); err != nil {
		return "", "", "", err
	}
	return id, secret, policy.FormatDigest(apikey.Digest(secret)), nil
}

// List returns the scope's keys as the store holds them now, oldest first.
func (s *Service) List(ctx context.Context, a Actor, scope store.Scope) (Listing, error) {
	snap, scope, now, err := s.begin(a, scope)
	if err != nil {
		return Listing{}, err
	}
	l := Listing{Org: scope.Org, Tenant: scope.Tenant, Keys: []Key{}}
	if scope.Org != "" {
		l.Limit = snap.MaxOrgKeys
	}
	err = s.Store.Update(ctx, scope, func(tx *store.Tx) error {
		doc, err := docKeys(tx)
		if err != nil {
			return err
		}
		for _, list := range [][]policy.APIKey{doc, tx.Others} {
			for _, k := range list {
				if inScope(k, scope) {
					l.Keys = append(l.Keys, FromPolicy(k, now))
				}
			}
		}
		return nil
	})
	if err != nil {
		return Listing{}, err
	}
	slices.SortStableFunc(l.Keys, func(x, y Key) int {
		var xt, yt time.Time
		if x.CreatedAt != nil {
			xt = *x.CreatedAt
		}
		if y.CreatedAt != nil {
			yt = *y.CreatedAt
		}
		return cmp.Or(xt.Compare(yt), cmp.Compare(x.ID, y.ID))
	})
	for _, k := range l.Keys {
		if k.State == StateActive {
			l.Active++
		}
	}
	return l, nil
}

// Create makes a key in the scope and returns it with its secret. An
// organization that already has max_org_keys active keys gets 409
// limit_reached; the count is taken inside the store's Update, so it holds
// however many creates run at once.
func (s *Service) Create(ctx context.Context, a Actor, scope store.Scope, k NewKey) (Created, error) {
	snap, scope, now, err := s.begin(a, scope)
	if err != nil {
		return Created{}, err
	}
	e, err := entry(snap, a, k, now)
	if err != nil {
		return Created{}, err
	}
	id, secret, hash, err := newSecret()
	if err != nil {
		return Created{}, err
	}
	e.ID, e.Hash, e.Tenant, e.Org = id, hash, scope.Tenant, scope.Org
	if e.User == "" {
		e.User = a.User()
		if a.Operator() {
			e.User = id // the keygate keys create default
		}
	}
	err = s.Store.Update(ctx, scope, func(tx *store.Tx) error {
		if scope.Org != "" {
			doc, err := docKeys(tx)
			if err != nil {
				return err
			}
			if n := activeOrgKeys(scope.Org, now, doc, tx.Others); n >= snap.MaxOrgKeys {
				return limitMessage(scope.Org, n, snap.MaxOrgKeys)
			}
		}
		return tx.Doc.AddAPIKey(e)
	})
	if err != nil {
		return Created{}, err
	}
	return Created{Key: FromPolicy(e, now), Secret: secret}, nil
}

// Rotate adds a successor to key id with its scope, name, user, groups and
// environment, and lets the old key expire after overlap. See RotateKey.
func (s *Service) Rotate(ctx context.Context, a Actor, scope store.Scope, id string, overlap time.Duration) (Created, error) {
	r, err := s.RotateKey(ctx, a, scope, id, Rotation{Overlap: overlap})
	return r.Created, err
}

// RotateKey rotates key id as r says. The successor counts against
// max_org_keys like a new key, and during the overlap the old key still
// counts too (the policy compiler would refuse more active keys than the
// limit): an organization with no free slot can rotate only with overlap 0,
// which retires the old key as the successor appears. A disabled key is
// not rotated (make a new one); an API caller may rotate only keys whose
// groups it may assign.
func (s *Service) RotateKey(ctx context.Context, a Actor, scope store.Scope, id string, r Rotation) (Rotated, error) {
	snap, scope, now, err := s.begin(a, scope)
	if err != nil {
		return Rotated{}, err
	}
	if r.Overlap < 0 {
		return Rotated{}, invalid("overlap must not be negative")
	}
	var newExpiry *policy.Timestamp
	if r.ExpiresAt != nil {
		at := r.ExpiresAt.UTC().Truncate(time.Second)
		if !at.After(now) {
			return Rotated{}, invalid("expires_at %s is not in the future", at.Format(time.RFC3339))
		}
		newExpiry = &policy.Timestamp{Time: at}
	}
	newID, secret, hash, err := newSecret()
	if err != nil {
		return Rotated{}, err
	}
	var succ, old policy.APIKey
	err = s.Store.Update(ctx, scope, func(tx *store.Tx) error {
		var doc []policy.APIKey
		var err error
		if old, doc, err = find(tx, scope, id); err != nil {
			return err
		}
		if old.Disabled {
			return conflict("%s is disabled; make a new key instead of rotating it", id)
		}
		if err := assignable(snap, a, old); err != nil {
			return err
		}
		succ = policy.APIKey{ID: newID, Name: old.Name, Hash: hash, Tenant: old.Tenant, Org: old.Org, User: old.User,
			Groups: old.Groups, Environment: old.Environment, CreatedAt: &policy.Timestamp{Time: now}, CreatedBy: a.User(),
			RateLimit: old.RateLimit} // a rotated key keeps its budget
		switch {
		case newExpiry != nil:
			succ.ExpiresAt = newExpiry
		case old.ExpiresAt != nil && old.CreatedAt != nil && old.ExpiresAt.After(old.CreatedAt.Time):
			succ.ExpiresAt = &policy.Timestamp{Time: now.Add(old.ExpiresAt.Sub(old.CreatedAt.Time))}
		}
		until := now.Add(r.Overlap)
		keep := old.ExpiresAt != nil && !old.ExpiresAt.After(until)
		if scope.Org != "" {
			n := activeOrgKeys(scope.Org, now, doc, tx.Others)
			after := n + 1
			if active(old, now) && !keep && !until.After(now) {
				after-- // overlap 0: the old key retires as the successor appears
			} else if after > snap.MaxOrgKeys && active(old, now) {
				return limitReached("organization %q has %d of %d active organization-level keys (max_org_keys): "+
					"the successor needs a free slot while %s stays valid for the overlap; revoke a key first, or rotate with overlap 0s",
					scope.Org, n, snap.MaxOrgKeys, id)
			}
			if after > snap.MaxOrgKeys {
				return limitMessage(scope.Org, n, snap.MaxOrgKeys)
			}
		}
		if err := tx.Doc.AddAPIKey(succ); err != nil {
			return err
		}
		if keep {
			return nil
		}
		old.ExpiresAt = &policy.Timestamp{Time: until}
		return tx.Doc.SetExpiry(id, until)
	})
	if err != nil {
		return Rotated{}, err
	}
	return Rotated{Created: Created{Key: FromPolicy(succ, now), Secret: secret}, Old: FromPolicy(old, now)}, nil
}

// Revoke disables key id (disabled: true, the entry stays for the record)
// and returns it. Revoking a disabled key changes nothing and answers the
// same.
func (s *Service) Revoke(ctx context.Context, a Actor, scope store.Scope, id string) (Key, error) {
	k, _, err := s.RevokeKey(ctx, a, scope, id, "revoked "+s.now().Format(time.RFC3339)+" by "+a.User())
	return k, err
}

// RevokeKey is Revoke with note as the comment on the disabled line; it
// also reports whether it changed anything.
func (s *Service) RevokeKey(ctx context.Context, a Actor, scope store.Scope, id, note string) (Key, bool, error) {
	_, scope, now, err := s.begin(a, scope)
	if err != nil {
		return Key{}, false, err
	}
	var k policy.APIKey
	changed := false
	err = s.Store.Update(ctx, scope, func(tx *store.Tx) error {
		var err error
		if k, _, err = find(tx, scope, id); err != nil {
			return err
		}
		changed, err = tx.Doc.Disable(id, note)
		k.Disabled = true
		return err
	})
	if err != nil {
		return Key{}, false, err
	}
	return FromPolicy(k, now), changed, nil
}
