package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/keystile/keystile/internal/detect"
)

// DetectStore implements detect.ProfileStore and detect.HoldStore on the
// database. Its writes join the order path's group commit (one fsync for
// many writes), so saving baselines never holds SQLite's write lock on
// its own.
type DetectStore struct{ d *DB }

// Detect returns the database's detector store.
func (d *DB) Detect() *DetectStore { return &DetectStore{d: d} }

// Profiles implements detect.ProfileStore.
func (s *DetectStore) Profiles(ctx context.Context) ([]detect.StoredProfile, error) {
	rows, err := s.d.db.QueryContext(ctx, `SELECT key, data, updated_at FROM detect_profiles ORDER BY key`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read detect profiles: %w", err)
	}
	defer rows.Close()
	var out []detect.StoredProfile
	for rows.Next() {
		var p detect.StoredProfile
		var at int64
		if err := rows.Scan(&p.Key, &p.Data, &at); err != nil {
			return nil, fmt.Errorf("sqlite: read detect profiles: %w", err)
		}
		p.Updated = timeOfNano(at)
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read detect profiles: %w", err)
	}
	return out, nil
}

// SaveProfiles implements detect.ProfileStore: one transaction.
func (s *DetectStore) SaveProfiles(ctx context.Context, put []detect.StoredProfile, del []string) error {
	err := s.d.batch(ctx, func(ctx context.Context, tx *sql.Tx) error {
		for _, p := range put {
			if _, err := tx.ExecContext(ctx, `INSERT INTO detect_profiles(key, data, updated_at) VALUES (?, ?, ?)
				ON CONFLICT(key) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at`,
				p.Key, p.Data, nanoOf(p.Updated)); err != nil {
				return err
			}
		}
		for _, k := range del {
			if _, err := tx.ExecContext(ctx, `DELETE FROM detect_profiles WHERE key = ?`, k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: save detect profiles: %w", err)
	}
	return nil
}

// Holds implements detect.HoldStore.
func (s *DetectStore) Holds(ctx context.Context) ([]detect.Hold, error) {
	rows, err := s.d.db.QueryContext(ctx, `SELECT kind, subject, since, until, requests, per, detector, finding
		FROM detect_holds ORDER BY kind, subject`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read detect holds: %w", err)
	}
	defer rows.Close()
	var out []detect.Hold
	for rows.Next() {
		var h detect.Hold
		var since, until, per int64
		if err := rows.Scan(&h.Kind, &h.Subject, &since, &until, &h.Requests, &per, &h.Detector, &h.Finding); err != nil {
			return nil, fmt.Errorf("sqlite: read detect holds: %w", err)
		}
		h.Since, h.Until, h.Per = timeOfNano(since), timeOfNano(until), time.Duration(per)
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: read detect holds: %w", err)
	}
	return out, nil
}

// PutHold implements detect.HoldStore.
func (s *DetectStore) PutHold(ctx context.Context, h detect.Hold) error {
	err := s.d.batch(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO detect_holds(kind, subject, since, until, requests, per, detector, finding)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(kind, subject) DO UPDATE SET since = excluded.since, until = excluded.until,
				requests = excluded.requests, per = excluded.per, detector = excluded.detector, finding = excluded.finding`,
			h.Kind, h.Subject, nanoOf(h.Since), nanoOf(h.Until), h.Requests, int64(h.Per), h.Detector, h.Finding)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: store detect hold: %w", err)
	}
	return nil
}

// DeleteHold implements detect.HoldStore.
func (s *DetectStore) DeleteHold(ctx context.Context, kind, subject string) error {
	err := s.d.batch(ctx, func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `DELETE FROM detect_holds WHERE kind = ? AND subject = ?`, kind, subject)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: delete detect hold: %w", err)
	}
	return nil
}

var (
	_ detect.ProfileStore = (*DetectStore)(nil)
	_ detect.HoldStore    = (*DetectStore)(nil)
)
