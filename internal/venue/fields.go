package venue

import (
	"context"

	"github.com/keystile/keystile/internal/secret"
)

// FieldMap adapts Credentials to the map-shaped access the session package
// takes: fn receives those of the listed fields the credential has (a
// credential's Field fails only for a missing field; the consumer reports
// which fields it needs).
func FieldMap(creds Credentials, names ...string) func(ctx context.Context, fn func(map[string]secret.Value) error) error {
	return func(ctx context.Context, fn func(map[string]secret.Value) error) error {
		return creds(ctx, func(c Credential) error {
			m := make(map[string]secret.Value, len(names))
			for _, n := range names {
				if v, err := c.Field(n); err == nil {
					m[n] = v
				}
			}
			return fn(m)
		})
	}
}
