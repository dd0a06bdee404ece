package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/vault"
)

// VaultStore implements vault.Store on the database.
type VaultStore struct{ d *DB }

// Vault returns the vault store of this database.
func (d *DB) Vault() *VaultStore { return &VaultStore{d: d} }

func unixOf(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func timeOf(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}

// Init implements vault.Store.
func (s *VaultStore) Init(ctx context.Context, meta map[string][]byte, kek vault.KEKRecord, sys []vault.SystemKeyRecord) error {
	return s.d.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM vault_keks`).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("vault keyring: %w", store.ErrExists)
		}
		for k, v := range meta {
			if _, err := tx.ExecContext(ctx, `INSERT INTO vault_meta(key, value) VALUES (?, ?)`, k, v); err != nil {
				return err
			}
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO vault_keks(version, wrapped, created_at, active) VALUES (?, ?, ?, 1)`,
			kek.Version, kek.Wrapped, unixOf(kek.CreatedAt)); err != nil {
			return err
		}
		for _, k := range sys {
			if _, err := tx.ExecContext(ctx, `INSERT INTO vault_system_keys(name, kek_version, wrapped) VALUES (?, ?, ?)`,
				k.Name, k.KEKVersion, k.Wrapped); err != nil {
				return err
			}
		}
		return nil
	})
}

// Meta implements vault.Store.
func (s *VaultStore) Meta(ctx context.Context, key string) ([]byte, error) {
	var v []byte
	err := s.d.db.QueryRowContext(ctx, `SELECT value FROM vault_meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("vault meta %q: %w", key, store.ErrNotFound)
	}
	return v, err
}

// Keyring implements vault.Store.
func (s *VaultStore) Keyring(ctx context.Context) ([]vault.KEKRecord, []vault.SystemKeyRecord, error) {
	rows, err := s.d.db.QueryContext(ctx, `SELECT version, wrapped, created_at, active FROM vault_keks ORDER BY version`)
	if err != nil {
		return nil, nil, err
	}
	defer rows.Close()
	var keks []vault.KEKRecord
	for rows.Next() {
		var k vault.KEKRecord
		var created int64
		if err := rows.Scan(&k.Version, &k.Wrapped, &created, &k.Active); err != nil {
			return nil, nil, err
		}
		k.CreatedAt = timeOf(created)
		keks = append(keks, k)
	}
	if err := rows.Err(); err != nil {
		return nil, nil, err
	}
	srows, err := s.d.db.QueryContext(ctx, `SELECT name, kek_version, wrapped FROM vault_system_keys ORDER BY name`)
	if err != nil {
		return nil, nil, err
	}
	defer srows.Close()
	var sys []vault.SystemKeyRecord
	for srows.Next() {
		var k vault.SystemKeyRecord
		if err := srows.Scan(&k.Name, &k.KEKVersion, &k.Wrapped); err != nil {
			return nil, nil, err
		}
		sys = append(sys, k)
	}
	return keks, sys, srows.Err()
}

// PutVersion implements vault.Store.
func (s *VaultStore) PutVersion(ctx context.Context, c vault.CredentialRecord, v vault.VersionRecord, keep int) error {
	return s.d.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO vault_credentials(name, current_version, state, rotation_days, created_at, rotated_at, revoked_at, mac)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT(name) DO UPDATE SET current_version = excluded.current_version, state = excluded.state,
				rotation_days = excluded.rotation_days, rotated_at = excluded.rotated_at, revoked_at = excluded.revoked_at, mac = excluded.mac`,
			c.Name, c.CurrentVersion, c.State, c.RotationDays, unixOf(c.CreatedAt), unixOf(c.RotatedAt), unixOf(c.RevokedAt), c.MAC)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO vault_versions(name, version, kek_version, wrapped_dek, created_at) VALUES (?, ?, ?, ?, ?)`,
			v.Name, v.Version, v.KEKVersion, v.WrappedDEK, unixOf(v.CreatedAt)); err != nil {
			return err
		}
		for f, ct := range v.Fields {
			if _, err := tx.ExecContext(ctx, `INSERT INTO vault_fields(name, version, field, ciphertext) VALUES (?, ?, ?, ?)`,
				v.Name, v.Version, f, ct); err != nil {
				return err
			}
		}
		if keep > 0 {
			_, err := tx.ExecContext(ctx, `DELETE FROM vault_versions WHERE name = ? AND version NOT IN
				(SELECT version FROM vault_versions WHERE name = ? ORDER BY version DESC LIMIT ?)`, c.Name, c.Name, keep)
			if err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *VaultStore) fill(ctx context.Context, q interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}, c *vault.CredentialRecord) error {
	rows, err := q.QueryContext(ctx, `SELECT version FROM vault_versions WHERE name = ? ORDER BY version`, c.Name)
	if err != nil {
		return err
	}
	defer rows.Close()
	c.Versions = nil
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return err
		}
		c.Versions = append(c.Versions, v)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	frows, err := q.QueryContext(ctx, `SELECT field FROM vault_fields WHERE name = ? AND version = ? ORDER BY field`, c.Name, c.CurrentVersion)
	if err != nil {
		return err
	}
	defer frows.Close()
	c.Fields = nil
	for frows.Next() {
		var f string
		if err := frows.Scan(&f); err != nil {
			return err
		}
		c.Fields = append(c.Fields, f)
	}
	return frows.Err()
}

const credentialCols = `name, current_version, state, rotation_days, created_at, rotated_at, revoked_at, last_used_at, mac` // #nosec G101 -- column names

func scanCredential(sc interface{ Scan(...any) error }) (vault.CredentialRecord, error) {
	var c vault.CredentialRecord
	var created, rotated, revoked, used int64
	err := sc.Scan(&c.Name, &c.CurrentVersion, &c.State, &c.RotationDays, &created, &rotated, &revoked, &used, &c.MAC)
	c.CreatedAt, c.RotatedAt, c.RevokedAt, c.LastUsedAt = timeOf(created), timeOf(rotated), timeOf(revoked), timeOf(used)
	return c, err
}

// Credential implements vault.Store.
func (s *VaultStore) Credential(ctx context.Context, name string) (vault.CredentialRecord, error) {
	c, err := scanCredential(s.d.db.QueryRowContext(ctx, `SELECT `+credentialCols+` FROM vault_credentials WHERE name = ?`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return c, fmt.Errorf("credential %q: %w", name, store.ErrNotFound)
	}
	if err != nil {
		return c, err
	}
	return c, s.fill(ctx, s.d.db, &c)
}

// Credentials implements vault.Store.
func (s *VaultStore) Credentials(ctx context.Context) ([]vault.CredentialRecord, error) {
	rows, err := s.d.db.QueryContext(ctx, `SELECT `+credentialCols+` FROM vault_credentials ORDER BY name`)
	if err != nil {
		return nil, err
	}
	var out []vault.CredentialRecord
	for rows.Next() {
		c, err := scanCredential(rows)
		if err != nil {
			_ = rows.Close()
			return nil, err
		}
		out = append(out, c)
	}
	_ = rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	for i := range out {
		if err := s.fill(ctx, s.d.db, &out[i]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Version implements vault.Store.
func (s *VaultStore) Version(ctx context.Context, name string, version int) (vault.VersionRecord, error) {
	var v vault.VersionRecord
	var created int64
	err := s.d.db.QueryRowContext(ctx, `SELECT name, version, kek_version, wrapped_dek, created_at FROM vault_versions WHERE name = ? AND version = ?`,
		name, version).Scan(&v.Name, &v.Version, &v.KEKVersion, &v.WrappedDEK, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return v, fmt.Errorf("credential %q version %d: %w", name, version, store.ErrNotFound)
	}
	if err != nil {
		return v, err
	}
	v.CreatedAt = timeOf(created)
	rows, err := s.d.db.QueryContext(ctx, `SELECT field, ciphertext FROM vault_fields WHERE name = ? AND version = ?`, name, version)
	if err != nil {
		return v, err
	}
	defer rows.Close()
	v.Fields = map[string][]byte{}
	for rows.Next() {
		var f string
		var ct []byte
		if err := rows.Scan(&f, &ct); err != nil {
			return v, err
		}
		v.Fields[f] = ct
	}
	return v, rows.Err()
}

// Revoke implements vault.Store.
func (s *VaultStore) Revoke(ctx context.Context, c vault.CredentialRecord, fps []vault.Fingerprint) error {
	return s.d.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE vault_credentials SET state = ?, revoked_at = ?, mac = ? WHERE name = ?`,
			c.State, unixOf(c.RevokedAt), c.MAC, c.Name)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("credential %q: %w", c.Name, store.ErrNotFound)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM vault_versions WHERE name = ?`, c.Name); err != nil {
			return err
		}
		for _, fp := range fps {
			if _, err := tx.ExecContext(ctx, `INSERT INTO vault_compromised(fingerprint, name, field, revoked_at) VALUES (?, ?, ?, ?)
				ON CONFLICT(fingerprint) DO NOTHING`, fp.Value, fp.Name, fp.Field, unixOf(fp.RevokedAt)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Delete implements vault.Store.
func (s *VaultStore) Delete(ctx context.Context, name string) error {
	res, err := s.d.db.ExecContext(ctx, `DELETE FROM vault_credentials WHERE name = ?`, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("credential %q: %w", name, store.ErrNotFound)
	}
	return nil
}

// Compromised implements vault.Store.
func (s *VaultStore) Compromised(ctx context.Context, fps [][]byte) ([]vault.Fingerprint, error) {
	if len(fps) == 0 {
		return nil, nil
	}
	args := make([]any, len(fps))
	for i, f := range fps {
		args[i] = f
	}
	q := `SELECT fingerprint, name, field, revoked_at FROM vault_compromised WHERE fingerprint IN (?` +
		strings.Repeat(",?", len(fps)-1) + `)` // #nosec G202 -- only placeholders are concatenated
	rows, err := s.d.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []vault.Fingerprint
	for rows.Next() {
		var f vault.Fingerprint
		var at int64
		if err := rows.Scan(&f.Value, &f.Name, &f.Field, &at); err != nil {
			return nil, err
		}
		f.RevokedAt = timeOf(at)
		out = append(out, f)
	}
	return out, rows.Err()
}

// CompromisedAll lists every recorded fingerprint (for doctor and scan).
func (s *VaultStore) CompromisedAll(ctx context.Context) ([]vault.Fingerprint, error) {
	rows, err := s.d.db.QueryContext(ctx, `SELECT fingerprint, name, field, revoked_at FROM vault_compromised ORDER BY revoked_at`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []vault.Fingerprint
	for rows.Next() {
		var f vault.Fingerprint
		var at int64
		if err := rows.Scan(&f.Value, &f.Name, &f.Field, &at); err != nil {
			return nil, err
		}
		f.RevokedAt = timeOf(at)
		out = append(out, f)
	}
	return out, rows.Err()
}

// WrappedKeys implements vault.Store.
func (s *VaultStore) WrappedKeys(ctx context.Context) ([]vault.VersionRecord, error) {
	rows, err := s.d.db.QueryContext(ctx, `SELECT name, version, kek_version, wrapped_dek, created_at FROM vault_versions ORDER BY name, version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []vault.VersionRecord
	for rows.Next() {
		var v vault.VersionRecord
		var created int64
		if err := rows.Scan(&v.Name, &v.Version, &v.KEKVersion, &v.WrappedDEK, &created); err != nil {
			return nil, err
		}
		v.CreatedAt = timeOf(created)
		out = append(out, v)
	}
	return out, rows.Err()
}

// Rekey implements vault.Store.
func (s *VaultStore) Rekey(ctx context.Context, kek vault.KEKRecord, deks []vault.Rewrapped, sys []vault.SystemKeyRecord) error {
	return s.d.inTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, `UPDATE vault_keks SET active = 0`); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO vault_keks(version, wrapped, created_at, active) VALUES (?, ?, ?, 1)`,
			kek.Version, kek.Wrapped, unixOf(kek.CreatedAt)); err != nil {
			return err
		}
		for _, d := range deks {
			res, err := tx.ExecContext(ctx, `UPDATE vault_versions SET kek_version = ?, wrapped_dek = ? WHERE name = ? AND version = ? AND kek_version = ?`,
				d.NewKEKVersion, d.WrappedDEK, d.Name, d.Version, d.OldKEKVersion)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n != 1 {
				return fmt.Errorf("rekey %s v%d: %w", d.Name, d.Version, store.ErrConflict)
			}
		}
		for _, k := range sys {
			if _, err := tx.ExecContext(ctx, `UPDATE vault_system_keys SET kek_version = ?, wrapped = ? WHERE name = ?`,
				k.KEKVersion, k.Wrapped, k.Name); err != nil {
				return err
			}
		}
		return nil
	})
}

// TouchUsed implements vault.Store.
func (s *VaultStore) TouchUsed(ctx context.Context, used map[string]time.Time) error {
	names := make([]string, 0, len(used))
	for n := range used {
		names = append(names, n)
	}
	sort.Strings(names)
	return s.d.inTx(ctx, func(tx *sql.Tx) error {
		for _, n := range names {
			if _, err := tx.ExecContext(ctx, `UPDATE vault_credentials SET last_used_at = MAX(last_used_at, ?) WHERE name = ?`,
				unixOf(used[n]), n); err != nil {
				return err
			}
		}
		return nil
	})
}

var _ vault.Store = (*VaultStore)(nil)
