package venue

import (
	"slices"
	"strings"
)

// FieldSpec declares the credential fields a venue reads, so that a
// credential can be checked when it is stored rather than when the first
// request fails.
type FieldSpec struct {
	// Required fields must all be present.
	Required []string
	// OneOf are groups of alternatives: of each group at least one field
	// must be present (Binance: secret or private_key).
	OneOf [][]string
	// Optional fields are read when present.
	Optional []string
}

// Known lists every field the venue reads, in declaration order.
func (s FieldSpec) Known() []string {
	out := slices.Clone(s.Required)
	for _, g := range s.OneOf {
		out = append(out, g...)
	}
	return append(out, s.Optional...)
}

// Check compares the names of a credential's fields with the spec. missing
// names what is absent (a group as Alternatives); unknown the fields the
// venue never reads, sorted.
func (s FieldSpec) Check(fields []string) (missing, unknown []string) {
	for _, f := range s.Required {
		if !slices.Contains(fields, f) {
			missing = append(missing, f)
		}
	}
	for _, g := range s.OneOf {
		if !slices.ContainsFunc(g, func(f string) bool { return slices.Contains(fields, f) }) {
			missing = append(missing, Alternatives(g))
		}
	}
	known := s.Known()
	for _, f := range fields {
		if !slices.Contains(known, f) {
			unknown = append(unknown, f)
		}
	}
	slices.Sort(unknown)
	return missing, unknown
}

// Alternatives names a OneOf group in messages: "secret (or private_key)".
func Alternatives(g []string) string {
	if len(g) < 2 {
		return strings.Join(g, "")
	}
	return g[0] + " (or " + strings.Join(g[1:], " or ") + ")"
}
