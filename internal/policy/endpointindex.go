package policy

import (
	"math"
	"strings"
)

// endpointIndex finds the first endpoint, in policy order, that matches a
// request. It tries only the endpoints whose path pattern matches the path
// and whose host is not a different exact host, so its cost does not grow
// with the endpoints a request cannot match; endpoints with the same pattern
// that differ only in methods or wildcard host are still tried one by one.
//
// Endpoints are kept in tries over their path patterns, one for each exact
// host and one for endpoints of any host or a wildcard host. A literal
// segment is an edge labelled with its text; a capture or * is a node's one
// wildcard edge, taken by any non-empty segment. An endpoint is listed at the
// node its pattern leads to: in rest when the pattern ends in **, else in
// exact. The endpoints whose path pattern matches a request path are exactly
// those listed in rest at the nodes the path passes through and in exact at
// the node where it ends, so no other endpoint is tried. Each candidate is
// still checked in full with Endpoint.Match, so the index only decides which
// endpoints are tried, never whether one matches.
type endpointIndex struct {
	any   *indexNode            // endpoints of any host or a wildcard host
	hosts map[string]*indexNode // endpoints of one exact host
}

type indexNode struct {
	lit   map[string]*indexNode
	wild  *indexNode
	exact []int32 // endpoints whose pattern ends here, ascending
	rest  []int32 // endpoints whose pattern ends here with **, ascending
	first int32   // the lowest endpoint listed in this subtree
}

func newIndexNode() *indexNode { return &indexNode{first: math.MaxInt32} }

// newEndpointIndex indexes endpoints, which are in match order.
func newEndpointIndex(eps []*Endpoint) *endpointIndex {
	ix := &endpointIndex{any: newIndexNode()}
	for i, e := range eps {
		root := ix.any
		if e.host != "" && !strings.HasPrefix(e.host, "*.") {
			if ix.hosts == nil {
				ix.hosts = map[string]*indexNode{}
			}
			if root = ix.hosts[e.host]; root == nil {
				root = newIndexNode()
				ix.hosts[e.host] = root
			}
		}
		addEndpoint(root, e.path, int32(i))
	}
	return ix
}

func addEndpoint(n *indexNode, pt pattern, i int32) {
	n.first = min(n.first, i)
	rest := false
	for _, s := range pt.segs {
		switch s.kind {
		case segRest:
			rest = true
			continue
		case segLiteral:
			c := n.lit[s.lit]
			if c == nil {
				if n.lit == nil {
					n.lit = map[string]*indexNode{}
				}
				c = newIndexNode()
				n.lit[s.lit] = c
			}
			n = c
		default:
			if n.wild == nil {
				n.wild = newIndexNode()
			}
			n = n.wild
		}
		n.first = min(n.first, i)
	}
	if rest {
		n.rest = append(n.rest, i)
	} else {
		n.exact = append(n.exact, i)
	}
}

// indexSearch is the state of one match: the request and the best endpoint
// found so far. It lives on the caller's stack.
type indexSearch struct {
	eps                []*Endpoint
	method, host, path string
	best               int32 // len(eps) while none matched
	org                string
}

// match returns the first endpoint in eps that matches, as a linear scan
// of eps would, and the organization it captured from the path.
func (ix *endpointIndex) match(eps []*Endpoint, method, host, path string) (*Endpoint, string) {
	if path == "" || path[0] != '/' {
		return nil, "" // no pattern matches it
	}
	st := indexSearch{eps: eps, method: method, host: host, path: path, best: int32(len(eps))}
	rest := path[1:]
	st.visit(ix.any, rest, rest != "")
	if len(ix.hosts) > 0 {
		if n := ix.hosts[host]; n != nil {
			st.visit(n, rest, rest != "")
		}
	}
	if st.best == int32(len(eps)) {
		return nil, ""
	}
	return eps[st.best], st.org
}

// visit tries the endpoints at n and below it that the rest of the path can
// match; more says whether a segment is left (rest may be an empty one). It
// splits segments as pattern.match does.
func (st *indexSearch) visit(n *indexNode, rest string, more bool) {
	if n.first >= st.best {
		return
	}
	st.try(n.rest)
	if !more {
		st.try(n.exact)
		return
	}
	seg := rest
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		seg, rest = rest[:j], rest[j+1:]
	} else {
		rest, more = "", false
	}
	a, b := n.lit[seg], n.wild
	if seg == "" {
		b = nil // a wildcard takes a non-empty segment only
	}
	if a != nil && b != nil && b.first < a.first {
		a, b = b, a // the subtree with the earlier endpoints first, to prune the other
	}
	if a != nil {
		st.visit(a, rest, more)
	}
	if b != nil {
		st.visit(b, rest, more)
	}
}

// try checks the endpoints of list, ascending, that come before the best
// found so far, and keeps the first that matches.
func (st *indexSearch) try(list []int32) {
	for _, i := range list {
		if i >= st.best {
			return
		}
		if org, ok := st.eps[i].Match(st.method, st.host, st.path); ok {
			st.best, st.org = i, org
			return
		}
	}
}
