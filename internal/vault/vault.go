package vault

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store"
)

// Errors callers branch on.
var (
	// ErrNotFound: no credential of that name.
	ErrNotFound = errors.New("vault: credential not found")
	// ErrRevoked: the credential was revoked and has no usable version.
	ErrRevoked = errors.New("vault: credential revoked")
	// ErrCompromised: a value was revoked as compromised before and is refused.
	ErrCompromised = errors.New("vault: value was revoked as compromised and cannot be stored again")
	// ErrIntegrity: a stored record does not authenticate: it was edited,
	// moved between rows, or relabelled.
	ErrIntegrity = errors.New("vault: integrity check failed: stored record was modified")
	// ErrWrongMasterKey: the root key does not open the keyring.
	ErrWrongMasterKey = errors.New("vault: master key does not open this vault (wrong key or passphrase)")
	// ErrNotInitialized: the store holds no vault.
	ErrNotInitialized = errors.New("vault: not initialised (run keystile init)")
	// ErrNoField: the credential has no field of that name.
	ErrNoField = errors.New("vault: credential has no such field")
	// ErrClosed: the vault was closed.
	ErrClosed = errors.New("vault: closed")
)

// InputError is a refusal of invalid input (names, fields, sizes).
type InputError struct{ Msg string }

func (e *InputError) Error() string { return "vault: " + e.Msg }

func inputErr(format string, args ...any) error {
	return &InputError{Msg: fmt.Sprintf(format, args...)}
}

// IntegrityError says which record failed to authenticate.
type IntegrityError struct {
	Record string // e.g. `credential "binance" version 3 field "secret"`
}

func (e *IntegrityError) Error() string {
	return "vault: integrity check failed for " + e.Record + ": stored record was modified or moved"
}

// Unwrap makes errors.Is(err, ErrIntegrity) true.
func (e *IntegrityError) Unwrap() error { return ErrIntegrity }

// Credential states.
const (
	StateActive  = "active"
	StateRevoked = "revoked"
)

// System key names.
const (
	sysFingerprint = "fingerprint"
	sysMAC         = "credential-mac"
)

var (
	namePattern  = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	fieldPattern = regexp.MustCompile(`^[a-z][a-z0-9_]{0,31}$`)
)

// ValidName reports whether s is a valid credential name.
func ValidName(s string) bool { return namePattern.MatchString(s) }

// ValidField reports whether s is a valid field name.
func ValidField(s string) bool { return fieldPattern.MatchString(s) }

// MaxFieldSize bounds one field's value (PEM certificates fit easily).
const MaxFieldSize = 64 << 10

// Options configure Open. The zero value of each optional field is safe.
type Options struct {
	// Store holds the sealed records. Required.
	Store Store
	// RootKey is the 32-byte key from the master-key source. Required. The
	// vault keeps its own copy; the caller may wipe theirs.
	RootKey secret.Value
	// KeepVersions is how many versions of a credential are kept. If 0, 5.
	KeepVersions int
	// CacheTTL is how long an opened credential stays in memory. If 0, 5
	// minutes; negative disables the cache.
	CacheTTL time.Duration
	// Now returns the current time. If nil, time.Now.
	Now func() time.Time
	// Logger receives operational messages (never values). If nil, none.
	Logger *slog.Logger
	// Observe, if set, is called with every field value the vault opens,
	// so that the log redactor can learn the values it must scrub.
	Observe func(secret.Value)
}

// Vault is an open vault. It is safe for concurrent use.
type Vault struct {
	store    Store
	keep     int
	cacheTTL time.Duration
	now      func() time.Time
	log      *slog.Logger
	observe  func(secret.Value)

	writeMu sync.Mutex // serialises writes and rekey

	mu        sync.RWMutex
	rootKey   []byte
	keks      map[int][]byte
	activeKEK int
	sys       map[string][]byte
	cache     map[string]*cacheEntry
	gen       map[string]uint64 // bumped when a credential changes
	closed    bool

	usedMu sync.Mutex
	used   map[string]time.Time
}

type cacheEntry struct {
	mu      sync.RWMutex // held for reading during callbacks; for writing while wiping
	cred    *Credential
	expires time.Time
	wiped   bool
}

// Initialize creates a new vault in st: a first KEK wrapped by rootKey and
// fresh system keys. meta is stored alongside (e.g. master-key source and
// KDF parameters). It fails wrapping store.ErrExists on an existing vault.
func Initialize(ctx context.Context, st Store, rootKey secret.Value, meta map[string][]byte, now time.Time) error {
	if rootKey.Len() != KeySize {
		return fmt.Errorf("vault: root key must be %d bytes", KeySize)
	}
	kek, err := newKey()
	if err != nil {
		return err
	}
	defer secret.Wipe(kek)
	wrapped, err := seal(rootKey.Reveal(), kek, adKEK(1))
	if err != nil {
		return fmt.Errorf("vault: wrap kek: %w", err)
	}
	var sys []SystemKeyRecord
	for _, name := range []string{sysFingerprint, sysMAC} {
		k, err := newKey()
		if err != nil {
			return err
		}
		w, err := seal(kek, k, adSystem(name, 1))
		secret.Wipe(k)
		if err != nil {
			return fmt.Errorf("vault: wrap system key: %w", err)
		}
		sys = append(sys, SystemKeyRecord{Name: name, KEKVersion: 1, Wrapped: w})
	}
	if err := st.Init(ctx, meta, KEKRecord{Version: 1, Wrapped: wrapped, CreatedAt: now, Active: true}, sys); err != nil {
		return fmt.Errorf("vault: initialise: %w", err)
	}
	return nil
}

// Open unwraps the keyring with the root key and returns a ready vault.
func Open(ctx context.Context, o Options) (*Vault, error) {
	if o.Store == nil {
		return nil, errors.New("vault: no store")
	}
	if o.RootKey.Len() != KeySize {
		return nil, fmt.Errorf("vault: root key must be %d bytes", KeySize)
	}
	v := &Vault{
		store:    o.Store,
		keep:     o.KeepVersions,
		cacheTTL: o.CacheTTL,
		now:      o.Now,
		log:      o.Logger,
		observe:  o.Observe,
		rootKey:  o.RootKey.Clone().Reveal(),
		cache:    map[string]*cacheEntry{},
		gen:      map[string]uint64{},
		used:     map[string]time.Time{},
	}
	if v.keep <= 0 {
		v.keep = 5
	}
	if v.cacheTTL == 0 {
		v.cacheTTL = 5 * time.Minute
	}
	if v.now == nil {
		v.now = time.Now
	}
	if v.log == nil {
		v.log = slog.New(slog.DiscardHandler)
	}
	if err := v.loadKeyring(ctx); err != nil {
		secret.Wipe(v.rootKey)
		return nil, err
	}
	return v, nil
}

func (v *Vault) loadKeyring(ctx context.Context) error {
	keks, sys, err := v.store.Keyring(ctx)
	if err != nil {
		return fmt.Errorf("vault: load keyring: %w", err)
	}
	if len(keks) == 0 {
		return ErrNotInitialized
	}
	m := map[int][]byte{}
	active := 0
	for _, k := range keks {
		pt, err := open(v.rootKey, k.Wrapped, adKEK(k.Version))
		if err != nil {
			return ErrWrongMasterKey
		}
		m[k.Version] = pt
		if k.Active && k.Version > active {
			active = k.Version
		}
	}
	if active == 0 {
		return &IntegrityError{Record: "keyring (no active key)"}
	}
	s := map[string][]byte{}
	for _, k := range sys {
		kek, ok := m[k.KEKVersion]
		if !ok {
			return &IntegrityError{Record: fmt.Sprintf("system key %q", k.Name)}
		}
		pt, err := open(kek, k.Wrapped, adSystem(k.Name, k.KEKVersion))
		if err != nil {
			return &IntegrityError{Record: fmt.Sprintf("system key %q", k.Name)}
		}
		s[k.Name] = pt
	}
	for _, n := range []string{sysFingerprint, sysMAC} {
		if _, ok := s[n]; !ok {
			return &IntegrityError{Record: fmt.Sprintf("system key %q (missing)", n)}
		}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.keks, v.activeKEK, v.sys = m, active, s
	return nil
}

// Close wipes keys and cached credentials, and flushes usage times.
func (v *Vault) Close(ctx context.Context) error {
	err := v.FlushUsage(ctx)
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return nil
	}
	v.closed = true
	for name, e := range v.cache {
		e.wipe()
		delete(v.cache, name)
	}
	for _, k := range v.keks {
		secret.Wipe(k)
	}
	for _, k := range v.sys {
		secret.Wipe(k)
	}
	secret.Wipe(v.rootKey)
	return err
}

// Fingerprint returns the keyed fingerprint of a value: equal values give
// equal fingerprints, and the fingerprint reveals nothing about the value
// without the vault's fingerprint key. The leak scanner uses it.
func (v *Vault) Fingerprint(value []byte) []byte {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return mac(v.sys[sysFingerprint], value)
}

// DeriveKey returns a 32-byte key for purpose (e.g. "audit.checkpoint.v1"),
// derived from the vault's MAC system key with HMAC-SHA256 over a fixed
// label: the same vault always gives the same key for a purpose, different
// purposes give independent keys, and nobody without the master key can
// compute it. Rekeying the vault does not change derived keys. The caller
// owns the returned value.
func (v *Vault) DeriveKey(purpose string) (secret.Value, error) {
	if purpose == "" {
		return secret.Value{}, errors.New("vault: derive key: empty purpose")
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	k := v.sys[sysMAC]
	if len(k) == 0 {
		return secret.Value{}, errors.New("vault: derive key: vault is closed")
	}
	return secret.New(mac(k, []byte("keystile derived key\x00"+purpose))), nil
}

// SetOptions are optional attributes of Set.
type SetOptions struct {
	// RotationDays is the rotation period doctor checks; 0 keeps the
	// current setting (default 90 for a new credential).
	RotationDays int
	// MustExist makes Set fail with ErrNotFound on a new name (Rotate).
	MustExist bool
}

// Set stores fields as a new version of the named credential, creating it
// if needed. Values revoked as compromised before are refused with
// ErrCompromised. Set takes ownership of the values and wipes them.
func (v *Vault) Set(ctx context.Context, name string, fields map[string]secret.Value, o SetOptions) (Info, error) {
	defer func() {
		for _, f := range fields {
			f.Wipe()
		}
	}()
	if !ValidName(name) {
		return Info{}, inputErr("invalid credential name %q (lowercase letters, digits, . _ -; up to 64)", name)
	}
	if len(fields) == 0 {
		return Info{}, inputErr("a credential needs at least one field")
	}
	for f, val := range fields {
		if !ValidField(f) {
			return Info{}, inputErr("invalid field name %q (lowercase letters, digits, _; up to 32)", f)
		}
		if val.IsZero() {
			return Info{}, inputErr("field %q is empty", f)
		}
		if val.Len() > MaxFieldSize {
			return Info{}, inputErr("field %q is larger than %d bytes", f, MaxFieldSize)
		}
	}
	v.writeMu.Lock()
	defer v.writeMu.Unlock()
	if err := v.checkOpen(); err != nil {
		return Info{}, err
	}

	// Refuse compromised values.
	fps := make([][]byte, 0, len(fields))
	for _, val := range fields {
		fps = append(fps, v.Fingerprint(val.Reveal()))
	}
	hits, err := v.store.Compromised(ctx, fps)
	if err != nil {
		return Info{}, fmt.Errorf("vault: check fingerprints: %w", err)
	}
	if len(hits) > 0 {
		return Info{}, fmt.Errorf("%w (it was field %q of credential %q, revoked %s)", ErrCompromised,
			hits[0].Field, hits[0].Name, hits[0].RevokedAt.UTC().Format(time.RFC3339))
	}

	now := v.now().UTC().Truncate(time.Second)
	cur, err := v.store.Credential(ctx, name)
	exists := err == nil
	switch {
	case errors.Is(err, store.ErrNotFound):
		if o.MustExist {
			return Info{}, fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		cur = CredentialRecord{Name: name, CreatedAt: now, RotationDays: 90}
	case err != nil:
		return Info{}, fmt.Errorf("vault: read %s: %w", name, err)
	default:
		if err := v.checkMAC(cur); err != nil {
			return Info{}, err
		}
	}
	next := cur
	next.CurrentVersion = cur.CurrentVersion + 1
	if exists && len(cur.Versions) > 0 && cur.Versions[len(cur.Versions)-1] >= next.CurrentVersion {
		next.CurrentVersion = cur.Versions[len(cur.Versions)-1] + 1
	}
	next.State = StateActive
	next.RotatedAt = now
	next.RevokedAt = time.Time{}
	if o.RotationDays > 0 {
		next.RotationDays = o.RotationDays
	}

	rec, err := v.sealVersion(name, next.CurrentVersion, fields, now)
	if err != nil {
		return Info{}, err
	}
	v.mu.RLock()
	next.MAC = credentialMAC(v.sys[sysMAC], next)
	v.mu.RUnlock()
	if err := v.store.PutVersion(ctx, next, rec, v.keep); err != nil {
		return Info{}, fmt.Errorf("vault: store %s: %w", name, err)
	}
	v.evict(name)
	v.log.Info("vault: credential stored", "credential", name, "version", next.CurrentVersion)
	return v.Show(ctx, name)
}

func (v *Vault) sealVersion(name string, version int, fields map[string]secret.Value, now time.Time) (VersionRecord, error) {
	dek, err := newKey()
	if err != nil {
		return VersionRecord{}, err
	}
	defer secret.Wipe(dek)
	v.mu.RLock()
	kv := v.activeKEK
	kek := v.keks[kv]
	wrapped, err := seal(kek, dek, adDEK(name, version, kv))
	v.mu.RUnlock()
	if err != nil {
		return VersionRecord{}, fmt.Errorf("vault: wrap data key: %w", err)
	}
	rec := VersionRecord{Name: name, Version: version, KEKVersion: kv, WrappedDEK: wrapped, CreatedAt: now,
		Fields: make(map[string][]byte, len(fields))}
	for f, val := range fields {
		ct, err := seal(dek, val.Reveal(), adField(name, f, version))
		if err != nil {
			return VersionRecord{}, fmt.Errorf("vault: seal field: %w", err)
		}
		rec.Fields[f] = ct
	}
	return rec, nil
}

func (v *Vault) checkMAC(c CredentialRecord) error {
	v.mu.RLock()
	want := credentialMAC(v.sys[sysMAC], c)
	v.mu.RUnlock()
	if !hmac.Equal(want, c.MAC) {
		return &IntegrityError{Record: fmt.Sprintf("credential %q metadata", c.Name)}
	}
	return nil
}

func (v *Vault) checkOpen() error {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.closed {
		return ErrClosed
	}
	return nil
}

// Revoke makes a credential unusable and destroys every version of it. With
// compromised, the keyed fingerprints of its values are kept so that the
// same values are refused if set again.
func (v *Vault) Revoke(ctx context.Context, name string, compromised bool) error {
	v.writeMu.Lock()
	defer v.writeMu.Unlock()
	if err := v.checkOpen(); err != nil {
		return err
	}
	cur, err := v.credential(ctx, name)
	if err != nil {
		return err
	}
	var fps []Fingerprint
	now := v.now().UTC().Truncate(time.Second)
	if compromised {
		// Fingerprint every value of every kept version. If a version
		// cannot be opened we refuse: revoking "as compromised" must not
		// silently skip values.
		for _, ver := range cur.Versions {
			err := v.withVersion(ctx, name, ver, func(c *Credential) error {
				for f, val := range c.fields {
					fps = append(fps, Fingerprint{Value: v.Fingerprint(val.Reveal()), Name: name, Field: f, RevokedAt: now})
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	next := cur
	next.State = StateRevoked
	next.RevokedAt = now
	v.mu.RLock()
	next.MAC = credentialMAC(v.sys[sysMAC], next)
	v.mu.RUnlock()
	if err := v.store.Revoke(ctx, next, fps); err != nil {
		return fmt.Errorf("vault: revoke %s: %w", name, err)
	}
	v.evict(name)
	v.log.Warn("vault: credential revoked", "credential", name, "compromised", compromised)
	return nil
}

// Delete removes a credential entirely. Compromised fingerprints stay.
func (v *Vault) Delete(ctx context.Context, name string) error {
	v.writeMu.Lock()
	defer v.writeMu.Unlock()
	if err := v.checkOpen(); err != nil {
		return err
	}
	if err := v.store.Delete(ctx, name); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: %q", ErrNotFound, name)
		}
		return fmt.Errorf("vault: delete %s: %w", name, err)
	}
	v.evict(name)
	return nil
}

func (v *Vault) credential(ctx context.Context, name string) (CredentialRecord, error) {
	c, err := v.store.Credential(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return c, fmt.Errorf("%w: %q", ErrNotFound, name)
	}
	if err != nil {
		return c, fmt.Errorf("vault: read %s: %w", name, err)
	}
	if err := v.checkMAC(c); err != nil {
		return c, err
	}
	return c, nil
}

// Info is the metadata of a credential: never a value.
type Info struct {
	Name           string    `json:"name"`
	State          string    `json:"state"`
	Fields         []string  `json:"fields"`
	CurrentVersion int       `json:"current_version"`
	Versions       []int     `json:"versions"`
	RotationDays   int       `json:"rotation_days"`
	CreatedAt      time.Time `json:"created_at"`
	RotatedAt      time.Time `json:"rotated_at"`
	RevokedAt      time.Time `json:"revoked_at,omitzero"`
	LastUsedAt     time.Time `json:"last_used_at,omitzero"`
}

// Age is how long the current version has existed.
func (i Info) Age(now time.Time) time.Duration { return now.Sub(i.RotatedAt) }

func (v *Vault) info(c CredentialRecord) Info {
	i := Info{Name: c.Name, State: c.State, Fields: c.Fields, CurrentVersion: c.CurrentVersion,
		Versions: c.Versions, RotationDays: c.RotationDays, CreatedAt: c.CreatedAt, RotatedAt: c.RotatedAt,
		RevokedAt: c.RevokedAt, LastUsedAt: c.LastUsedAt}
	v.usedMu.Lock()
	if t, ok := v.used[c.Name]; ok && t.After(i.LastUsedAt) {
		i.LastUsedAt = t.UTC().Truncate(time.Second)
	}
	v.usedMu.Unlock()
	if i.Fields == nil {
		i.Fields = []string{}
	}
	if i.Versions == nil {
		i.Versions = []int{}
	}
	return i
}

// Show returns a credential's metadata, verifying its integrity.
func (v *Vault) Show(ctx context.Context, name string) (Info, error) {
	c, err := v.credential(ctx, name)
	if err != nil {
		return Info{}, err
	}
	return v.info(c), nil
}

// List returns every credential's metadata, ordered by name. A record
// whose metadata fails its integrity check makes List fail.
func (v *Vault) List(ctx context.Context) ([]Info, error) {
	cs, err := v.store.Credentials(ctx)
	if err != nil {
		return nil, fmt.Errorf("vault: list: %w", err)
	}
	out := make([]Info, 0, len(cs))
	for _, c := range cs {
		if err := v.checkMAC(c); err != nil {
			return nil, err
		}
		out = append(out, v.info(c))
	}
	return out, nil
}

// Credential is an opened credential, valid only inside the WithCredential
// callback that received it. It must not be retained.
type Credential struct {
	Name    string
	Version int
	fields  map[string]secret.Value

	mu      sync.Mutex
	derived map[string]secret.Value // Derived's values, wiped with the fields
}

// Derived returns the value fn derives from this credential, computing it
// once per opened credential: the value is kept with the opened (cached)
// credential version and wiped with it, so an expensive derivation (an
// Ed25519 key's public half) is made once per credential version instead
// of once per request. name identifies the derivation. It is safe for
// concurrent use; the value is valid only inside the callback.
func (c *Credential) Derived(name string, fn func() (secret.Value, error)) (secret.Value, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, ok := c.derived[name]; ok {
		return v, nil
	}
	v, err := fn()
	if err != nil {
		return secret.Value{}, err
	}
	if c.derived == nil {
		c.derived = map[string]secret.Value{}
	}
	c.derived[name] = v
	return v, nil
}

// Field returns a field's value (ErrNoField if absent). The value is valid
// only inside the callback.
func (c *Credential) Field(name string) (secret.Value, error) {
	val, ok := c.fields[name]
	if !ok {
		return secret.Value{}, fmt.Errorf("%w: %q of credential %q", ErrNoField, name, c.Name)
	}
	return val, nil
}

// Has reports whether the credential has a field.
func (c *Credential) Has(name string) bool { _, ok := c.fields[name]; return ok }

// FieldNames lists the field names, sorted.
func (c *Credential) FieldNames() []string { return slices.Sorted(maps.Keys(c.fields)) }

// Fields returns the fields as a map (values shared, valid only inside the
// callback).
func (c *Credential) Fields() map[string]secret.Value { return maps.Clone(c.fields) }

func (c *Credential) wipe() {
	for _, f := range c.fields {
		f.Wipe()
	}
	c.mu.Lock()
	for _, d := range c.derived {
		d.Wipe()
	}
	c.mu.Unlock()
}

// WithCredential opens the current version of the named credential and
// calls fn with it. The credential must not escape fn. The returned error is
// fn's, or one wrapping ErrNotFound, ErrRevoked or ErrIntegrity.
//
// Opened credentials are cached for CacheTTL; while fn runs, the cached
// copy cannot be wiped under it.
func (v *Vault) WithCredential(ctx context.Context, name string, fn func(*Credential) error) error {
	now := v.now()
	v.mu.RLock()
	if v.closed {
		v.mu.RUnlock()
		return ErrClosed
	}
	e := v.cache[name]
	gen := v.gen[name]
	v.mu.RUnlock()
	if e != nil && now.Before(e.expires) {
		e.mu.RLock()
		if !e.wiped {
			defer e.mu.RUnlock()
			v.markUsed(name, now)
			return fn(e.cred)
		}
		e.mu.RUnlock()
	}

	c, err := v.credential(ctx, name)
	if err != nil {
		return err
	}
	if c.State != StateActive {
		return fmt.Errorf("%w: %q", ErrRevoked, name)
	}
	rec, err := v.store.Version(ctx, name, c.CurrentVersion)
	if errors.Is(err, store.ErrNotFound) {
		return &IntegrityError{Record: fmt.Sprintf("credential %q version %d (missing)", name, c.CurrentVersion)}
	}
	if err != nil {
		return fmt.Errorf("vault: read %s: %w", name, err)
	}
	cred, err := v.openVersion(rec, c.CurrentVersion)
	if err != nil {
		return err
	}
	v.markUsed(name, now)
	if v.cacheTTL < 0 {
		defer cred.wipe()
		return fn(cred)
	}
	entry := &cacheEntry{cred: cred, expires: now.Add(v.cacheTTL)}
	entry.mu.RLock()
	defer entry.mu.RUnlock()
	var stale []*cacheEntry
	v.mu.Lock()
	switch {
	case v.closed:
		v.mu.Unlock()
		return ErrClosed
	case v.gen[name] != gen:
		// The credential changed while we read it: use this copy once and
		// do not cache it.
		defer func() { go entry.wipe() }()
	default:
		if old := v.cache[name]; old != nil {
			stale = append(stale, old)
		}
		v.cache[name] = entry
		for n, o := range v.cache {
			if !now.Before(o.expires) {
				delete(v.cache, n)
				stale = append(stale, o)
			}
		}
	}
	v.mu.Unlock()
	for _, o := range stale {
		go o.wipe() // waits for callbacks still using it
	}
	return fn(cred)
}

func (v *Vault) markUsed(name string, now time.Time) {
	v.usedMu.Lock()
	v.used[name] = now
	v.usedMu.Unlock()
}

func (v *Vault) withVersion(ctx context.Context, name string, version int, fn func(*Credential) error) error {
	rec, err := v.store.Version(ctx, name, version)
	if errors.Is(err, store.ErrNotFound) {
		return &IntegrityError{Record: fmt.Sprintf("credential %q version %d (missing)", name, version)}
	}
	if err != nil {
		return fmt.Errorf("vault: read %s v%d: %w", name, version, err)
	}
	c, err := v.openVersion(rec, version)
	if err != nil {
		return err
	}
	defer c.wipe()
	return fn(c)
}

func (v *Vault) openVersion(rec VersionRecord, version int) (*Credential, error) {
	name := rec.Name
	if rec.Version != version {
		return nil, &IntegrityError{Record: fmt.Sprintf("credential %q version %d", name, version)}
	}
	v.mu.RLock()
	kek, ok := v.keks[rec.KEKVersion]
	v.mu.RUnlock()
	if !ok {
		return nil, &IntegrityError{Record: fmt.Sprintf("credential %q version %d (unknown key version %d)", name, version, rec.KEKVersion)}
	}
	dek, err := open(kek, rec.WrappedDEK, adDEK(name, version, rec.KEKVersion))
	if err != nil {
		return nil, &IntegrityError{Record: fmt.Sprintf("credential %q version %d data key", name, version)}
	}
	defer secret.Wipe(dek)
	c := &Credential{Name: name, Version: version, fields: make(map[string]secret.Value, len(rec.Fields))}
	for f, ct := range rec.Fields {
		pt, err := open(dek, ct, adField(name, f, version))
		if err != nil {
			c.wipe()
			return nil, &IntegrityError{Record: fmt.Sprintf("credential %q version %d field %q", name, version, f)}
		}
		c.fields[f] = secret.New(pt)
	}
	if len(c.fields) == 0 {
		return nil, &IntegrityError{Record: fmt.Sprintf("credential %q version %d (no fields)", name, version)}
	}
	if v.observe != nil {
		for _, f := range c.fields {
			v.observe(f)
		}
	}
	return c, nil
}

func (e *cacheEntry) wipe() {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.wiped {
		e.cred.wipe()
		e.wiped = true
	}
}

func (v *Vault) evict(name string) {
	v.mu.Lock()
	e := v.cache[name]
	delete(v.cache, name)
	v.gen[name]++
	v.mu.Unlock()
	if e != nil {
		go e.wipe() // waits for callbacks still using it
	}
}

// Refresh reloads the keyring from the store and drops every cached
// credential, so that what another process sharing the store changed
// (a new version, a revocation, a rekey's new KEK) is read on next use.
// Replicas call it when the vault's change version moves. Callbacks still
// running keep the credential they hold until they return.
func (v *Vault) Refresh(ctx context.Context) error {
	if err := v.checkOpen(); err != nil {
		return err
	}
	if err := v.loadKeyring(ctx); err != nil {
		return err
	}
	v.mu.Lock()
	old := v.cache
	v.cache = map[string]*cacheEntry{}
	for name := range old {
		v.gen[name]++
	}
	v.mu.Unlock()
	for _, e := range old {
		go e.wipe() // waits for callbacks still using it
	}
	return nil
}

// FlushUsage writes last-use times recorded in memory to the store.
func (v *Vault) FlushUsage(ctx context.Context) error {
	v.usedMu.Lock()
	if len(v.used) == 0 {
		v.usedMu.Unlock()
		return nil
	}
	used := v.used
	v.used = map[string]time.Time{}
	v.usedMu.Unlock()
	if err := v.store.TouchUsed(ctx, used); err != nil {
		return fmt.Errorf("vault: record usage: %w", err)
	}
	return nil
}

// RekeyResult reports what Rekey did.
type RekeyResult struct {
	OldKEKVersion int `json:"old_kek_version"`
	NewKEKVersion int `json:"new_kek_version"`
	DataKeys      int `json:"data_keys"`
	SystemKeys    int `json:"system_keys"`
}

// Rekey generates a new KEK, rewraps every data key and system key under
// it, and makes it active. Reads continue during the call.
func (v *Vault) Rekey(ctx context.Context) (RekeyResult, error) {
	v.writeMu.Lock()
	defer v.writeMu.Unlock()
	if err := v.checkOpen(); err != nil {
		return RekeyResult{}, err
	}
	deks, err := v.store.WrappedKeys(ctx)
	if err != nil {
		return RekeyResult{}, fmt.Errorf("vault: rekey: %w", err)
	}
	v.mu.RLock()
	oldVersion := v.activeKEK
	newVersion := 0
	for ver := range v.keks {
		newVersion = max(newVersion, ver)
	}
	newVersion++
	keks := maps.Clone(v.keks)
	sysKeys := maps.Clone(v.sys)
	root := v.rootKey
	v.mu.RUnlock()

	kek, err := newKey()
	if err != nil {
		return RekeyResult{}, err
	}
	wrappedKEK, err := seal(root, kek, adKEK(newVersion))
	if err != nil {
		return RekeyResult{}, fmt.Errorf("vault: rekey: %w", err)
	}
	var re []Rewrapped
	for _, d := range deks {
		old, ok := keks[d.KEKVersion]
		if !ok {
			return RekeyResult{}, &IntegrityError{Record: fmt.Sprintf("credential %q version %d (unknown key version %d)", d.Name, d.Version, d.KEKVersion)}
		}
		dek, err := open(old, d.WrappedDEK, adDEK(d.Name, d.Version, d.KEKVersion))
		if err != nil {
			return RekeyResult{}, &IntegrityError{Record: fmt.Sprintf("credential %q version %d data key", d.Name, d.Version)}
		}
		w, err := seal(kek, dek, adDEK(d.Name, d.Version, newVersion))
		secret.Wipe(dek)
		if err != nil {
			return RekeyResult{}, fmt.Errorf("vault: rekey: %w", err)
		}
		re = append(re, Rewrapped{Name: d.Name, Version: d.Version, OldKEKVersion: d.KEKVersion, NewKEKVersion: newVersion, WrappedDEK: w})
	}
	names := slices.Sorted(maps.Keys(sysKeys))
	var sys []SystemKeyRecord
	for _, n := range names {
		w, err := seal(kek, sysKeys[n], adSystem(n, newVersion))
		if err != nil {
			return RekeyResult{}, fmt.Errorf("vault: rekey: %w", err)
		}
		sys = append(sys, SystemKeyRecord{Name: n, KEKVersion: newVersion, Wrapped: w})
	}
	rec := KEKRecord{Version: newVersion, Wrapped: wrappedKEK, CreatedAt: v.now().UTC().Truncate(time.Second), Active: true}
	// Readers must know the new KEK from the moment the store holds data
	// keys wrapped under it: add it first (not yet active), take it out
	// again if the store refuses the rekey.
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		secret.Wipe(kek)
		return RekeyResult{}, ErrClosed
	}
	v.keks[newVersion] = kek
	v.mu.Unlock()
	if err := v.store.Rekey(ctx, rec, re, sys); err != nil {
		v.mu.Lock()
		if !v.closed {
			delete(v.keks, newVersion)
			secret.Wipe(kek)
		}
		v.mu.Unlock()
		return RekeyResult{}, fmt.Errorf("vault: rekey: %w", err)
	}
	v.mu.Lock()
	v.activeKEK = newVersion
	v.mu.Unlock()
	v.log.Info("vault: rekeyed", "old_kek", oldVersion, "new_kek", newVersion, "data_keys", len(re))
	return RekeyResult{OldKEKVersion: oldVersion, NewKEKVersion: newVersion, DataKeys: len(re), SystemKeys: len(sys)}, nil
}

// ValueFingerprint is the keyed fingerprint of one stored value (every
// field of every kept version) or of a value revoked as compromised. It
// reveals the value's length, never its bytes.
type ValueFingerprint struct {
	Fingerprint []byte `json:"-"`
	Credential  string `json:"credential"`
	Field       string `json:"field"`
	Version     int    `json:"version,omitempty"`
	Len         int    `json:"len,omitempty"` // 0 for compromised values (length not kept)
	Compromised bool   `json:"compromised,omitempty"`
}

// CompromisedLister is implemented by stores that can list every
// compromised fingerprint (the SQLite store does).
type CompromisedLister interface {
	CompromisedAll(ctx context.Context) ([]Fingerprint, error)
}

// Fingerprints returns the keyed fingerprints of every value the vault
// holds (all kept versions) and of every value revoked as compromised, so
// that a leak scanner can recognise exact values (fingerprint candidates
// with Fingerprint and compare) without handling the values themselves.
func (v *Vault) Fingerprints(ctx context.Context) ([]ValueFingerprint, error) {
	cs, err := v.store.Credentials(ctx)
	if err != nil {
		return nil, fmt.Errorf("vault: list: %w", err)
	}
	var out []ValueFingerprint
	for _, c := range cs {
		if err := v.checkMAC(c); err != nil {
			return nil, err
		}
		for _, ver := range c.Versions {
			err := v.withVersion(ctx, c.Name, ver, func(cr *Credential) error {
				for f, val := range cr.fields {
					out = append(out, ValueFingerprint{Fingerprint: v.Fingerprint(val.Reveal()), Credential: c.Name, Field: f, Version: ver, Len: val.Len()})
				}
				return nil
			})
			if err != nil {
				return nil, err
			}
		}
	}
	if cl, ok := v.store.(CompromisedLister); ok {
		fps, err := cl.CompromisedAll(ctx)
		if err != nil {
			return nil, fmt.Errorf("vault: compromised: %w", err)
		}
		for _, f := range fps {
			out = append(out, ValueFingerprint{Fingerprint: f.Value, Credential: f.Name, Field: f.Field, Compromised: true})
		}
	}
	return out, nil
}
