package venue_test

import (
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/venue"
)

func TestFieldSpecCheck(t *testing.T) {
	spec := venue.FieldSpec{Required: []string{"api_key"}, OneOf: [][]string{{"secret", "private_key"}}, Optional: []string{"note"}}
	for _, tc := range []struct {
		fields           []string
		missing, unknown string
	}{
		{[]string{"api_key", "secret"}, "", ""},
		{[]string{"api_key", "private_key", "note"}, "", ""},
		{[]string{"foo"}, "api_key|secret (or private_key)", "foo"},
		{[]string{"api_key", "api_secret", "zz", "aa"}, "secret (or private_key)", "aa|api_secret|zz"},
		{nil, "api_key|secret (or private_key)", ""},
	} {
		missing, unknown := spec.Check(tc.fields)
		if strings.Join(missing, "|") != tc.missing || strings.Join(unknown, "|") != tc.unknown {
			t.Errorf("Check(%q) = %q, %q; want %q, %q", tc.fields, missing, unknown, tc.missing, tc.unknown)
		}
	}
	if got := strings.Join(spec.Known(), ","); got != "api_key,secret,private_key,note" {
		t.Fatalf("Known = %s", got)
	}
}
