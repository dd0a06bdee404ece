package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/token"
)

// TokenStore implements token.Store on the database. It holds token
// digests and attributes, never tokens.
type TokenStore struct{ d *DB }

// Tokens returns the token store of this database.
func (d *DB) Tokens() *TokenStore { return &TokenStore{d: d} }

// Token times are kept in nanoseconds so that a record read back equals the
// one written (the Service keeps nanosecond times in memory).
func nanoOf(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeOfNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// tokenRow is a record's column values, in tokenCols order after id.
func tokenRow(r token.Record) ([]any, error) {
	venues, err := json.Marshal(nonNil(r.Venues))
	if err != nil {
		return nil, err
	}
	scopes, err := json.Marshal(nonNil(r.Scopes))
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
		nanoOf(r.CreatedAt), nanoOf(r.ExpiresAt), nanoOf(r.LastUsedAt), nanoOf(r.RevokedAt), nanoOf(r.FrozenAt),
		nanoOf(r.GraceUntil), string(r.RotatedFrom), string(r.RotatedTo)}, nil
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// tokenCols lists column names, not credentials.
const tokenCols = `name, policy, venues, scopes, cidrs, test, created_at, expires_at, last_used_at, revoked_at, frozen_at, grace_until, rotated_from, rotated_to` // #nosec G101 -- column names

func isUniqueViolation(err error) bool {
	return err != nil && strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// Create implements token.Store.
func (s *TokenStore) Create(ctx context.Context, r token.Record, updated ...token.Record) error {
	row, err := tokenRow(r)
	if err != nil {
		return fmt.Errorf("sqlite: token %s: %w", r.ID, err)
	}
	return s.d.inTx(ctx, func(tx *sql.Tx) error {
		args := append([]any{string(r.ID), r.Digest[:]}, row...)
		_, err := tx.ExecContext(ctx, `INSERT INTO tokens(id, digest, `+tokenCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, args...)
		if isUniqueViolation(err) {
			return fmt.Errorf("sqlite: token %s: %w", r.ID, store.ErrExists)
		}
		if err != nil {
			return fmt.Errorf("sqlite: token %s: %w", r.ID, err)
		}
		for _, u := range updated {
			if err := updateToken(ctx, tx, u); err != nil {
				return err
			}
		}
		return nil
	})
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func updateToken(ctx context.Context, q execer, r token.Record) error {
	row, err := tokenRow(r)
	if err != nil {
		return fmt.Errorf("sqlite: token %s: %w", r.ID, err)
	}
	res, err := q.ExecContext(ctx, `UPDATE tokens SET name = ?, policy = ?, venues = ?, scopes = ?, cidrs = ?, test = ?,
		created_at = ?, expires_at = ?, last_used_at = MAX(last_used_at, ?), revoked_at = ?, frozen_at = ?, grace_until = ?,
		rotated_from = ?, rotated_to = ? WHERE id = ?`, append(row, string(r.ID))...)
	if err != nil {
		return fmt.Errorf("sqlite: token %s: %w", r.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("sqlite: token %s: %w", r.ID, err)
	} else if n == 0 {
		return fmt.Errorf("sqlite: token %s: %w", r.ID, store.ErrNotFound)
	}
	return nil
}

// Update implements token.Store. The last-used time is never lowered.
func (s *TokenStore) Update(ctx context.Context, r token.Record) error {
	return updateToken(ctx, s.d.db, r)
}

// All implements token.Store.
func (s *TokenStore) All(ctx context.Context) ([]token.Record, error) {
	rows, err := s.d.db.QueryContext(ctx, `SELECT id, digest, `+tokenCols+` FROM tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: tokens: %w", err)
	}
	defer rows.Close()
	var out []token.Record
	for rows.Next() {
		r, err := scanToken(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: tokens: %w", err)
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
		return r, fmt.Errorf("sqlite: tokens: %w", err)
	}
	r.ID, r.RotatedFrom, r.RotatedTo = token.ID(id), token.ID(from), token.ID(to)
	if len(digest) != len(r.Digest) {
		return r, fmt.Errorf("sqlite: token %s: digest of %d bytes", id, len(digest))
	}
	copy(r.Digest[:], digest)
	r.Test = test != 0
	r.CreatedAt, r.ExpiresAt, r.LastUsedAt = timeOfNano(created), timeOfNano(expires), timeOfNano(used)
	r.RevokedAt, r.FrozenAt, r.GraceUntil = timeOfNano(revoked), timeOfNano(frozen), timeOfNano(grace)
	var cs []string
	if err := errors.Join(json.Unmarshal([]byte(venues), &r.Venues), json.Unmarshal([]byte(scopes), &r.Scopes),
		json.Unmarshal([]byte(cidrs), &cs)); err != nil {
		return r, fmt.Errorf("sqlite: token %s: %w", id, err)
	}
	for _, c := range cs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return r, fmt.Errorf("sqlite: token %s: %w", id, err)
		}
		r.CIDRs = append(r.CIDRs, p)
	}
	return r, nil
}

// TouchUsed implements token.Store.
func (s *TokenStore) TouchUsed(ctx context.Context, used map[token.ID]time.Time) error {
	ids := make([]token.ID, 0, len(used))
	for id := range used {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return s.d.inTx(ctx, func(tx *sql.Tx) error {
		for _, id := range ids {
			if _, err := tx.ExecContext(ctx, `UPDATE tokens SET last_used_at = MAX(last_used_at, ?) WHERE id = ?`,
				nanoOf(used[id]), string(id)); err != nil {
				return fmt.Errorf("sqlite: touch token %s: %w", id, err)
			}
		}
		return nil
	})
}

var _ token.Store = (*TokenStore)(nil)
