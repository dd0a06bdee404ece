package postgres

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/vault"
)

// VaultStore implements vault.Store on the database. Every write bumps
// the "vault" change version in its transaction (TouchUsed aside).
type VaultStore struct{ d *DB }

// Vault returns the vault store of this database.
func (d *DB) Vault() *VaultStore { return &VaultStore{d: d} }

// Init implements vault.Store. The keyring table is locked for the
// transaction, so of two replicas initialising at once one fails with
// store.ErrExists.
func (s *VaultStore) Init(ctx context.Context, meta map[string][]byte, kek vault.KEKRecord, sys []vault.SystemKeyRecord) error {
	err := s.d.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `LOCK TABLE vault_keks IN SHARE ROW EXCLUSIVE MODE`); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT COUNT(*) FROM vault_keks`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("vault keyring: %w", store.ErrExists)
		}
		for k, v := range meta {
			if _, err := tx.Exec(ctx, `INSERT INTO vault_meta(key, value) VALUES ($1, $2)`, k, v); err != nil {
				if uniqueViolation(err) {
					return fmt.Errorf("vault meta %q: %w", k, store.ErrExists)
				}
				return err
			}
		}
		if _, err := tx.Exec(ctx, `INSERT INTO vault_keks(version, wrapped, created_at, active) VALUES ($1, $2, $3, 1)`,
			kek.Version, kek.Wrapped, unixSecs(kek.CreatedAt)); err != nil {
			return err
		}
		for _, k := range sys {
			if _, err := tx.Exec(ctx, `INSERT INTO vault_system_keys(name, kek_version, wrapped) VALUES ($1, $2, $3)`,
				k.Name, k.KEKVersion, k.Wrapped); err != nil {
				return err
			}
		}
		return bump(ctx, tx, TopicVault)
	})
	return vaultErr("init", err)
}

// vaultErr names the step of an error, keeping its sentinel.
func vaultErr(step string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("postgres: vault %s: %w", step, err)
}

// Meta implements vault.Store.
func (s *VaultStore) Meta(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.d.pool.QueryRow(ctx, `SELECT value FROM vault_meta WHERE key = $1`, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("vault meta %q: %w", key, store.ErrNotFound)
	}
	return v, vaultErr("meta", err)
}

// Keyring implements vault.Store.
func (s *VaultStore) Keyring(ctx context.Context) ([]vault.KEKRecord, []vault.SystemKeyRecord, error) {
	var (
		keks []vault.KEKRecord
		sys  []vault.SystemKeyRecord
	)
	// One read-only transaction: a concurrent Rekey is seen whole or not
	// at all (REPEATABLE READ: one snapshot for both queries).
	err := pgx.BeginTxFunc(ctx, s.d.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT version, wrapped, created_at, active FROM vault_keks ORDER BY version`)
		if err != nil {
			return err
		}
		keks, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.KEKRecord, error) {
			var k vault.KEKRecord
			var created int64
			var active int
			err := r.Scan(&k.Version, &k.Wrapped, &created, &active)
			k.CreatedAt, k.Active = fromSecs(created), active != 0
			return k, err
		})
		if err != nil {
			return err
		}
		rows, err = tx.Query(ctx, `SELECT name, kek_version, wrapped FROM vault_system_keys ORDER BY name`)
		if err != nil {
			return err
		}
		sys, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.SystemKeyRecord, error) {
			var k vault.SystemKeyRecord
			err := r.Scan(&k.Name, &k.KEKVersion, &k.Wrapped)
			return k, err
		})
		return err
	})
	if err != nil {
		return nil, nil, vaultErr("keyring", err)
	}
	if len(keks) == 0 {
		keks = nil
	}
	if len(sys) == 0 {
		sys = nil
	}
	return keks, sys, nil
}

// PutVersion implements vault.Store.
func (s *VaultStore) PutVersion(ctx context.Context, c vault.CredentialRecord, v vault.VersionRecord, keep int) error {
	err := s.d.inTx(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO vault_credentials(name, current_version, state, rotation_days, created_at, rotated_at, revoked_at, mac)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (name) DO UPDATE SET current_version = excluded.current_version, state = excluded.state,
				rotation_days = excluded.rotation_days, rotated_at = excluded.rotated_at, revoked_at = excluded.revoked_at, mac = excluded.mac`,
			c.Name, c.CurrentVersion, c.State, c.RotationDays, unixSecs(c.CreatedAt), unixSecs(c.RotatedAt), unixSecs(c.RevokedAt), c.MAC)
		if err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO vault_versions(name, version, kek_version, wrapped_dek, created_at) VALUES ($1, $2, $3, $4, $5)`,
			v.Name, v.Version, v.KEKVersion, v.WrappedDEK, unixSecs(v.CreatedAt)); err != nil {
			if uniqueViolation(err) {
				return fmt.Errorf("credential %q version %d: %w", v.Name, v.Version, store.ErrExists)
			}
			return err
		}
		for f, ct := range v.Fields {
			if _, err := tx.Exec(ctx, `INSERT INTO vault_fields(name, version, field, ciphertext) VALUES ($1, $2, $3, $4)`,
				v.Name, v.Version, f, ct); err != nil {
				return err
			}
		}
		if keep > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM vault_versions WHERE name = $1 AND version NOT IN
				(SELECT version FROM vault_versions WHERE name = $1 ORDER BY version DESC LIMIT $2)`, c.Name, keep); err != nil {
				return err
			}
		}
		return bump(ctx, tx, TopicVault)
	})
	return vaultErr("put "+c.Name, err)
}

// queryer is a pool or a transaction.
type queryer interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func fillCredential(ctx context.Context, q queryer, c *vault.CredentialRecord) error {
	rows, err := q.Query(ctx, `SELECT version FROM vault_versions WHERE name = $1 ORDER BY version`, c.Name)
	if err != nil {
		return err
	}
	if c.Versions, err = pgx.CollectRows(rows, pgx.RowTo[int]); err != nil {
		return err
	}
	if len(c.Versions) == 0 {
		c.Versions = nil
	}
	rows, err = q.Query(ctx, `SELECT field FROM vault_fields WHERE name = $1 AND version = $2 ORDER BY field`, c.Name, c.CurrentVersion)
	if err != nil {
		return err
	}
	if c.Fields, err = pgx.CollectRows(rows, pgx.RowTo[string]); err != nil {
		return err
	}
	if len(c.Fields) == 0 {
		c.Fields = nil
	}
	return nil
}

const credentialCols = `name, current_version, state, rotation_days, created_at, rotated_at, revoked_at, last_used_at, mac` // #nosec G101 -- column names

func scanCredential(sc interface{ Scan(...any) error }) (vault.CredentialRecord, error) {
	var c vault.CredentialRecord
	var created, rotated, revoked, used int64
	err := sc.Scan(&c.Name, &c.CurrentVersion, &c.State, &c.RotationDays, &created, &rotated, &revoked, &used, &c.MAC)
	c.CreatedAt, c.RotatedAt, c.RevokedAt, c.LastUsedAt = fromSecs(created), fromSecs(rotated), fromSecs(revoked), fromSecs(used)
	return c, err
}

// readTx runs fn in a read-only transaction on one snapshot, so that a
// record and the rows filling it are read consistently.
func (d *DB) readTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgx.BeginTxFunc(ctx, d.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, fn)
}

// Credential implements vault.Store.
func (s *VaultStore) Credential(ctx context.Context, name string) (vault.CredentialRecord, error) {
	var c vault.CredentialRecord
	err := s.d.readTx(ctx, func(tx pgx.Tx) error {
		var err error
		c, err = scanCredential(tx.QueryRow(ctx, `SELECT `+credentialCols+` FROM vault_credentials WHERE name = $1`, name))
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("credential %q: %w", name, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		return fillCredential(ctx, tx, &c)
	})
	if err != nil {
		return vault.CredentialRecord{}, vaultErr("read "+name, err)
	}
	return c, nil
}

// Credentials implements vault.Store.
func (s *VaultStore) Credentials(ctx context.Context) ([]vault.CredentialRecord, error) {
	var out []vault.CredentialRecord
	err := s.d.readTx(ctx, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `SELECT `+credentialCols+` FROM vault_credentials ORDER BY name`)
		if err != nil {
			return err
		}
		out, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.CredentialRecord, error) { return scanCredential(r) })
		if err != nil {
			return err
		}
		for i := range out {
			if err := fillCredential(ctx, tx, &out[i]); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, vaultErr("list", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// Version implements vault.Store.
func (s *VaultStore) Version(ctx context.Context, name string, version int) (vault.VersionRecord, error) {
	var v vault.VersionRecord
	err := s.d.readTx(ctx, func(tx pgx.Tx) error {
		var created int64
		err := tx.QueryRow(ctx, `SELECT name, version, kek_version, wrapped_dek, created_at FROM vault_versions WHERE name = $1 AND version = $2`,
			name, version).Scan(&v.Name, &v.Version, &v.KEKVersion, &v.WrappedDEK, &created)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("credential %q version %d: %w", name, version, store.ErrNotFound)
		}
		if err != nil {
			return err
		}
		v.CreatedAt = fromSecs(created)
		rows, err := tx.Query(ctx, `SELECT field, ciphertext FROM vault_fields WHERE name = $1 AND version = $2`, name, version)
		if err != nil {
			return err
		}
		defer rows.Close()
		v.Fields = map[string][]byte{}
		for rows.Next() {
			var f string
			var ct []byte
			if err := rows.Scan(&f, &ct); err != nil {
				return err
			}
			v.Fields[f] = ct
		}
		return rows.Err()
	})
	if err != nil {
		return vault.VersionRecord{}, vaultErr("read "+name, err)
	}
	return v, nil
}

// Revoke implements vault.Store.
func (s *VaultStore) Revoke(ctx context.Context, c vault.CredentialRecord, fps []vault.Fingerprint) error {
	err := s.d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `UPDATE vault_credentials SET state = $1, revoked_at = $2, mac = $3 WHERE name = $4`,
			c.State, unixSecs(c.RevokedAt), c.MAC, c.Name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("credential %q: %w", c.Name, store.ErrNotFound)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM vault_versions WHERE name = $1`, c.Name); err != nil {
			return err
		}
		for _, fp := range fps {
			if _, err := tx.Exec(ctx, `INSERT INTO vault_compromised(fingerprint, name, field, revoked_at) VALUES ($1, $2, $3, $4)
				ON CONFLICT (fingerprint) DO NOTHING`, fp.Value, fp.Name, fp.Field, unixSecs(fp.RevokedAt)); err != nil {
				return err
			}
		}
		return bump(ctx, tx, TopicVault)
	})
	return vaultErr("revoke "+c.Name, err)
}

// Delete implements vault.Store.
func (s *VaultStore) Delete(ctx context.Context, name string) error {
	err := s.d.inTx(ctx, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `DELETE FROM vault_credentials WHERE name = $1`, name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("credential %q: %w", name, store.ErrNotFound)
		}
		return bump(ctx, tx, TopicVault)
	})
	return vaultErr("delete "+name, err)
}

func collectFingerprints(rows pgx.Rows) ([]vault.Fingerprint, error) {
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.Fingerprint, error) {
		var f vault.Fingerprint
		var at int64
		err := r.Scan(&f.Value, &f.Name, &f.Field, &at)
		f.RevokedAt = fromSecs(at)
		return f, err
	})
	if len(out) == 0 {
		out = nil
	}
	return out, err
}

// Compromised implements vault.Store.
func (s *VaultStore) Compromised(ctx context.Context, fps [][]byte) ([]vault.Fingerprint, error) {
	if len(fps) == 0 {
		return nil, nil
	}
	rows, err := s.d.pool.Query(ctx, `SELECT fingerprint, name, field, revoked_at FROM vault_compromised WHERE fingerprint = ANY($1)`, fps)
	if err != nil {
		return nil, vaultErr("compromised", err)
	}
	out, err := collectFingerprints(rows)
	return out, vaultErr("compromised", err)
}

// CompromisedAll lists every recorded fingerprint (for doctor and scan).
func (s *VaultStore) CompromisedAll(ctx context.Context) ([]vault.Fingerprint, error) {
	rows, err := s.d.pool.Query(ctx, `SELECT fingerprint, name, field, revoked_at FROM vault_compromised ORDER BY revoked_at, fingerprint`)
	if err != nil {
		return nil, vaultErr("compromised", err)
	}
	out, err := collectFingerprints(rows)
	return out, vaultErr("compromised", err)
}

// WrappedKeys implements vault.Store.
func (s *VaultStore) WrappedKeys(ctx context.Context) ([]vault.VersionRecord, error) {
	rows, err := s.d.pool.Query(ctx, `SELECT name, version, kek_version, wrapped_dek, created_at FROM vault_versions ORDER BY name, version`)
	if err != nil {
		return nil, vaultErr("wrapped keys", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (vault.VersionRecord, error) {
		var v vault.VersionRecord
		var created int64
		err := r.Scan(&v.Name, &v.Version, &v.KEKVersion, &v.WrappedDEK, &created)
		v.CreatedAt = fromSecs(created)
		return v, err
	})
	if err != nil {
		return nil, vaultErr("wrapped keys", err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// Rekey implements vault.Store. A data key changed since it was read, or
// a concurrent Rekey that added the same KEK version first, fails the
// whole call with store.ErrConflict.
func (s *VaultStore) Rekey(ctx context.Context, kek vault.KEKRecord, deks []vault.Rewrapped, sys []vault.SystemKeyRecord) error {
	err := s.d.inTx(ctx, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE vault_keks SET active = 0`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO vault_keks(version, wrapped, created_at, active) VALUES ($1, $2, $3, 1)`,
			kek.Version, kek.Wrapped, unixSecs(kek.CreatedAt)); err != nil {
			if uniqueViolation(err) {
				return fmt.Errorf("rekey: KEK version %d: %w", kek.Version, store.ErrConflict)
			}
			return err
		}
		for _, d := range deks {
			tag, err := tx.Exec(ctx, `UPDATE vault_versions SET kek_version = $1, wrapped_dek = $2 WHERE name = $3 AND version = $4 AND kek_version = $5`,
				d.NewKEKVersion, d.WrappedDEK, d.Name, d.Version, d.OldKEKVersion)
			if err != nil {
				return err
			}
			if tag.RowsAffected() != 1 {
				return fmt.Errorf("rekey %s v%d: %w", d.Name, d.Version, store.ErrConflict)
			}
		}
		for _, k := range sys {
			if _, err := tx.Exec(ctx, `UPDATE vault_system_keys SET kek_version = $1, wrapped = $2 WHERE name = $3`,
				k.KEKVersion, k.Wrapped, k.Name); err != nil {
				return err
			}
		}
		return bump(ctx, tx, TopicVault)
	})
	return vaultErr("rekey", err)
}

// TouchUsed implements vault.Store. Last-use times are bookkeeping: they
// do not move the "vault" change version.
func (s *VaultStore) TouchUsed(ctx context.Context, used map[string]time.Time) error {
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	// One order for every replica: no deadlock between two touches.
	sort.Strings(names)
	err := s.d.inTx(ctx, func(tx pgx.Tx) error {
		for _, n := range names {
			if _, err := tx.Exec(ctx, `UPDATE vault_credentials SET last_used_at = GREATEST(last_used_at, $1) WHERE name = $2`,
				unixSecs(used[n]), n); err != nil {
				return err
			}
		}
		return nil
	})
	return vaultErr("touch", err)
}

var _ vault.Store = (*VaultStore)(nil)
