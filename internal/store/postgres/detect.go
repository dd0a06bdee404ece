package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/detect"
)

// DetectStore implements detect.ProfileStore and detect.HoldStore on the
// database; each call is one transaction.
type DetectStore struct{ d *DB }

// Detect returns the database's detector store.
func (d *DB) Detect() *DetectStore { return &DetectStore{d: d} }

// Profiles implements detect.ProfileStore.
func (s *DetectStore) Profiles(ctx context.Context) ([]detect.StoredProfile, error) {
	rows, err := s.d.pool.Query(ctx, `SELECT key, data, updated_at FROM detect_profiles ORDER BY key`)
	if err != nil {
		return nil, fmt.Errorf("postgres: read detect profiles: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (detect.StoredProfile, error) {
		var p detect.StoredProfile
		var at int64
		err := r.Scan(&p.Key, &p.Data, &at)
		p.Updated = fromNanos(at)
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: read detect profiles: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// SaveProfiles implements detect.ProfileStore: one transaction, sent as
// one batch (one round trip).
func (s *DetectStore) SaveProfiles(ctx context.Context, put []detect.StoredProfile, del []string) error {
	if len(put) == 0 && len(del) == 0 {
		return nil
	}
	err := s.d.inTx(ctx, func(tx pgx.Tx) error {
		b := &pgx.Batch{}
		for _, p := range put {
			b.Queue(`INSERT INTO detect_profiles(key, data, updated_at) VALUES ($1, $2, $3)
				ON CONFLICT (key) DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at`,
				p.Key, p.Data, nanos(p.Updated))
		}
		for _, k := range del {
			b.Queue(`DELETE FROM detect_profiles WHERE key = $1`, k)
		}
		return tx.SendBatch(ctx, b).Close()
	})
	if err != nil {
		return fmt.Errorf("postgres: save detect profiles: %w", err)
	}
	return nil
}

// Holds implements detect.HoldStore.
func (s *DetectStore) Holds(ctx context.Context) ([]detect.Hold, error) {
	rows, err := s.d.pool.Query(ctx, `SELECT kind, subject, since, until, requests, per, detector, finding
		FROM detect_holds ORDER BY kind, subject`)
	if err != nil {
		return nil, fmt.Errorf("postgres: read detect holds: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (detect.Hold, error) {
		var h detect.Hold
		var since, until, per int64
		err := r.Scan(&h.Kind, &h.Subject, &since, &until, &h.Requests, &per, &h.Detector, &h.Finding)
		h.Since, h.Until, h.Per = fromNanos(since), fromNanos(until), time.Duration(per)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: read detect holds: %w", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// PutHold implements detect.HoldStore.
func (s *DetectStore) PutHold(ctx context.Context, h detect.Hold) error {
	err := s.d.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO detect_holds(kind, subject, since, until, requests, per, detector, finding)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (kind, subject) DO UPDATE SET since = excluded.since, until = excluded.until,
			requests = excluded.requests, per = excluded.per, detector = excluded.detector, finding = excluded.finding`,
			h.Kind, h.Subject, nanos(h.Since), nanos(h.Until), h.Requests, int64(h.Per), h.Detector, h.Finding)
		if err != nil {
			return err
		}
		return bump(ctx, tx, TopicDetectHolds)
	})
	if err != nil {
		return fmt.Errorf("postgres: store detect hold: %w", err)
	}
	return nil
}

// DeleteHold implements detect.HoldStore.
func (s *DetectStore) DeleteHold(ctx context.Context, kind, subject string) error {
	err := s.d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM detect_holds WHERE kind = $1 AND subject = $2`, kind, subject)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return bump(ctx, tx, TopicDetectHolds)
	})
	if err != nil {
		return fmt.Errorf("postgres: delete detect hold: %w", err)
	}
	return nil
}

var (
	_ detect.ProfileStore = (*DetectStore)(nil)
	_ detect.HoldStore    = (*DetectStore)(nil)
)
