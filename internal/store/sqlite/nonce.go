package sqlite

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/keystile/keystile/internal/venue/kraken"
)

// ErrNonceRange reports a reservation that does not fit in SQLite's signed
// 64-bit integers.
var ErrNonceRange = errors.New("sqlite: nonce reservation out of range")

// NonceStore persists nonce high-water marks per API key. It is safe for
// concurrent use, also by several processes sharing the database file.
type NonceStore struct{ d *DB }

// Nonces returns the database's nonce store.
func (d *DB) Nonces() *NonceStore { return &NonceStore{d: d} }

// Reserve implements kraken.NonceStore: in one statement it raises the
// stored high-water mark of key to max(stored+1, atLeast)+size-1 and
// returns the reserved range.
func (s *NonceStore) Reserve(ctx context.Context, key string, atLeast, size uint64) (lo, hi uint64, err error) {
	if size == 0 || atLeast > math.MaxInt64-(size-1) {
		return 0, 0, ErrNonceRange
	}
	a, n := int64(atLeast), int64(size) // #nosec G115 -- bounded above
	var h int64
	err = s.d.db.QueryRowContext(ctx, `INSERT INTO nonces(key, hwm, updated_at) VALUES (?1, ?2 + (?3 - 1), ?4)
		ON CONFLICT(key) DO UPDATE SET hwm = max(hwm + 1, ?2) + (?3 - 1), updated_at = ?4
		WHERE hwm <= ?5 - ?3
		RETURNING hwm`, key, a, n, time.Now().UnixNano(), int64(math.MaxInt64)).Scan(&h)
	if err != nil {
		return 0, 0, fmt.Errorf("sqlite: reserve nonces: %w", err)
	}
	hi = uint64(h) // #nosec G115 -- CHECK (hwm >= 0)
	return hi - size + 1, hi, nil
}

var _ kraken.NonceStore = (*NonceStore)(nil)
