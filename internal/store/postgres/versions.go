package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Topics of change_versions: each names what a replica re-reads when its
// version moves.
const (
	// TopicTokens moves on every token create or update (revocation,
	// freeze, rotation), not on last-use bookkeeping.
	TopicTokens = "tokens"
	// TopicVault moves on every vault write (init, set, rotate, revoke,
	// delete, rekey), not on last-use bookkeeping.
	TopicVault = "vault"
	// TopicKillSwitch moves when a trip is engaged or cleared.
	TopicKillSwitch = "killswitch"
	// TopicDetectHolds moves when the detector puts or releases a hold
	// (throttle, frozen venue or credential).
	TopicDetectHolds = "detect_holds"
)

// Version returns the change version of topic: 0 if it was never bumped,
// then a number that grows with each committed write of the topic. A
// replica that polls it re-reads the topic's records when it changes, so
// it sees a revocation made by another replica even when no faster
// notification reaches it.
func (d *DB) Version(ctx context.Context, topic string) (int64, error) {
	var v int64
	err := d.pool.QueryRow(ctx, `SELECT version FROM change_versions WHERE topic = $1`, topic).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("postgres: change version %s: %w", topic, err)
	}
	return v, nil
}

// bump raises topic's change version inside tx, so the version moves if
// and only if the write it announces commits.
func bump(ctx context.Context, tx pgx.Tx, topic string) error {
	_, err := tx.Exec(ctx, `INSERT INTO change_versions(topic, version) VALUES ($1, 1)
		ON CONFLICT (topic) DO UPDATE SET version = change_versions.version + 1`, topic)
	if err != nil {
		return fmt.Errorf("postgres: bump %s version: %w", topic, err)
	}
	return nil
}

// uniqueViolation reports a unique or primary key violation.
func uniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// nanos is t in Unix nanoseconds, 0 for the zero time.
func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// fromNanos inverts nanos (UTC).
func fromNanos(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// unixSecs is t in Unix seconds, 0 for the zero time (the vault's times).
func unixSecs(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

// fromSecs inverts unixSecs (UTC).
func fromSecs(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}
