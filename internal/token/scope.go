package token

import (
	"fmt"
	"strings"
)

// DefaultScopes are granted when a CreateRequest names none: reading market
// data and the account, and every order operation. They never include
// wallet. or apikey. operations.
func DefaultScopes() []string { return []string{"market.read", "account.read", "order.*"} }

// ValidateScope checks the syntax of one scope pattern: dot-separated
// segments, each either "*" or made of [a-z0-9_-]. Patterns that could only
// ever be meant to grant sensitive operations by wildcard ("wallet.*",
// "apikey.*") are refused, since wildcards never grant those.
func ValidateScope(p string) error {
	if p == "" || len(p) > 128 {
		return fmt.Errorf("%w: scope %q: empty or longer than 128", ErrInvalid, p)
	}
	first := true
	for seg := range strings.SplitSeq(p, ".") {
		if seg == "" {
			return fmt.Errorf("%w: scope %q: empty segment", ErrInvalid, p)
		}
		if seg != "*" {
			for i := 0; i < len(seg); i++ {
				c := seg[i]
				if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
					return fmt.Errorf("%w: scope %q: segment %q must be \"*\" or [a-z0-9_-]", ErrInvalid, p, seg)
				}
			}
		}
		if first && sensitiveSegment(seg) && strings.Contains(p, "*") {
			return fmt.Errorf("%w: scope %q: wildcards never grant %s. operations, name each one exactly", ErrInvalid, p, seg)
		}
		first = false
	}
	return nil
}

// sensitiveSegment reports whether a first segment marks operations that
// only an exact scope can grant.
func sensitiveSegment(seg string) bool { return seg == "wallet" || seg == "apikey" }

// ScopeMatches reports whether scope pattern p grants operation op.
//
// A pattern of exactly "*" matches every operation; otherwise pattern and
// operation must have the same number of dot-separated segments and each
// "*" matches exactly one non-empty segment ("order.*" matches
// "order.place" but not "order.batch.place"). Whatever the pattern, a
// wildcard never grants an operation whose first segment is "wallet" or
// "apikey": those match only an identical pattern.
func ScopeMatches(p, op string) bool {
	if p == op {
		return op != ""
	}
	if op == "" {
		return false
	}
	first, _, _ := strings.Cut(op, ".")
	if sensitiveSegment(first) {
		return false // only the exact match above grants these
	}
	if p == "*" {
		return true
	}
	for {
		ps, prest, pmore := strings.Cut(p, ".")
		os, orest, omore := strings.Cut(op, ".")
		if os == "" || (ps != "*" && ps != os) {
			return false
		}
		if pmore != omore {
			return false
		}
		if !pmore {
			return true
		}
		p, op = prest, orest
	}
}

// Allows reports whether one of the token's scopes grants operation op (a
// venue operation name such as "order.place"). See ScopeMatches.
func (t *Token) Allows(op string) bool {
	for _, p := range t.Scopes {
		if ScopeMatches(p, op) {
			return true
		}
	}
	return false
}
