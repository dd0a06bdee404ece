package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/token"
)

// TokenStore implements token.Store on the database. It holds token
// digests and attributes, never tokens. Create and Update bump the
// "tokens" change version in their transaction, so every replica learns
// of a revocation, freeze or rotation (see DB.Version).
type TokenStore struct{ d *DB }

// Tokens returns the token store of this database.
func (d *DB) Tokens() *TokenStore { return &TokenStore{d: d} }

// tokenCols lists column names, not credentials.
const tokenCols = `name, policy, venues, scopes, cidrs, test, created_at, expires_at, last_used_at, revoked_at, frozen_at, grace_until, rotated_from, rotated_to` // #nosec G101 -- column names

// tokenRow is a record's column values, in tokenCols order.
func tokenRow(r token.Record) ([]any, error) {
	venues, err := json.Marshal(orEmpty(r.Venues))
	if err != nil {
		return nil, err
	}
	scopes, err := json.Marshal(orEmpty(r.Scopes))
	if err != nil {
		return nil, err
	}
	cidrs := make([]string, len(r.CIDRs))
	for i, p := range r.CIDRs {
		cidrs[i] = p.String()
	}
	cj, err := json.Marshal(cidrs)
	if err != nil {
		return nil, err
	}
	test := 0
	if r.Test {
		test = 1
	}
	return []any{r.Name, r.Policy, string(venues), string(scopes), string(cj), test,
		nanos(r.CreatedAt), nanos(r.ExpiresAt), nanos(r.LastUsedAt), nanos(r.RevokedAt), nanos(r.FrozenAt),
		nanos(r.GraceUntil), string(r.RotatedFrom), string(r.RotatedTo)}, nil
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Create implements token.Store: r and every record of updated in one
// transaction.
func (s *TokenStore) Create(ctx context.Context, r token.Record, updated ...token.Record) error {
	row, err := tokenRow(r)
	if err != nil {
		return fmt.Errorf("postgres: token %s: %w", r.ID, err)
	}
	return s.d.inTx(ctx, func(tx pgx.Tx) error {
		args := append([]any{string(r.ID), r.Digest[:]}, row...)
		_, err := tx.Exec(ctx, `INSERT INTO tokens(id, digest, `+tokenCols+`)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`, args...)
		if uniqueViolation(err) {
			return fmt.Errorf("postgres: token %s: %w", r.ID, store.ErrExists)
		}
		if err != nil {
			return fmt.Errorf("postgres: token %s: %w", r.ID, err)
		}
		for _, u := range updated {
			if err := updateToken(ctx, tx, u); err != nil {
				return err
			}
		}
		return bump(ctx, tx, TopicTokens)
	})
}

func updateToken(ctx context.Context, tx pgx.Tx, r token.Record) error {
	row, err := tokenRow(r)
	if err != nil {
		return fmt.Errorf("postgres: token %s: %w", r.ID, err)
	}
	tag, err := tx.Exec(ctx, `UPDATE tokens SET name = $1, policy = $2, venues = $3, scopes = $4, cidrs = $5, test = $6,
		created_at = $7, expires_at = $8, last_used_at = GREATEST(last_used_at, $9), revoked_at = $10, frozen_at = $11,
		grace_until = $12, rotated_from = $13, rotated_to = $14 WHERE id = $15`, append(row, string(r.ID))...)
	if err != nil {
		return fmt.Errorf("postgres: token %s: %w", r.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: token %s: %w", r.ID, store.ErrNotFound)
	}
	return nil
}

// Update implements token.Store. The last-used time is never lowered.
func (s *TokenStore) Update(ctx context.Context, r token.Record) error {
	return s.d.inTx(ctx, func(tx pgx.Tx) error {
		if err := updateToken(ctx, tx, r); err != nil {
			return err
		}
		return bump(ctx, tx, TopicTokens)
	})
}

// All implements token.Store.
func (s *TokenStore) All(ctx context.Context) ([]token.Record, error) {
	rows, err := s.d.pool.Query(ctx, `SELECT id, digest, `+tokenCols+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("postgres: tokens: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (token.Record, error) { return scanToken(r) })
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func scanToken(sc interface{ Scan(...any) error }) (token.Record, error) {
	var (
		r                                              token.Record
		id, venues, scopes, cidrs, from, to            string
		digest                                         []byte
		test                                           int
		created, expires, used, revoked, frozen, grace int64
	)
	if err := sc.Scan(&id, &digest, &r.Name, &r.Policy, &venues, &scopes, &cidrs, &test,
		&created, &expires, &used, &revoked, &frozen, &grace, &from, &to); err != nil {
		return r, fmt.Errorf("postgres: tokens: %w", err)
	}
	r.ID, r.RotatedFrom, r.RotatedTo = token.ID(id), token.ID(from), token.ID(to)
	if len(digest) != len(r.Digest) {
		return r, fmt.Errorf("postgres: token %s: digest of %d bytes", id, len(digest))
	}
	copy(r.Digest[:], digest)
	r.Test = test != 0
	r.CreatedAt, r.ExpiresAt, r.LastUsedAt = fromNanos(created), fromNanos(expires), fromNanos(used)
	r.RevokedAt, r.FrozenAt, r.GraceUntil = fromNanos(revoked), fromNanos(frozen), fromNanos(grace)
	var cs []string
	if err := errors.Join(json.Unmarshal([]byte(venues), &r.Venues), json.Unmarshal([]byte(scopes), &r.Scopes),
		json.Unmarshal([]byte(cidrs), &cs)); err != nil {
		return r, fmt.Errorf("postgres: token %s: %w", id, err)
	}
	for _, c := range cs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return r, fmt.Errorf("postgres: token %s: %w", id, err)
		}
		r.CIDRs = append(r.CIDRs, p)
	}
	return r, nil
}

// TouchUsed implements token.Store. Last-use times are bookkeeping: they
// do not move the "tokens" change version (replicas need not re-read
// every token whenever one is used).
func (s *TokenStore) TouchUsed(ctx context.Context, used map[token.ID]time.Time) error {
	ids := make([]token.ID, 0, len(used))
	for id := range used {
		ids = append(ids, id)
	}
	// One order for every replica: no deadlock between two touches.
	slices.Sort(ids)
	return s.d.inTx(ctx, func(tx pgx.Tx) error {
		for _, id := range ids {
			if _, err := tx.Exec(ctx, `UPDATE tokens SET last_used_at = GREATEST(last_used_at, $1) WHERE id = $2`,
				nanos(used[id]), string(id)); err != nil {
				return fmt.Errorf("postgres: touch token %s: %w", id, err)
			}
		}
		return nil
	})
}

var _ token.Store = (*TokenStore)(nil)
