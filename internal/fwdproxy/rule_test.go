package fwdproxy

import (
	"errors"
	"fmt"
	"testing"

	"github.com/keystile/keystile/internal/token"
)

// TestTokenRule: a refused CONNECT names the token check that refused it,
// as the gateway does (token.<rule> in the audit event), the kill switch's
// included.
func TestTokenRule(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"killed by the kill switch", &token.RefusedError{ID: "tok_a", Err: token.ErrKilled}, "killed"},
		{"frozen", &token.RefusedError{ID: "tok_a", Err: token.ErrFrozen}, "frozen"},
		{"wrapped unknown", fmt.Errorf("verify: %w", token.ErrUnknown), "unknown"},
		{"source", &token.RefusedError{ID: "tok_a", Err: token.ErrSource}, "source"},
		{"anything else", errors.New("boom"), "invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tokenRule(tc.err); got != tc.want {
				t.Fatalf("tokenRule(%v) = %q, want %q", tc.err, got, tc.want)
			}
		})
	}
}
