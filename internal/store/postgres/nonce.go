package postgres

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/venue/kraken"
)

// ErrNonceRange reports a reservation that does not fit in PostgreSQL's
// signed 64-bit integers.
var ErrNonceRange = errors.New("postgres: nonce reservation out of range")

// NonceStore persists nonce high-water marks per API key. It is safe for
// concurrent use by every replica sharing the database: a reservation is
// one statement that raises the mark under the row's lock, so two
// replicas signing for one API key never get overlapping ranges, and
// ranges reserved one after the other increase.
type NonceStore struct{ d *DB }

// Nonces returns the database's nonce store.
func (d *DB) Nonces() *NonceStore { return &NonceStore{d: d} }

// Reserve implements kraken.NonceStore: in one statement it raises the
// stored high-water mark of key to max(stored+1, atLeast)+size-1 and
// returns the reserved range.
func (s *NonceStore) Reserve(ctx context.Context, key string, atLeast, size uint64) (lo, hi uint64, err error) {
	if size == 0 || atLeast > math.MaxInt64-size {
		return 0, 0, ErrNonceRange
	}
	a, n := int64(atLeast), int64(size) // #nosec G115 -- bounded above
	var h int64
	// The WHERE is checked on the locked row before SET is computed, and
	// size-1 is added last, so no step overflows, even for a range
	// ending at 2^63-1; a mark too high to take size more returns no row.
	err = s.d.pool.QueryRow(ctx, `INSERT INTO nonces(key, hwm, updated_at) VALUES ($1, $2::bigint + ($3::bigint - 1), $4)
		ON CONFLICT (key) DO UPDATE SET hwm = GREATEST(nonces.hwm + 1, $2::bigint) + ($3::bigint - 1), updated_at = $4
		WHERE nonces.hwm <= $5::bigint - $3::bigint
		RETURNING hwm`, key, a, n, time.Now().UnixNano(), int64(math.MaxInt64)).Scan(&h)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, 0, ErrNonceRange
	}
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: reserve nonces: %w", err)
	}
	hi = uint64(h) // #nosec G115 -- CHECK (hwm >= 0)
	return hi - size + 1, hi, nil
}

var _ kraken.NonceStore = (*NonceStore)(nil)
