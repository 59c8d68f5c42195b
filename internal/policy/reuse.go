package policy

import (
	"crypto/sha256"
	"encoding/binary"
	"maps"
	"slices"
)

// A reload of a large policy usually changes a few credentials: a key
// added, renamed or disabled. Decoding and compiling the others again is
// most of a reload's work, so a load given the snapshot before it
// (Options.Previous) takes the compiled credential of every element of a
// credential array whose text is the same as one that snapshot compiled,
// in the same context (credContext), and decodes only the rest. The result
// is the snapshot a load from scratch would compile: reused credentials go
// through the same duplicate and limit checks as decoded ones.

// credContext sums what compiling a credential depends on besides its own
// text: the groups in order (a group's bit is its index), the tenants and
// their organizations, and the rate limits with their indexes. The same
// text compiles to the same principal, or the same errors, in the same
// context.
func credContext(groupNames []string, tenants map[string]bool, orgTenant map[string]string, limits map[string]uint16) [32]byte {
	h := sha256.New()
	write := func(parts ...string) {
		for _, s := range parts {
			var n [binary.MaxVarintLen64]byte
			h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
			h.Write([]byte(s))
		}
	}
	section := func(name string, n int) {
		write(name)
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], uint64(n))
		h.Write(b[:])
	}
	section("groups", len(groupNames))
	write(groupNames...)
	section("tenants", len(tenants))
	for _, t := range slices.Sorted(maps.Keys(tenants)) {
		write(t)
	}
	section("orgs", len(orgTenant))
	for _, o := range slices.Sorted(maps.Keys(orgTenant)) {
		write(o, orgTenant[o])
	}
	section("rate_limits", len(limits))
	for _, name := range slices.Sorted(maps.Keys(limits)) {
		section(name, int(limits[name]))
	}
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// reusable finds the elements of one section of a previous snapshot.
type reusable struct {
	sums   []textSum // of the section's elements, in order
	shift  int       // where the last element found stood, relative to its index now
	misses int       // elements not found where expected
	at     map[textSum]int
}

// rebuildAfter is how many elements may be missing from where they stood
// before the elements are indexed by sum: an element inserted or removed
// near the start moves every one after it, while an edit in place moves
// none, and indexing a million sums costs more than decoding a few edits.
const rebuildAfter = 64

// giveUpAfter is how many changed elements a reload handles one by one
// before, if they are most of those seen, it does the rest the way a load
// from scratch does, in one pass: a policy rewritten with other spacing, or
// other groups, changes every element.
const giveUpAfter = 1024

// guess returns the index of the element that element i of the section
// would be if the elements moved as those found last did, or -1.
func (r *reusable) guess(i int) int {
	if j := i + r.shift; j >= 0 && j < len(r.sums) {
		return j
	}
	return -1
}

// find returns the index of the element that had the text summing sum,
// now element i of the section, or -1.
func (r *reusable) find(i int, sum textSum) int {
	if j := i + r.shift; j >= 0 && j < len(r.sums) && r.sums[j] == sum {
		return j
	}
	if r.at == nil {
		if r.misses++; r.misses < rebuildAfter {
			return -1
		}
		r.at = make(map[textSum]int, len(r.sums))
		for j, s := range r.sums {
			r.at[s] = j
		}
	}
	j, ok := r.at[sum]
	if !ok {
		return -1
	}
	r.shift = j - i
	return j
}

// reuseCredentials compiles the credentials of frags into s from those of
// opt.Previous wherever their text is unchanged, decoding and compiling
// only the others, and reports whether it could. It gives up, leaving s
// and the errors as they were, at the first problem: compileCredentials
// then finds and reports every one, from scratch.
func (c *compiler) reuseCredentials(s *Snapshot, frags []*Fragment, opt Options, tenants map[string]bool, groupIdx map[string]int, groupSets map[string]*groupSet) bool {
	prev := opt.Previous
	if prev == nil || prev.credSums == nil || prev.credCtx != s.credCtx {
		return false
	}
	for _, f := range frags {
		if f.deferred == nil {
			return false
		}
	}
	nCreds := s.keyCreds + countAll(frags, "sessions")
	creds := make([]*Principal, 0, nCreds)
	used := make([]bool, len(prev.creds)) // taken by an element now
	type compiled struct {
		p *Principal
		d Digest
	}
	var changed []compiled
	errs := len(c.errs)
	sections := [...]struct {
		kind        Kind
		name        string
		first, last int // in prev.creds
	}{{KindAPIKey, "api_keys", 0, prev.keyCreds}, {KindSession, "sessions", prev.keyCreds, len(prev.creds)}}
	for _, sec := range sections {
		prior := &reusable{sums: prev.credSums[sec.first:sec.last]}
		at := 0 // the first element of a fragment's array, counted across fragments
		for _, f := range frags {
			first, keptAt, ok := at, -1, true
			at += f.credentialCount(sec.name)
			err := f.eachCredential(sec.name, func(i int, sum textSum) bool {
				keptAt = prior.find(first+i, sum)
				return keptAt >= 0
			}, func(i int, spec credSpec, kept bool) bool {
				if opt.Pace != nil && i%paceEvery == paceEvery-1 {
					opt.Pace()
				}
				if kept {
					j := sec.first + keptAt
					if ok = !used[j]; ok { // else the same text twice: a duplicate
						used[j] = true
						creds = append(creds, prev.creds[j])
					}
					return ok
				}
				p := new(Principal)
				var d Digest
				if d, ok = c.credential(p, sec.kind, spec, credLoc{f, sec.name, i}, tenants, s.orgTenant, groupIdx, len(s.groupNames), groupSets); ok {
					changed = append(changed, compiled{p, d})
					creds = append(creds, p)
					ok = len(changed) <= giveUpAfter || 2*len(changed) <= len(creds)
				}
				return ok
			})
			if err != nil || !ok {
				c.errs = c.errs[:errs]
				return false
			}
		}
	}

	// The previous snapshot's maps, less the credentials no element took,
	// plus those compiled here: a duplicate among them gives up. Finding
	// what to delete takes a pass over the maps, which is cheaper than
	// keeping every credential's digest for it.
	keys, sessions, ids := maps.Clone(prev.keys), maps.Clone(prev.sessions), maps.Clone(prev.ids)
	gone := map[*Principal]bool{}
	for j, taken := range used {
		if !taken {
			gone[prev.creds[j]] = true
			delete(ids, prev.creds[j].ID)
		}
	}
	if len(gone) > 0 {
		for _, m := range [...]map[Digest]*Principal{keys, sessions} {
			maps.DeleteFunc(m, func(_ Digest, p *Principal) bool { return gone[p] })
		}
	}
	for _, k := range changed {
		own, other := keys, sessions
		if k.p.Kind == KindSession {
			own, other = other, own
		}
		n := len(ids)
		if ids[k.p.ID] = struct{}{}; len(ids) == n {
			return false
		}
		n = len(own)
		if own[k.d] = k.p; len(own) == n || other[k.d] != nil {
			return false
		}
	}
	// The organization key limit counts at now, so it is counted again.
	now := s.LoadedAt.UnixNano()
	orgKeys := map[string]int{}
	for _, p := range creds[:s.keyCreds] {
		if p.Org != "" && !p.Disabled && !p.ExpiredAt(now) {
			if orgKeys[p.Org]++; orgKeys[p.Org] > s.MaxOrgKeys {
				return false
			}
		}
	}
	s.creds = creds
	s.credSums, s.credLens = elementSums(frags)
	s.keys, s.sessions, s.ids = keys, sessions, ids
	s.reused = len(creds) - len(changed)
	return true
}

// elementSums are the sums and lengths of every credential element in compile order
// (api_keys, then sessions, each across fragments), or nil if a fragment's
// were not deferred (YAML, or decoded whole to locate an error).
func elementSums(frags []*Fragment) ([]textSum, []uint32) {
	var sums [][]textSum
	var lens [][]uint32
	for _, section := range [...]string{"api_keys", "sessions"} {
		for _, f := range frags {
			if f.deferred == nil {
				return nil, nil
			}
			if d := f.deferred[section]; d != nil && d.n > 0 {
				sums, lens = append(sums, d.sums), append(lens, d.lens)
			}
		}
	}
	if len(sums) == 1 {
		return sums[0], lens[0] // a million keys in one file are not copied
	}
	return slices.Concat(sums...), slices.Concat(lens...)
}

// Reused is how many credentials the load took from Options.Previous
// instead of compiling them again.
func (s *Snapshot) Reused() int { return s.reused }
