package vault

import (
	"context"
	"time"
)

// Store persists the vault's sealed records. Implementations live in
// internal/store/*; every method is atomic (one transaction) and safe for
// concurrent use. Methods return errors wrapping store.ErrNotFound when a
// named record does not exist and store.ErrExists when Init finds an
// initialised vault. A Store never sees plaintext: it moves sealed bytes.
//
// The contract is wider than the house's usual 1-4 methods because each
// method is one transaction over related tables; splitting it would move
// transaction boundaries into the vault.
type Store interface {
	// Init stores the first KEK, the system keys and the metadata of a new
	// vault, failing with store.ErrExists if any KEK exists already.
	Init(ctx context.Context, meta map[string][]byte, kek KEKRecord, sys []SystemKeyRecord) error
	// Meta returns a vault metadata value (store.ErrNotFound if absent).
	Meta(ctx context.Context, key string) ([]byte, error)
	// Keyring returns every KEK and every system key.
	Keyring(ctx context.Context) ([]KEKRecord, []SystemKeyRecord, error)

	// PutVersion upserts the credential row and inserts one new version
	// with its fields, then deletes versions older than the newest keep.
	PutVersion(ctx context.Context, c CredentialRecord, v VersionRecord, keep int) error
	// Credential returns the credential row and its version numbers.
	Credential(ctx context.Context, name string) (CredentialRecord, error)
	// Version returns one sealed version of a credential.
	Version(ctx context.Context, name string, version int) (VersionRecord, error)
	// Credentials lists every credential row, ordered by name.
	Credentials(ctx context.Context) ([]CredentialRecord, error)
	// Revoke updates the credential row, deletes all of its versions and
	// records the given fingerprints as compromised.
	Revoke(ctx context.Context, c CredentialRecord, compromised []Fingerprint) error
	// Delete removes a credential and its versions (fingerprints stay).
	Delete(ctx context.Context, name string) error
	// Compromised reports which of the given fingerprints are recorded.
	Compromised(ctx context.Context, fps [][]byte) ([]Fingerprint, error)
	// WrappedKeys lists every wrapped data key (fields left empty).
	WrappedKeys(ctx context.Context) ([]VersionRecord, error)
	// Rekey, in one transaction, adds newKEK as the active KEK and replaces
	// the wrapped data keys and system keys given. A data key whose stored
	// kek_version no longer equals the one read (a concurrent change) makes
	// the whole call fail with store.ErrConflict.
	Rekey(ctx context.Context, newKEK KEKRecord, deks []Rewrapped, sys []SystemKeyRecord) error
	// TouchUsed records last-use times (best-effort bookkeeping).
	TouchUsed(ctx context.Context, used map[string]time.Time) error
}

// KEKRecord is a key-encryption key wrapped by the root key.
type KEKRecord struct {
	Version   int
	Wrapped   []byte
	CreatedAt time.Time
	Active    bool
}

// SystemKeyRecord is an internal key (fingerprint, MAC, ...) wrapped by a KEK.
type SystemKeyRecord struct {
	Name       string
	KEKVersion int
	Wrapped    []byte
}

// CredentialRecord is the metadata row of a credential; MAC authenticates it.
type CredentialRecord struct {
	Name           string
	CurrentVersion int
	State          string
	RotationDays   int
	CreatedAt      time.Time
	RotatedAt      time.Time
	RevokedAt      time.Time
	LastUsedAt     time.Time
	MAC            []byte
	// Versions and Fields are filled by Credential and Credentials: the
	// version numbers kept (ascending) and the field names of the current
	// version (sorted). Ignored by PutVersion and Revoke.
	Versions []int
	Fields   []string
}

// VersionRecord is one sealed version of a credential.
type VersionRecord struct {
	Name       string
	Version    int
	KEKVersion int
	WrappedDEK []byte
	CreatedAt  time.Time
	Fields     map[string][]byte // field name -> sealed value
}

// Rewrapped is a data key rewrapped under a new KEK during Rekey.
type Rewrapped struct {
	Name          string
	Version       int
	OldKEKVersion int
	NewKEKVersion int
	WrappedDEK    []byte
}

// Fingerprint is a keyed fingerprint of a value revoked as compromised.
type Fingerprint struct {
	Value     []byte
	Name      string
	Field     string
	RevokedAt time.Time
}
