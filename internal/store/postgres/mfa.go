package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/mfa"
)

// mfaLockID is the transaction advisory lock that serialises changes to
// the enrolment across replicas ("kst-mfa" in ASCII).
const mfaLockID int64 = 0x6b73742d6d6661

// MFAStore implements mfa.Store on the database: the enrolment row and
// recovery-code digests, never the TOTP secret (it is in the vault).
type MFAStore struct{ d *DB }

// MFA returns the admin second factor's store.
func (d *DB) MFA() *MFAStore { return &MFAStore{d: d} }

const mfaCols = `state, created_at, enrolled_at, last_step, failures, last_failure, locked_until`

func loadMFA(ctx context.Context, q queryer) (mfa.State, error) {
	var st mfa.State
	var created, enrolled, lastFail, locked int64
	err := q.QueryRow(ctx, `SELECT `+mfaCols+`, (SELECT count(*) FROM mfa_recovery_codes WHERE used_at = 0)
		FROM mfa_enrollment WHERE id = 1`).Scan(&st.State, &created, &enrolled, &st.LastStep, &st.Failures, &lastFail, &locked, &st.RecoveryLeft)
	if errors.Is(err, pgx.ErrNoRows) {
		return mfa.State{}, nil
	}
	if err != nil {
		return mfa.State{}, err
	}
	st.CreatedAt, st.EnrolledAt, st.LastFailure, st.LockedUntil = fromNanos(created), fromNanos(enrolled), fromNanos(lastFail), fromNanos(locked)
	return st, nil
}

// Load implements mfa.Store.
func (s *MFAStore) Load(ctx context.Context) (mfa.State, error) {
	st, err := loadMFA(ctx, s.d.pool)
	if err != nil {
		return mfa.State{}, fmt.Errorf("postgres: load mfa state: %w", err)
	}
	return st, nil
}

// lockMFA takes the enrolment's advisory lock until tx ends.
func lockMFA(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, mfaLockID); err != nil {
		return fmt.Errorf("postgres: lock mfa state: %w", err)
	}
	return nil
}

// Update implements mfa.Store. The transaction holds an advisory lock
// from before the read to the commit, so two replicas checking codes at
// once run fn one after the other: a time step is accepted once.
func (s *MFAStore) Update(ctx context.Context, fn func(*mfa.State) error) (mfa.State, error) {
	var out mfa.State
	err := s.d.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockMFA(ctx, tx); err != nil {
			return err
		}
		st, err := loadMFA(ctx, tx)
		if err != nil {
			return fmt.Errorf("postgres: load mfa state: %w", err)
		}
		left := st.RecoveryLeft
		if err := fn(&st); err != nil {
			return err
		}
		st.RecoveryLeft = left
		if st.State == "" {
			if _, err := tx.Exec(ctx, `DELETE FROM mfa_enrollment`); err != nil {
				return fmt.Errorf("postgres: clear mfa state: %w", err)
			}
			if _, err := tx.Exec(ctx, `DELETE FROM mfa_recovery_codes`); err != nil {
				return fmt.Errorf("postgres: clear recovery codes: %w", err)
			}
			out = mfa.State{}
			return nil
		}
		if st.LastStep < 0 || st.Failures < 0 {
			return errors.New("postgres: mfa state out of range")
		}
		_, err = tx.Exec(ctx, `INSERT INTO mfa_enrollment(id, `+mfaCols+`) VALUES (1, $1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (id) DO UPDATE SET state = excluded.state, created_at = excluded.created_at, enrolled_at = excluded.enrolled_at,
			last_step = excluded.last_step, failures = excluded.failures, last_failure = excluded.last_failure, locked_until = excluded.locked_until`,
			st.State, nanos(st.CreatedAt), nanos(st.EnrolledAt), st.LastStep, st.Failures, nanos(st.LastFailure), nanos(st.LockedUntil))
		if err != nil {
			return fmt.Errorf("postgres: store mfa state: %w", err)
		}
		out = st
		return nil
	})
	return out, err
}

// SetRecoveryCodes implements mfa.Store.
func (s *MFAStore) SetRecoveryCodes(ctx context.Context, digests [][]byte) error {
	return s.d.inTx(ctx, func(tx pgx.Tx) error {
		if err := lockMFA(ctx, tx); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM mfa_recovery_codes`); err != nil {
			return fmt.Errorf("postgres: replace recovery codes: %w", err)
		}
		for _, d := range digests {
			if _, err := tx.Exec(ctx, `INSERT INTO mfa_recovery_codes(digest) VALUES ($1)`, d); err != nil {
				return fmt.Errorf("postgres: replace recovery codes: %w", err)
			}
		}
		return nil
	})
}

// UseRecoveryCode implements mfa.Store: one statement marks the code used
// only if it was unused (under the row's lock), so it is accepted once
// even when replicas race.
func (s *MFAStore) UseRecoveryCode(ctx context.Context, digest []byte, now time.Time) (bool, error) {
	tag, err := s.d.pool.Exec(ctx, `UPDATE mfa_recovery_codes SET used_at = $1 WHERE digest = $2 AND used_at = 0`, max(nanos(now), 1), digest)
	if err != nil {
		return false, fmt.Errorf("postgres: use recovery code: %w", err)
	}
	return tag.RowsAffected() == 1, nil
}

var _ mfa.Store = (*MFAStore)(nil)
