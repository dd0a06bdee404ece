package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/keystile/keystile/internal/alert"
)

// AlertStore implements alert.DigestStore: the pending items of alert
// sinks' daily digests survive restarts.
type AlertStore struct{ d *DB }

// Alerts returns the database's alert digest store.
func (d *DB) Alerts() *AlertStore { return &AlertStore{d: d} }

// AddDigest implements alert.DigestStore. The count check and the insert
// run in one transaction, so the bound holds under concurrent adds.
func (s *AlertStore) AddDigest(ctx context.Context, sink string, a alert.Alert) error {
	b, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("sqlite: encode digest item: %w", err)
	}
	return s.d.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM alert_digest WHERE sink = ?`, sink).Scan(&n); err != nil {
			return fmt.Errorf("sqlite: count digest items: %w", err)
		}
		if n >= alert.MaxDigestItems {
			return alert.ErrDigestFull
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO alert_digest (sink, created_at, alert) VALUES (?, ?, ?)`, sink, a.Time.UnixNano(), string(b)); err != nil {
			return fmt.Errorf("sqlite: add digest item: %w", err)
		}
		return nil
	})
}

// PendingDigest implements alert.DigestStore.
func (s *AlertStore) PendingDigest(ctx context.Context, sink string, limit int) ([]alert.DigestItem, error) {
	if limit <= 0 {
		limit = alert.MaxDigestItems
	}
	rows, err := s.d.db.QueryContext(ctx, `SELECT seq, alert FROM alert_digest WHERE sink = ? ORDER BY seq LIMIT ?`, sink, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read digest items: %w", err)
	}
	defer rows.Close()
	var out []alert.DigestItem
	for rows.Next() {
		var it alert.DigestItem
		var js string
		if err := rows.Scan(&it.Seq, &js); err != nil {
			return nil, fmt.Errorf("sqlite: read digest items: %w", err)
		}
		if err := json.Unmarshal([]byte(js), &it.Alert); err != nil {
			return nil, fmt.Errorf("sqlite: digest item %d: %w", it.Seq, err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read digest items: %w", err)
	}
	return out, nil
}

// DeleteDigest implements alert.DigestStore.
func (s *AlertStore) DeleteDigest(ctx context.Context, sink string, upTo int64) error {
	if _, err := s.d.db.ExecContext(ctx, `DELETE FROM alert_digest WHERE sink = ? AND seq <= ?`, sink, upTo); err != nil {
		return fmt.Errorf("sqlite: remove digest items: %w", err)
	}
	return nil
}

// CountDigest implements alert.DigestStore.
func (s *AlertStore) CountDigest(ctx context.Context, sink string) (int, time.Time, error) {
	var n int
	var oldest *int64
	err := s.d.db.QueryRowContext(ctx, `SELECT COUNT(*), MIN(created_at) FROM alert_digest WHERE sink = ?`, sink).Scan(&n, &oldest)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("sqlite: count digest items: %w", err)
	}
	if oldest == nil {
		return n, time.Time{}, nil
	}
	return n, time.Unix(0, *oldest).UTC(), nil
}

var _ alert.DigestStore = (*AlertStore)(nil)
