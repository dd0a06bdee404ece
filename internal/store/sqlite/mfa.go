package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/keystile/keystile/internal/mfa"
)

// MFAStore implements mfa.Store on the database: the enrolment row and
// recovery-code digests, never the TOTP secret (it is in the vault).
type MFAStore struct{ d *DB }

// MFA returns the admin second factor's store.
func (d *DB) MFA() *MFAStore { return &MFAStore{d: d} }

const mfaCols = `state, created_at, enrolled_at, last_step, failures, last_failure, locked_until`

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func loadMFA(ctx context.Context, q querier) (mfa.State, error) {
	var st mfa.State
	var created, enrolled, lastFail, locked int64
	err := q.QueryRowContext(ctx, `SELECT `+mfaCols+`, (SELECT count(*) FROM mfa_recovery_codes WHERE used_at = 0)
		FROM mfa_enrollment WHERE id = 1`).Scan(&st.State, &created, &enrolled, &st.LastStep, &st.Failures, &lastFail, &locked, &st.RecoveryLeft)
	if errors.Is(err, sql.ErrNoRows) {
		return mfa.State{}, nil
	}
	if err != nil {
		return mfa.State{}, err
	}
	st.CreatedAt, st.EnrolledAt, st.LastFailure, st.LockedUntil = timeOfNano(created), timeOfNano(enrolled), timeOfNano(lastFail), timeOfNano(locked)
	return st, nil
}

// Load implements mfa.Store.
func (s *MFAStore) Load(ctx context.Context) (mfa.State, error) {
	st, err := loadMFA(ctx, s.d.db)
	if err != nil {
		return mfa.State{}, fmt.Errorf("sqlite: load mfa state: %w", err)
	}
	return st, nil
}

// Update implements mfa.Store in one immediate transaction, so that two
// processes sharing the file cannot both accept the same time step.
func (s *MFAStore) Update(ctx context.Context, fn func(*mfa.State) error) (mfa.State, error) {
	var out mfa.State
	err := s.d.inTx(ctx, func(tx *sql.Tx) error {
		st, err := loadMFA(ctx, tx)
		if err != nil {
			return fmt.Errorf("sqlite: load mfa state: %w", err)
		}
		left := st.RecoveryLeft
		if err := fn(&st); err != nil {
			return err
		}
		st.RecoveryLeft = left
		if st.State == "" {
			if _, err := tx.ExecContext(ctx, `DELETE FROM mfa_enrollment`); err != nil {
				return fmt.Errorf("sqlite: clear mfa state: %w", err)
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM mfa_recovery_codes`); err != nil {
				return fmt.Errorf("sqlite: clear recovery codes: %w", err)
			}
			out = mfa.State{}
			return nil
		}
		if st.LastStep < 0 || st.Failures < 0 {
			return fmt.Errorf("sqlite: mfa state out of range")
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO mfa_enrollment(id, `+mfaCols+`) VALUES (1, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(id) DO UPDATE SET state = excluded.state, created_at = excluded.created_at, enrolled_at = excluded.enrolled_at,
			last_step = excluded.last_step, failures = excluded.failures, last_failure = excluded.last_failure, locked_until = excluded.locked_until`,
			st.State, nanoOf(st.CreatedAt), nanoOf(st.EnrolledAt), st.LastStep, st.Failures, nanoOf(st.LastFailure), nanoOf(st.LockedUntil))
		if err != nil {
			return fmt.Errorf("sqlite: store mfa state: %w", err)
		}
		out = st
		return nil
	})
	return out, err
}

// SetRecoveryCodes implements mfa.Store.
func (s *MFAStore) SetRecoveryCodes(ctx context.Context, digests [][]byte) error {
	return s.d.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM mfa_recovery_codes`); err != nil {
			return fmt.Errorf("sqlite: replace recovery codes: %w", err)
		}
		for _, d := range digests {
			if _, err := tx.ExecContext(ctx, `INSERT INTO mfa_recovery_codes(digest) VALUES (?)`, d); err != nil {
				return fmt.Errorf("sqlite: replace recovery codes: %w", err)
			}
		}
		return nil
	})
}

// UseRecoveryCode implements mfa.Store: one statement marks the code used
// only if it was unused, so it is accepted once even under concurrency.
func (s *MFAStore) UseRecoveryCode(ctx context.Context, digest []byte, now time.Time) (bool, error) {
	res, err := s.d.db.ExecContext(ctx, `UPDATE mfa_recovery_codes SET used_at = ? WHERE digest = ? AND used_at = 0`, max(nanoOf(now), 1), digest)
	if err != nil {
		return false, fmt.Errorf("sqlite: use recovery code: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("sqlite: use recovery code: %w", err)
	}
	return n == 1, nil
}

var _ mfa.Store = (*MFAStore)(nil)
