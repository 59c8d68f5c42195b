package policyedit

import (
	"strings"
	"time"

	"github.com/keygate/keygate/internal/policy"
)

// field is one key of a credential entry, its value already written as YAML.
type field struct{ key, value string }

func apiKeyFields(k policy.APIKey, flow bool) []field {
	fs := []field{{"id", scalar(k.ID, flow)}}
	fs = addString(fs, "name", k.Name, flow)
	fs = append(fs, field{"hash", quoted(k.Hash)})
	fs = addString(fs, "tenant", k.Tenant, flow)
	fs = addString(fs, "org", k.Org, flow)
	fs = addString(fs, "user", k.User, flow)
	fs = addList(fs, "groups", k.Groups)
	fs = addString(fs, "environment", k.Environment, flow)
	fs = addTime(fs, "created_at", k.CreatedAt)
	fs = addString(fs, "created_by", k.CreatedBy, flow)
	fs = addTime(fs, "expires_at", k.ExpiresAt)
	fs = addString(fs, "rate_limit", k.RateLimit, flow)
	if k.Disabled {
		fs = append(fs, field{"disabled", "true"})
	}
	return fs
}

func sessionFields(s policy.Session, flow bool) []field {
	fs := []field{{"id", scalar(s.ID, flow)}, {"hash", quoted(s.Hash)}}
	fs = addString(fs, "user", s.User, flow)
	fs = addString(fs, "tenant", s.Tenant, flow)
	fs = addString(fs, "org", s.Org, flow)
	fs = addList(fs, "groups", s.Groups)
	fs = addTime(fs, "expires_at", s.ExpiresAt)
	fs = addString(fs, "rate_limit", s.RateLimit, flow)
	if s.Disabled {
		fs = append(fs, field{"disabled", "true"})
	}
	return fs
}

func addString(fs []field, key, v string, flow bool) []field {
	if v == "" {
		return fs
	}
	return append(fs, field{key, scalar(v, flow)})
}

func addList(fs []field, key string, vs []string) []field {
	if len(vs) == 0 {
		return fs
	}
	items := make([]string, len(vs))
	for i, v := range vs {
		items[i] = scalar(v, true)
	}
	return append(fs, field{key, "[" + strings.Join(items, ", ") + "]"})
}

func addTime(fs []field, key string, t *policy.Timestamp) []field {
	if t == nil {
		return fs
	}
	return append(fs, field{key, formatTime(t.Time)})
}

func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// blockItem writes fields as a block sequence item: the dash at indent
// spaces, keys at indent+offset.
func blockItem(fs []field, indent, offset int) []string {
	out := make([]string, len(fs))
	pad := strings.Repeat(" ", indent+offset)
	for i, f := range fs {
		if i == 0 {
			out[i] = strings.Repeat(" ", indent) + "-" + strings.Repeat(" ", offset-1) + f.key + ": " + f.value
		} else {
			out[i] = pad + f.key + ": " + f.value
		}
	}
	return out
}

// flowItem writes fields as a one-line flow mapping item.
func flowItem(fs []field, indent int) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		parts[i] = f.key + ": " + f.value
	}
	return strings.Repeat(" ", indent) + "- {" + strings.Join(parts, ", ") + "}"
}

// FormatAPIKey writes k as an item to paste under api_keys:, in the layout
// keygate writes into policy files ("- id: ..." and two-space keys).
func FormatAPIKey(k policy.APIKey) string {
	return strings.Join(blockItem(apiKeyFields(k, false), 0, 2), "\n") + "\n"
}

// FormatSession writes s as an item to paste under sessions:.
func FormatSession(s policy.Session) string {
	return strings.Join(blockItem(sessionFields(s, false), 0, 2), "\n") + "\n"
}
