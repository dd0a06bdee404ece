package token

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Verification refusals. The gateway maps them to 401/403 with fixed
// public messages; none of them, nor the errors wrapping them, contain the
// token.
var (
	// ErrMalformed: not a keystile token (prefix, length, charset, checksum).
	ErrMalformed = errors.New("token: malformed")
	// ErrUnknown: well-formed, but no such token was issued here.
	ErrUnknown = errors.New("token: unknown")
	// ErrExpired: past its expiry, or past its grace period after rotation.
	ErrExpired = errors.New("token: expired")
	// ErrRevoked: revoked.
	ErrRevoked = errors.New("token: revoked")
	// ErrFrozen: frozen (for instance by the anomaly detector) until unfrozen.
	ErrFrozen = errors.New("token: frozen")
	// ErrKilled: refused by the kill switch (internal/killswitch), which
	// covers this token, its venue or everything. It wraps ErrFrozen: a
	// killed token is a frozen one that only an admin's `panic clear`
	// thaws.
	ErrKilled = fmt.Errorf("%w by the kill switch", ErrFrozen)
	// ErrVenue: the token is not valid for the requested venue.
	ErrVenue = errors.New("token: venue not allowed")
	// ErrSource: the request's source address is outside the token's CIDRs.
	ErrSource = errors.New("token: source address not allowed")
	// ErrEnvironment: a test token against a live endpoint, or the reverse.
	ErrEnvironment = errors.New("token: wrong environment")
)

// Management errors.
var (
	// ErrInvalid: a CreateRequest or option failed validation.
	ErrInvalid = errors.New("token: invalid")
	// ErrNotFound: no token with this id.
	ErrNotFound = errors.New("token: not found")
	// ErrRotated: the token was already rotated; rotate its successor.
	ErrRotated = errors.New("token: already rotated")
)

// RefusedError is returned by Verify when a known token is refused. It
// carries the token's public id for the audit log; Err is one of the
// sentinels above and errors.Is sees through it.
type RefusedError struct {
	ID  ID
	Err error
}

func (e *RefusedError) Error() string { return fmt.Sprintf("token %s: %v", e.ID, e.Err) }

// Unwrap returns the refusal sentinel.
func (e *RefusedError) Unwrap() error { return e.Err }

// ID is a token's public identifier ("tok_" + 10 base32 characters). It is
// not secret: it is shown in listings, logs and audit records and used to
// revoke, rotate and freeze.
type ID string

// Token is a client token's record, without its secret. Values returned by
// Verify are shared, read-only snapshots: callers must not modify them.
type Token struct {
	ID     ID
	Name   string
	Policy string   // policy name; empty means the default policy
	Venues []string // venues the token may reach; at least one
	Scopes []string // operation patterns, see ScopeMatches
	Test   bool     // kst_test_: test/demo endpoints only
	CIDRs  []netip.Prefix

	CreatedAt  time.Time
	ExpiresAt  time.Time
	LastUsedAt time.Time // zero if never used
	RevokedAt  time.Time // zero unless revoked
	FrozenAt   time.Time // zero unless frozen

	// GraceUntil is set on a token that was rotated: it stays valid until
	// then (and never past ExpiresAt).
	GraceUntil  time.Time
	RotatedFrom ID // predecessor, if created by Rotate
	RotatedTo   ID // successor, if rotated
}

// Record is what a Store keeps: the token's attributes and the SHA-256
// digest of the token string. A Record never holds the token itself.
type Record struct {
	Token
	Digest [32]byte
}

// Store persists token records. Implementations must be safe for
// concurrent use. The Service serialises its own mutations and keeps the
// records it reads in memory; the store is never consulted on Verify.
type Store interface {
	// Create inserts r and, in the same transaction, replaces each record
	// in updated by ID (Rotate uses this to link old and new atomically).
	// A duplicate ID or digest fails with an error wrapping
	// store.ErrExists; an updated ID that does not exist with one wrapping
	// store.ErrNotFound, and nothing is written.
	Create(ctx context.Context, r Record, updated ...Record) error
	// Update replaces the record with r.ID (its digest never changes).
	// A missing ID fails with an error wrapping store.ErrNotFound.
	Update(ctx context.Context, r Record) error
	// All returns every record.
	All(ctx context.Context) ([]Record, error)
	// TouchUsed raises the last-used time of each listed token to the
	// given time (never lowers it); unknown ids are ignored.
	TouchUsed(ctx context.Context, used map[ID]time.Time) error
}

// CreateRequest describes a new token.
type CreateRequest struct {
	Name   string   // required, 1-128 printable characters
	Policy string   // optional policy name
	Venues []string // required, [a-z0-9_-]
	Scopes []string // nil: DefaultScopes
	Test   bool     // mint a kst_test_ token
	CIDRs  []netip.Prefix
	// TTL is the lifetime; 0 means Options.DefaultTTL. Above
	// Options.MaxTTL it is refused (ErrInvalid), not shortened.
	TTL time.Duration
}

// VerifyRequest is the context of one bot request.
type VerifyRequest struct {
	Venue        string
	Source       netip.Addr
	TestEndpoint bool // the request targets the venue's test/demo endpoint
	// AnyVenue marks a request addressed to keystile itself rather than to
	// a venue (a bot's POST /-/kill): the venue and live/test checks are
	// skipped; expiry, revocation, freeze and source still apply.
	AnyVenue bool
}
