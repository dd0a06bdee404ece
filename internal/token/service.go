package token

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/keystile/keystile/internal/secret"
)

// Defaults for Options.
const (
	DefaultTTL = 24 * time.Hour
	DefaultMax = 720 * time.Hour
)

// Options configures a Service. The zero value of every field but Store is
// usable.
type Options struct {
	// Store persists records. Required.
	Store Store
	// DefaultTTL is the lifetime of a token created without one; 0 means
	// 24h.
	DefaultTTL time.Duration
	// MaxTTL caps every token's lifetime; 0 means 720h.
	MaxTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives management events (never a token); nil discards.
	Logger *slog.Logger
}

// Service issues, verifies and manages client tokens. It keeps a complete
// in-memory index of the store's records: Verify never touches the store,
// and every mutation updates the index before it returns. It is safe for
// concurrent use.
type Service struct {
	store  Store
	defTTL time.Duration
	maxTTL time.Duration
	now    func() time.Time
	log    *slog.Logger

	mu    sync.Mutex // serialises mutations and Reload
	idx   atomic.Pointer[index]
	dummy *entry // compared against when a digest is not found
}

// usage is a token's in-memory last-use time, shared by every snapshot of
// the same token so that no update is lost when the index is replaced.
type usage struct {
	used    atomic.Int64 // unix nanoseconds, 0 = never
	flushed atomic.Int64 // last value written to the store
}

// entry is one token in the index. tok is immutable once published.
type entry struct {
	tok    *Token
	digest [32]byte
	use    *usage
}

// index is an immutable snapshot; mutations publish a modified copy.
type index struct {
	byDigest map[[32]byte]*entry
	byID     map[ID]*entry
}

// New builds a Service and loads every record of opts.Store into memory.
func New(ctx context.Context, opts Options) (*Service, error) {
	if opts.Store == nil {
		return nil, fmt.Errorf("%w: options: nil store", ErrInvalid)
	}
	s := &Service{store: opts.Store, defTTL: opts.DefaultTTL, maxTTL: opts.MaxTTL, now: opts.Now, log: opts.Logger}
	if s.defTTL == 0 {
		s.defTTL = DefaultTTL
	}
	if s.maxTTL == 0 {
		s.maxTTL = DefaultMax
	}
	if s.defTTL < 0 || s.maxTTL < 0 || s.defTTL > s.maxTTL {
		return nil, fmt.Errorf("%w: options: default ttl %s and max ttl %s: want 0 < default <= max", ErrInvalid, s.defTTL, s.maxTTL)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.dummy = &entry{
		tok: &Token{ID: "tok_dummy", Venues: []string{"\x00"}, ExpiresAt: time.Unix(1<<40, 0)},
		use: &usage{},
	}
	if _, err := rand.Read(s.dummy.digest[:]); err != nil {
		return nil, fmt.Errorf("token: read random: %w", err)
	}
	if err := s.Reload(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload replaces the in-memory index with the store's records, keeping
// in-memory last-use times. Call it when another replica changed the store.
func (s *Service) Reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs, err := s.store.All(ctx)
	if err != nil {
		return fmt.Errorf("token: load: %w", err)
	}
	old := s.idx.Load()
	idx := &index{byDigest: make(map[[32]byte]*entry, len(recs)), byID: make(map[ID]*entry, len(recs))}
	for _, r := range recs {
		t := r.Token
		e := &entry{tok: &t, digest: r.Digest}
		if old != nil {
			if oe, ok := old.byID[t.ID]; ok {
				e.use = oe.use
			}
		}
		if e.use == nil {
			e.use = &usage{}
			e.use.flushed.Store(nanos(t.LastUsedAt))
		}
		if _, dup := idx.byDigest[r.Digest]; dup {
			return fmt.Errorf("token: load: duplicate digest for %s", t.ID)
		}
		idx.byDigest[r.Digest] = e
		idx.byID[t.ID] = e
	}
	s.idx.Store(idx)
	return nil
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// Verify authenticates one request's token. It parses raw offline, looks
// its digest up in memory and checks, in order: expiry (and rotation
// grace), revocation, freeze, venue, source address, live/test binding.
// Unknown tokens take the same path as known ones (a constant-time compare
// against a dummy digest, then the same checks) so timing does not tell
// them apart. Errors are ErrMalformed, ErrUnknown, or a *RefusedError
// wrapping ErrExpired, ErrRevoked, ErrFrozen, ErrVenue, ErrSource or
// ErrEnvironment. The returned Token is shared and read-only.
func (s *Service) Verify(_ context.Context, raw string, r VerifyRequest) (*Token, error) {
	var buf [Len]byte
	if _, ok := parse(raw, &buf); !ok {
		return nil, ErrMalformed
	}
	d := sha256.Sum256(buf[:])
	clear(buf[:])
	e, found := s.idx.Load().byDigest[d]
	if !found {
		e = s.dummy
	}
	match := subtle.ConstantTimeCompare(d[:], e.digest[:]) == 1
	now := s.now()
	err := check(e.tok, now, r)
	if !found || !match {
		return nil, ErrUnknown
	}
	if err != nil {
		return nil, &RefusedError{ID: e.tok.ID, Err: err}
	}
	n := now.UnixNano()
	// Record at most once a second per token, so that concurrent
	// verifications of one token do not all write the same cache line.
	if n-e.use.used.Load() >= int64(time.Second) {
		e.use.used.Store(n)
	}
	return e.tok, nil
}

// check applies the verification rules to t, in their documented order.
func check(t *Token, now time.Time, r VerifyRequest) error {
	switch {
	case !now.Before(t.ExpiresAt):
		return ErrExpired
	case !t.GraceUntil.IsZero() && !now.Before(t.GraceUntil):
		return ErrExpired
	case !t.RevokedAt.IsZero():
		return ErrRevoked
	case !t.FrozenAt.IsZero():
		return ErrFrozen
	case !r.AnyVenue && !slices.Contains(t.Venues, r.Venue):
		return ErrVenue
	case !sourceAllowed(t.CIDRs, r.Source):
		return ErrSource
	case !r.AnyVenue && t.Test != r.TestEndpoint:
		return ErrEnvironment
	}
	return nil
}

func sourceAllowed(cidrs []netip.Prefix, a netip.Addr) bool {
	if len(cidrs) == 0 {
		return true
	}
	a = a.Unmap()
	for _, p := range cidrs {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Create mints a token for req and stores its digest. The raw token is
// returned once, here, as a secret; keystile cannot show it again.
func (s *Service) Create(ctx context.Context, req CreateRequest) (secret.Value, *Token, error) {
	t, ttl, err := s.validate(req)
	if err != nil {
		return secret.Value{}, nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now().UTC().Round(0)
	t.CreatedAt = now
	t.ExpiresAt = now.Add(ttl)
	raw, rec, err := s.mintRecord(t)
	if err != nil {
		return secret.Value{}, nil, err
	}
	if err := s.store.Create(ctx, rec); err != nil {
		raw.Wipe()
		return secret.Value{}, nil, fmt.Errorf("token: create: %w", err)
	}
	s.publish(rec)
	s.log.LogAttrs(ctx, slog.LevelInfo, "token created", slog.String("id", string(t.ID)),
		slog.String("name", t.Name), slog.Bool("test", t.Test), slog.Time("expires_at", t.ExpiresAt))
	return raw, t.clone(), nil
}

// mintRecord gives t a fresh ID and secret. Called with s.mu held.
func (s *Service) mintRecord(t *Token) (secret.Value, Record, error) {
	idx := s.idx.Load()
	for range 8 {
		id, err := newID()
		if err != nil {
			return secret.Value{}, Record{}, err
		}
		if _, taken := idx.byID[id]; !taken {
			t.ID = id
			break
		}
	}
	if t.ID == "" {
		return secret.Value{}, Record{}, errors.New("token: could not pick a free id")
	}
	raw, digest, err := mint(t.Test)
	if err != nil {
		return secret.Value{}, Record{}, err
	}
	return raw, Record{Token: *t, Digest: digest}, nil
}

func newID() (ID, error) {
	var b [7]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("token: read random: %w", err)
	}
	enc := base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:])
	return ID("tok_" + strings.ToLower(enc[:10])), nil
}

// publish installs recs in a copy of the index and makes it current.
// Called with s.mu held.
func (s *Service) publish(recs ...Record) {
	old := s.idx.Load()
	idx := &index{byDigest: make(map[[32]byte]*entry, len(old.byDigest)+1), byID: make(map[ID]*entry, len(old.byID)+1)}
	for k, v := range old.byDigest {
		idx.byDigest[k] = v
	}
	for k, v := range old.byID {
		idx.byID[k] = v
	}
	for _, r := range recs {
		t := r.Token
		e := &entry{tok: &t, digest: r.Digest}
		if oe, ok := old.byID[t.ID]; ok {
			e.use = oe.use
		} else {
			e.use = &usage{}
		}
		idx.byDigest[r.Digest] = e
		idx.byID[t.ID] = e
	}
	s.idx.Store(idx)
}

// validate checks req and returns a Token holding its normalised
// attributes, and the token's lifetime.
func (s *Service) validate(req CreateRequest) (*Token, time.Duration, error) {
	if err := checkText("name", req.Name, true); err != nil {
		return nil, 0, err
	}
	if err := checkText("policy", req.Policy, false); err != nil {
		return nil, 0, err
	}
	t := &Token{Name: req.Name, Policy: req.Policy, Test: req.Test}
	if len(req.Venues) == 0 {
		return nil, 0, fmt.Errorf("%w: at least one venue is required", ErrInvalid)
	}
	for _, v := range req.Venues {
		if !venueName(v) {
			return nil, 0, fmt.Errorf("%w: venue %q: want 1-64 characters [a-z0-9_-]", ErrInvalid, v)
		}
		if !slices.Contains(t.Venues, v) {
			t.Venues = append(t.Venues, v)
		}
	}
	slices.Sort(t.Venues)
	scopes := req.Scopes
	if len(scopes) == 0 {
		scopes = DefaultScopes()
	}
	for _, sc := range scopes {
		if err := ValidateScope(sc); err != nil {
			return nil, 0, err
		}
		if !slices.Contains(t.Scopes, sc) {
			t.Scopes = append(t.Scopes, sc)
		}
	}
	for _, p := range req.CIDRs {
		if !p.IsValid() {
			return nil, 0, fmt.Errorf("%w: invalid source prefix", ErrInvalid)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
		if p.Addr().Is4() && p.Bits() > 32 {
			return nil, 0, fmt.Errorf("%w: source prefix %s: IPv4-mapped prefix too long", ErrInvalid, p)
		}
		if !slices.Contains(t.CIDRs, p) {
			t.CIDRs = append(t.CIDRs, p)
		}
	}
	ttl := req.TTL
	switch {
	case ttl < 0:
		return nil, 0, fmt.Errorf("%w: negative ttl %s", ErrInvalid, ttl)
	case ttl == 0:
		ttl = s.defTTL
	case ttl > s.maxTTL:
		return nil, 0, fmt.Errorf("%w: ttl %s is above the maximum %s (tokens.max_ttl)", ErrInvalid, ttl, s.maxTTL)
	}
	return t, ttl, nil
}

func checkText(field, v string, required bool) error {
	if required && v == "" {
		return fmt.Errorf("%w: %s is required", ErrInvalid, field)
	}
	if len(v) > 128 || !utf8.ValidString(v) {
		return fmt.Errorf("%w: %s: want at most 128 bytes of UTF-8", ErrInvalid, field)
	}
	for _, r := range v {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: %s: unprintable character %U", ErrInvalid, field, r)
		}
	}
	return nil
}

func venueName(v string) bool {
	if v == "" || len(v) > 64 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// get returns the current entry for id. Called with s.mu held or for reads.
func (s *Service) get(id ID) (*entry, error) {
	e, ok := s.idx.Load().byID[id]
	if !ok {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return e, nil
}

// view returns a caller-owned copy of e's token with its in-memory
// last-use time.
func (e *entry) view() *Token {
	t := e.tok.clone()
	if n := e.use.used.Load(); n > nanos(t.LastUsedAt) {
		t.LastUsedAt = time.Unix(0, n).UTC()
	}
	return t
}

func (t *Token) clone() *Token {
	c := *t
	c.Venues = slices.Clone(t.Venues)
	c.Scopes = slices.Clone(t.Scopes)
	c.CIDRs = slices.Clone(t.CIDRs)
	return &c
}

// Get returns the token with this id (a copy the caller owns).
func (s *Service) Get(_ context.Context, id ID) (*Token, error) {
	e, err := s.get(id)
	if err != nil {
		return nil, err
	}
	return e.view(), nil
}

// List returns every token, oldest first (copies the caller owns).
func (s *Service) List(_ context.Context) ([]*Token, error) {
	idx := s.idx.Load()
	out := make([]*Token, 0, len(idx.byID))
	for _, e := range idx.byID {
		out = append(out, e.view())
	}
	slices.SortFunc(out, func(a, b *Token) int {
		return cmp.Or(a.CreatedAt.Compare(b.CreatedAt), strings.Compare(string(a.ID), string(b.ID)))
	})
	return out, nil
}

// mutate applies fn to a copy of token id, stores it and publishes it
// before returning. fn returning errNoChange skips the write.
func (s *Service) mutate(ctx context.Context, id ID, what string, fn func(t *Token, now time.Time) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.get(id)
	if err != nil {
		return err
	}
	t := e.tok.clone()
	if err := fn(t, s.now().UTC().Round(0)); err != nil {
		if errors.Is(err, errNoChange) {
			return nil
		}
		return err
	}
	rec := Record{Token: *t, Digest: e.digest}
	if err := s.store.Update(ctx, rec); err != nil {
		return fmt.Errorf("token: %s %s: %w", what, id, err)
	}
	s.publish(rec)
	s.log.LogAttrs(ctx, slog.LevelInfo, "token "+what, slog.String("id", string(id)), slog.String("name", t.Name))
	return nil
}

var errNoChange = errors.New("token: no change")

// Revoke revokes token id immediately, with no grace period: the very next
// Verify of it fails with ErrRevoked. Revoking only affects this id: a
// token rotated from or to it is not revoked with it (revoke each id, for
// instance both sides of a rotation in progress after a compromise).
// Revoking a revoked token is a no-op that keeps the first time.
func (s *Service) Revoke(ctx context.Context, id ID) error {
	return s.mutate(ctx, id, "revoked", func(t *Token, now time.Time) error {
		if !t.RevokedAt.IsZero() {
			return errNoChange
		}
		t.RevokedAt = now
		return nil
	})
}

// Freeze suspends token id until Unfreeze; Verify refuses it with
// ErrFrozen. Freezing a frozen token is a no-op.
func (s *Service) Freeze(ctx context.Context, id ID) error {
	return s.mutate(ctx, id, "frozen", func(t *Token, now time.Time) error {
		if !t.FrozenAt.IsZero() {
			return errNoChange
		}
		t.FrozenAt = now
		return nil
	})
}

// Unfreeze lifts a freeze. Unfreezing a token that is not frozen is a
// no-op.
func (s *Service) Unfreeze(ctx context.Context, id ID) error {
	return s.mutate(ctx, id, "unfrozen", func(t *Token, _ time.Time) error {
		if t.FrozenAt.IsZero() {
			return errNoChange
		}
		t.FrozenAt = time.Time{}
		return nil
	})
}

// Rotate mints a successor of token id with a new secret and the same
// attributes (name, policy, venues, scopes, test binding, CIDRs) and the
// same lifetime counted from now (capped at MaxTTL). The old token stays
// valid until now+grace (grace 0: invalid at once), then fails with
// ErrExpired. Revoked, frozen, expired and already rotated tokens are not
// rotated (ErrRevoked, ErrFrozen, ErrExpired, ErrRotated): rotating a frozen
// token would otherwise lift the freeze.
func (s *Service) Rotate(ctx context.Context, id ID, grace time.Duration) (secret.Value, *Token, error) {
	if grace < 0 {
		return secret.Value{}, nil, fmt.Errorf("%w: negative grace %s", ErrInvalid, grace)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.get(id)
	if err != nil {
		return secret.Value{}, nil, err
	}
	now := s.now().UTC().Round(0)
	old := e.tok.clone()
	switch {
	case !old.RevokedAt.IsZero():
		return secret.Value{}, nil, fmt.Errorf("%w: rotate %s", ErrRevoked, id)
	case old.RotatedTo != "":
		return secret.Value{}, nil, fmt.Errorf("%w: rotate %s (rotated to %s)", ErrRotated, id, old.RotatedTo)
	case !old.FrozenAt.IsZero():
		return secret.Value{}, nil, fmt.Errorf("%w: rotate %s", ErrFrozen, id)
	case !now.Before(old.ExpiresAt):
		return secret.Value{}, nil, fmt.Errorf("%w: rotate %s", ErrExpired, id)
	}
	ttl := min(old.ExpiresAt.Sub(old.CreatedAt), s.maxTTL)
	if ttl <= 0 {
		ttl = s.defTTL
	}
	succ := &Token{
		Name: old.Name, Policy: old.Policy, Venues: old.Venues, Scopes: old.Scopes, Test: old.Test, CIDRs: old.CIDRs,
		CreatedAt: now, ExpiresAt: now.Add(ttl), RotatedFrom: old.ID,
	}
	raw, rec, err := s.mintRecord(succ)
	if err != nil {
		return secret.Value{}, nil, err
	}
	old.GraceUntil = now.Add(grace)
	old.RotatedTo = succ.ID
	oldRec := Record{Token: *old, Digest: e.digest}
	if err := s.store.Create(ctx, rec, oldRec); err != nil {
		raw.Wipe()
		return secret.Value{}, nil, fmt.Errorf("token: rotate %s: %w", id, err)
	}
	s.publish(rec, oldRec)
	s.log.LogAttrs(ctx, slog.LevelInfo, "token rotated", slog.String("id", string(id)),
		slog.String("successor", string(succ.ID)), slog.Time("grace_until", old.GraceUntil))
	return raw, succ.clone(), nil
}

// FlushUsage writes last-use times recorded by Verify since the previous
// flush to the store. The application calls it periodically and on
// shutdown.
func (s *Service) FlushUsage(ctx context.Context) error {
	idx := s.idx.Load()
	used := make(map[ID]time.Time)
	marks := make(map[*usage]int64)
	for id, e := range idx.byID {
		n := e.use.used.Load()
		if n > e.use.flushed.Load() {
			used[id] = time.Unix(0, n).UTC()
			marks[e.use] = n
		}
	}
	if len(used) == 0 {
		return nil
	}
	if err := s.store.TouchUsed(ctx, used); err != nil {
		return fmt.Errorf("token: flush usage: %w", err)
	}
	for u, n := range marks {
		for cur := u.flushed.Load(); n > cur && !u.flushed.CompareAndSwap(cur, n); cur = u.flushed.Load() {
		}
	}
	return nil
}
