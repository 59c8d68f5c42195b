// Package store writes changes to managed credentials where keygate serves
// its policy from: the policy file (or the fragment managed.yaml of a policy
// directory) under an exclusive lock shared with the keygate CLI, or one
// ConfigMap per organization updated with optimistic concurrency. A store
// never publishes a snapshot: every replica sees a change through its usual
// policy source, like any other edit.
package store

import (
	"context"

	"github.com/keygate/keygate/internal/policy"
	"github.com/keygate/keygate/internal/policyedit"
)

// Scope is the set of managed credentials one change touches: one
// organization's keys (Org set), or a tenant's tenant-level keys (Org
// empty). It picks where the change is written and what is serialized: two
// changes of one scope never interleave, on any number of processes.
type Scope struct {
	Tenant string
	Org    string
}

// Tx is one change in progress. Doc and Others are read under the store's
// lock (file) or at one resourceVersion (ConfigMap): what the change decides
// from them holds when it is written.
type Tx struct {
	// Doc is the text the change edits and the store writes: the policy
	// file, managed.yaml of a policy directory, or the scope's ConfigMap
	// fragment (version: 1 and nothing else when it does not exist yet).
	Doc *policyedit.Doc
	// Others are the API keys of the rest of the policy, read only: the
	// rules count them (the organization key limit) and refuse to edit them.
	Others []policy.APIKey
}

// Store writes changes of managed credentials.
type Store interface {
	// Update runs change on the scope's current state. When change returns
	// nil and has edited tx.Doc, the store checks that the whole resulting
	// policy compiles (else a *policyedit.InvalidError, nothing written)
	// and writes it; if another writer got there first (a ConfigMap
	// conflict) it runs change again on the new state. An error from change
	// is returned as is and nothing is written.
	Update(ctx context.Context, scope Scope, change func(tx *Tx) error) error
	// String says where changes go, for logs: "file examples/policy.yaml",
	// "ConfigMaps keygate-keys-* in namespace keygate".
	String() string
}
