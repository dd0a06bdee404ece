package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/alert"
)

// alertLockClass is the first key of the per-sink transaction advisory
// lock that makes a digest's bound hold across replicas ("kdig").
const alertLockClass int32 = 0x6b646967

// AlertStore implements alert.DigestStore: the pending items of alert
// sinks' daily digests survive restarts and are shared by replicas.
type AlertStore struct{ d *DB }

// Alerts returns the database's alert digest store.
func (d *DB) Alerts() *AlertStore { return &AlertStore{d: d} }

// AddDigest implements alert.DigestStore. The count and the insert run
// in one transaction holding the sink's advisory lock, so the bound holds
// under concurrent adds from every replica.
func (s *AlertStore) AddDigest(ctx context.Context, sink string, a alert.Alert) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("postgres: encode digest item: %w", err)
	}
	return s.d.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, hashtext($2))`, alertLockClass, sink); err != nil {
			return fmt.Errorf("postgres: lock digest: %w", err)
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM alert_digest WHERE sink = $1`, sink).Scan(&n); err != nil {
			return fmt.Errorf("postgres: count digest items: %w", err)
		}
		if n >= alert.MaxDigestItems {
			return alert.ErrDigestFull
		}
		if _, err := tx.Exec(ctx, `INSERT INTO alert_digest (sink, created_at, alert) VALUES ($1, $2, $3)`, sink, a.Time.UnixNano(), string(b)); err != nil {
			return fmt.Errorf("postgres: add digest item: %w", err)
		}
		return nil
	})
}

// PendingDigest implements alert.DigestStore.
func (s *AlertStore) PendingDigest(ctx context.Context, sink string, limit int) ([]alert.DigestItem, error) {
	if limit <= 0 {
		limit = alert.MaxDigestItems
	}
	rows, err := s.d.pool.Query(ctx, `SELECT seq, alert FROM alert_digest WHERE sink = $1 ORDER BY seq LIMIT $2`, sink, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: read digest items: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (alert.DigestItem, error) {
		var it alert.DigestItem
		var js string
		if err := r.Scan(&it.Seq, &js); err != nil {
			return it, fmt.Errorf("postgres: read digest items: %w", err)
		}
		if err := json.Unmarshal([]byte(js), &it.Alert); err != nil {
			return it, fmt.Errorf("postgres: digest item %d: %w", it.Seq, err)
		}
		return it, nil
	})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// DeleteDigest implements alert.DigestStore.
func (s *AlertStore) DeleteDigest(ctx context.Context, sink string, upTo int64) error {
	if _, err := s.d.pool.Exec(ctx, `DELETE FROM alert_digest WHERE sink = $1 AND seq <= $2`, sink, upTo); err != nil {
		return fmt.Errorf("postgres: remove digest items: %w", err)
	}
	return nil
}

// CountDigest implements alert.DigestStore.
func (s *AlertStore) CountDigest(ctx context.Context, sink string) (int, time.Time, error) {
	var n int
	var oldest *int64
	err := s.d.pool.QueryRow(ctx, `SELECT COUNT(*), MIN(created_at) FROM alert_digest WHERE sink = $1`, sink).Scan(&n, &oldest)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("postgres: count digest items: %w", err)
	}
	if oldest == nil {
		return n, time.Time{}, nil
	}
	return n, time.Unix(0, *oldest).UTC(), nil
}

var _ alert.DigestStore = (*AlertStore)(nil)
