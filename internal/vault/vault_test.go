package vault_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/vault"
)

const canary = "CANARY-vault-9c41e7d2b0"

type env struct {
	db   *sqlite.DB
	v    *vault.Vault
	root secret.Value
	dir  string
}

func rootKey(t testing.TB) secret.Value {
	b := make([]byte, vault.KeySize)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return secret.New(b)
}

func newEnv(t testing.TB, o vault.Options) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "keystile.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	root := rootKey(t)
	if err := vault.Initialize(ctx, db.Vault(), root, map[string][]byte{"master_key": []byte(`{"source":"file"}`)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	o.Store, o.RootKey = db.Vault(), root
	v, err := vault.Open(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close(ctx) })
	return &env{db: db, v: v, root: root, dir: dir}
}

func fields(kv ...string) map[string]secret.Value {
	m := map[string]secret.Value{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = secret.FromString(kv[i+1])
	}
	return m
}

func field(t *testing.T, v *vault.Vault, name, f string) (string, error) {
	t.Helper()
	var out string
	err := v.WithCredential(context.Background(), name, func(c *vault.Credential) error {
		val, err := c.Field(f)
		if err != nil {
			return err
		}
		out = string(val.Reveal())
		return nil
	})
	return out, err
}

func TestSetAndUse(t *testing.T) {
	e := newEnv(t, vault.Options{})
	ctx := context.Background()
	info, err := e.v.Set(ctx, "binance-main", fields("api_key", "AK1", "secret", canary), vault.SetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if info.CurrentVersion != 1 || info.State != vault.StateActive || len(info.Fields) != 2 || info.RotationDays != 90 {
		t.Fatalf("info = %+v", info)
	}
	got, err := field(t, e.v, "binance-main", "secret")
	if err != nil || got != canary {
		t.Fatalf("field = %q, %v", got, err)
	}
	if _, err := field(t, e.v, "binance-main", "nope"); !errors.Is(err, vault.ErrNoField) {
		t.Fatalf("missing field err = %v", err)
	}
	if _, err := field(t, e.v, "nope", "secret"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("missing credential err = %v", err)
	}
	// Rotation adds versions and keeps the newest five.
	for i := 2; i <= 7; i++ {
		info, err = e.v.Set(ctx, "binance-main", fields("api_key", "AK1", "secret", fmt.Sprintf("s%d-%s", i, canary)), vault.SetOptions{MustExist: true})
		if err != nil {
			t.Fatal(err)
		}
	}
	if info.CurrentVersion != 7 || fmt.Sprint(info.Versions) != "[3 4 5 6 7]" {
		t.Fatalf("after rotations: %+v", info)
	}
	got, _ = field(t, e.v, "binance-main", "secret")
	if got != "s7-"+canary {
		t.Fatalf("cache served a stale version: %q", got)
	}
	if _, err := e.v.Set(ctx, "new-one", fields("k", "value-12345"), vault.SetOptions{MustExist: true}); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("rotate of missing credential: %v", err)
	}
}

func TestInvalidInput(t *testing.T) {
	e := newEnv(t, vault.Options{})
	ctx := context.Background()
	tests := []struct {
		name   string
		cred   string
		fields map[string]secret.Value
	}{
		{"bad name", "Bad Name", fields("k", "v")},
		{"bad field", "ok", fields("Bad-Field", "v")},
		{"empty value", "ok", fields("k", "")},
		{"no fields", "ok", map[string]secret.Value{}},
		{"too large", "ok", map[string]secret.Value{"k": secret.New(make([]byte, vault.MaxFieldSize+1))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.v.Set(ctx, tt.cred, tt.fields, vault.SetOptions{}); err == nil {
				t.Fatal("Set accepted invalid input")
			}
		})
	}
}

// TestTampering edits the database the way an attacker with write access to
// it could, and checks that use fails with an integrity error: never wrong
// plaintext.
func TestTampering(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(t *testing.T, e *env)
	}{
		{"flip a ciphertext byte", func(t *testing.T, e *env) {
			flipBlob(t, e, `SELECT ciphertext FROM vault_fields WHERE name='alpha' AND version=2 AND field='secret'`,
				`UPDATE vault_fields SET ciphertext=? WHERE name='alpha' AND version=2 AND field='secret'`)
		}},
		{"flip a wrapped key byte", func(t *testing.T, e *env) {
			flipBlob(t, e, `SELECT wrapped_dek FROM vault_versions WHERE name='alpha' AND version=2`, `UPDATE vault_versions SET wrapped_dek=? WHERE name='alpha' AND version=2`)
		}},
		{"swap field ciphertexts between credentials", func(t *testing.T, e *env) {
			exec(t, e, `UPDATE vault_fields SET ciphertext = (SELECT ciphertext FROM vault_fields WHERE name='beta' AND field='secret') WHERE name='alpha' AND version=2 AND field='secret'`)
		}},
		{"swap field ciphertexts between fields", func(t *testing.T, e *env) {
			exec(t, e, `UPDATE vault_fields SET ciphertext = (SELECT ciphertext FROM vault_fields WHERE name='alpha' AND version=2 AND field='api_key') WHERE name='alpha' AND version=2 AND field='secret'`)
		}},
		{"swap wrapped data keys", func(t *testing.T, e *env) {
			exec(t, e, `UPDATE vault_versions SET wrapped_dek = (SELECT wrapped_dek FROM vault_versions WHERE name='beta') WHERE name='alpha' AND version=2`)
		}},
		{"change a version number", func(t *testing.T, e *env) {
			exec(t, e, `PRAGMA foreign_keys=OFF`)
			exec(t, e, `UPDATE vault_versions SET version=5 WHERE name='alpha' AND version=2`)
			exec(t, e, `UPDATE vault_fields SET version=5 WHERE name='alpha' AND version=2`)
			exec(t, e, `UPDATE vault_credentials SET current_version=5 WHERE name='alpha'`)
		}},
		{"roll current version back", func(t *testing.T, e *env) {
			exec(t, e, `UPDATE vault_credentials SET current_version=1 WHERE name='alpha'`)
		}},
		{"revive a revoked credential", func(t *testing.T, e *env) {
			if err := e.v.Revoke(context.Background(), "beta", false); err != nil {
				t.Fatal(err)
			}
			exec(t, e, `UPDATE vault_credentials SET state='active' WHERE name='beta'`)
		}},
		{"relabel kek version", func(t *testing.T, e *env) {
			exec(t, e, `PRAGMA foreign_keys=OFF`)
			exec(t, e, `UPDATE vault_versions SET kek_version=2 WHERE name='alpha' AND version=2`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, vault.Options{CacheTTL: -1})
			ctx := context.Background()
			for _, n := range []string{"alpha", "beta"} {
				if _, err := e.v.Set(ctx, n, fields("api_key", "key-of-"+n, "secret", canary+n), vault.SetOptions{}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := e.v.Set(ctx, "alpha", fields("api_key", "key-of-alpha", "secret", canary+"alpha2"), vault.SetOptions{}); err != nil {
				t.Fatal(err)
			}
			tt.tamper(t, e)
			name := "alpha"
			if tt.name == "revive a revoked credential" {
				name = "beta"
			}
			err := e.v.WithCredential(ctx, name, func(c *vault.Credential) error {
				s, _ := c.Field("secret")
				return fmt.Errorf("opened tampered record: %q", s.Reveal())
			})
			if !errors.Is(err, vault.ErrIntegrity) {
				t.Fatalf("err = %v, want ErrIntegrity", err)
			}
			if bytes.Contains([]byte(err.Error()), []byte(canary)) {
				t.Fatalf("error leaks the value: %v", err)
			}
		})
	}
}

func exec(t *testing.T, e *env, q string, args ...any) {
	t.Helper()
	conn, err := e.db.SQL().Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(context.Background(), q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func flipBlob(t *testing.T, e *env, sel, upd string) {
	t.Helper()
	var b []byte
	if err := e.db.SQL().QueryRow(sel).Scan(&b); err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0x01
	exec(t, e, upd, b)
}

func TestCompromised(t *testing.T) {
	e := newEnv(t, vault.Options{})
	ctx := context.Background()
	if _, err := e.v.Set(ctx, "dmarket", fields("public_key", "pub-123456", "secret_key", canary), vault.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.v.Revoke(ctx, "dmarket", true); err != nil {
		t.Fatal(err)
	}
	if _, err := field(t, e.v, "dmarket", "secret_key"); !errors.Is(err, vault.ErrRevoked) {
		t.Fatalf("use after revoke: %v", err)
	}
	// The same value, under any name and field, is refused.
	_, err := e.v.Set(ctx, "other", fields("whatever", canary), vault.SetOptions{})
	if !errors.Is(err, vault.ErrCompromised) {
		t.Fatalf("Set of compromised value: %v", err)
	}
	if bytes.Contains([]byte(err.Error()), []byte(canary)) {
		t.Fatalf("error leaks the value: %v", err)
	}
	// Every field of the revoked credential was fingerprinted, so a fresh
	// key pair for the same credential is fine, the old public key is not.
	if _, err := e.v.Set(ctx, "dmarket", fields("public_key", "pub-123456", "secret_key", "fresh-"+canary), vault.SetOptions{}); !errors.Is(err, vault.ErrCompromised) {
		t.Fatalf("Set of old public key: %v", err)
	}
	if _, err := e.v.Set(ctx, "dmarket", fields("public_key", "pub-654321", "secret_key", "fresh-"+canary), vault.SetOptions{}); err != nil {
		t.Fatalf("Set of fresh value: %v", err)
	}
	// Plain revoke keeps no fingerprint.
	if err := e.v.Revoke(ctx, "dmarket", false); err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.Set(ctx, "again", fields("k", "fresh-"+canary), vault.SetOptions{}); err != nil {
		t.Fatalf("plain revoke should not block the value: %v", err)
	}
	if err := e.v.Delete(ctx, "again"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.Show(ctx, "again"); !errors.Is(err, vault.ErrNotFound) {
		t.Fatalf("show after delete: %v", err)
	}
}

func TestWrongRootKey(t *testing.T) {
	e := newEnv(t, vault.Options{})
	_, err := vault.Open(context.Background(), vault.Options{Store: e.db.Vault(), RootKey: rootKey(t)})
	if !errors.Is(err, vault.ErrWrongMasterKey) {
		t.Fatalf("err = %v", err)
	}
	if err := vault.Initialize(context.Background(), e.db.Vault(), rootKey(t), nil, time.Now()); err == nil {
		t.Fatal("second Initialize succeeded")
	}
}

func TestRekeyOnline(t *testing.T) {
	e := newEnv(t, vault.Options{CacheTTL: -1})
	ctx := context.Background()
	for i := range 20 {
		if _, err := e.v.Set(ctx, fmt.Sprintf("cred-%02d", i), fields("secret", fmt.Sprintf("%s-%d", canary, i)), vault.SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Readers keep working while rekey runs.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for r := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := (i + r) % 20
				got, err := fieldCtx(e.v, fmt.Sprintf("cred-%02d", n))
				if err != nil || got != fmt.Sprintf("%s-%d", canary, n) {
					errs <- fmt.Errorf("read during rekey: %q %v", got, err)
					return
				}
			}
		}()
	}
	res, err := e.v.Rekey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res2, err := e.v.Rekey(ctx)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if res.OldKEKVersion != 1 || res.NewKEKVersion != 2 || res.DataKeys != 20 || res2.NewKEKVersion != 3 {
		t.Fatalf("rekey results: %+v %+v", res, res2)
	}
	var n int
	if err := e.db.SQL().QueryRow(`SELECT COUNT(*) FROM vault_versions WHERE kek_version <> 3`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("%d data keys still under an old KEK (%v)", n, err)
	}
	// A fresh process with the same root key opens everything.
	v2, err := vault.Open(ctx, vault.Options{Store: e.db.Vault(), RootKey: e.root})
	if err != nil {
		t.Fatal(err)
	}
	defer v2.Close(ctx)
	if got, err := fieldCtx(v2, "cred-07"); err != nil || got != canary+"-7" {
		t.Fatalf("after reopen: %q %v", got, err)
	}
	if _, err := v2.Set(ctx, "cred-new", fields("secret", "after-rekey-value"), vault.SetOptions{}); err != nil {
		t.Fatal(err)
	}
}

func fieldCtx(v *vault.Vault, name string) (string, error) {
	var out string
	err := v.WithCredential(context.Background(), name, func(c *vault.Credential) error {
		s, err := c.Field("secret")
		out = string(s.Reveal())
		return err
	})
	return out, err
}

// TestNoPlaintextOnDisk stores canaries and greps every file of the
// database (main, WAL, shared memory) for them and their encodings.
func TestNoPlaintextOnDisk(t *testing.T) {
	e := newEnv(t, vault.Options{})
	ctx := context.Background()
	for i := range 10 {
		if _, err := e.v.Set(ctx, "c", fields("secret", canary, "api_key", fmt.Sprintf("%s-k%d", canary, i)), vault.SetOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := fieldCtx(e.v, "c"); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.v.Revoke(ctx, "c", true); err != nil {
		t.Fatal(err)
	}
	_ = e.v.FlushUsage(ctx)
	needles := [][]byte{[]byte(canary), []byte(hex.EncodeToString([]byte(canary))), []byte(base64.StdEncoding.EncodeToString([]byte(canary))), e.root.Reveal()}
	files, _ := filepath.Glob(filepath.Join(e.dir, "*"))
	if len(files) == 0 {
		t.Fatal("no files")
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s contains a secret (%d bytes needle)", filepath.Base(f), len(n))
			}
		}
	}
}

func TestShowListNeverValues(t *testing.T) {
	e := newEnv(t, vault.Options{})
	ctx := context.Background()
	if _, err := e.v.Set(ctx, "x", fields("secret", canary), vault.SetOptions{RotationDays: 30}); err != nil {
		t.Fatal(err)
	}
	_, _ = fieldCtx(e.v, "x")
	infos, err := e.v.List(ctx)
	if err != nil || len(infos) != 1 {
		t.Fatal(infos, err)
	}
	if infos[0].RotationDays != 30 || infos[0].LastUsedAt.IsZero() {
		t.Fatalf("info = %+v", infos[0])
	}
	if s := fmt.Sprintf("%+v %#v", infos, infos); bytes.Contains([]byte(s), []byte(canary)) {
		t.Fatal("metadata contains the value")
	}
	if err := e.v.FlushUsage(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestCredentialDoesNotPrint(t *testing.T) {
	e := newEnv(t, vault.Options{})
	ctx := context.Background()
	if _, err := e.v.Set(ctx, "x", fields("secret", canary), vault.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	_ = e.v.WithCredential(ctx, "x", func(c *vault.Credential) error {
		for _, s := range []string{fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprint(c.Fields())} {
			if bytes.Contains([]byte(s), []byte(canary)) {
				t.Errorf("credential printed its value: %s", s)
			}
		}
		return nil
	})
}

func BenchmarkSealOpen(b *testing.B) {
	e := newEnv(b, vault.Options{CacheTTL: -1})
	ctx := context.Background()
	b.Run("Set", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			if _, err := e.v.Set(ctx, fmt.Sprintf("c%d", i%50), fields("api_key", "k-123456789", "secret", "s-1234567890abcdef"), vault.SetOptions{}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("WithCredentialUncached", func(b *testing.B) {
		for b.Loop() {
			if err := e.v.WithCredential(ctx, "c1", func(*vault.Credential) error { return nil }); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkWithCredentialCached(b *testing.B) {
	e := newEnv(b, vault.Options{})
	ctx := context.Background()
	if _, err := e.v.Set(ctx, "c", fields("api_key", "k-123456789", "secret", "s-1234567890abcdef"), vault.SetOptions{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := e.v.WithCredential(ctx, "c", func(c *vault.Credential) error {
				_, err := c.Field("secret")
				return err
			}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func TestFingerprints(t *testing.T) {
	e := newEnv(t, vault.Options{})
	ctx := context.Background()
	if _, err := e.v.Set(ctx, "a", fields("secret", canary, "api_key", "public-1234"), vault.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.Set(ctx, "b", fields("secret", canary+"-b"), vault.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := e.v.Revoke(ctx, "b", true); err != nil {
		t.Fatal(err)
	}
	fps, err := e.v.Fingerprints(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, f := range fps {
		want[string(f.Fingerprint)] = true
		if fmt.Sprintf("%+v", f) != "" && bytes.Contains([]byte(fmt.Sprint(f)), []byte(canary)) {
			t.Fatal("fingerprint record prints the value")
		}
	}
	for _, v := range []string{canary, "public-1234", canary + "-b"} {
		if !want[string(e.v.Fingerprint([]byte(v)))] {
			t.Errorf("value %d bytes not fingerprinted", len(v))
		}
	}
	if want[string(e.v.Fingerprint([]byte("not-stored")))] {
		t.Error("unrelated value matches")
	}
}

func TestDeriveKey(t *testing.T) {
	ctx := context.Background()
	v := newEnv(t, vault.Options{}).v
	a, err := v.DeriveKey("audit.checkpoint.v1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := v.DeriveKey("audit.checkpoint.v1")
	c, _ := v.DeriveKey("audit.identity.v1")
	if a.Len() != 32 || !bytes.Equal(a.Reveal(), b.Reveal()) || bytes.Equal(a.Reveal(), c.Reveal()) {
		t.Fatalf("derived keys: len %d, stable %v, independent %v", a.Len(), bytes.Equal(a.Reveal(), b.Reveal()), !bytes.Equal(a.Reveal(), c.Reveal()))
	}
	if _, err := v.Rekey(ctx); err != nil {
		t.Fatal(err)
	}
	d, _ := v.DeriveKey("audit.checkpoint.v1")
	if !bytes.Equal(a.Reveal(), d.Reveal()) {
		t.Fatal("rekey changed a derived key")
	}
	if _, err := v.DeriveKey(""); err == nil {
		t.Fatal("empty purpose accepted")
	}
}

// rekeyWindow is the real SQLite store; right after its Rekey commits
// (before Vault.Rekey returns) it runs a read, as a concurrent reader
// could, and can refuse the rekey.
type rekeyWindow struct {
	vault.Store
	after  func() error
	refuse bool
}

func (s *rekeyWindow) Rekey(ctx context.Context, k vault.KEKRecord, deks []vault.Rewrapped, sys []vault.SystemKeyRecord) error {
	if s.refuse {
		return errors.New("disk full")
	}
	if err := s.Store.Rekey(ctx, k, deks, sys); err != nil {
		return err
	}
	return s.after()
}

// TestRekeyReadInCommitWindow: a read of a data key the store already
// holds under the new KEK, before Rekey has returned, opens it (it once
// failed as "unknown key version"); a refused rekey leaves the old KEK
// active and every credential readable.
func TestRekeyReadInCommitWindow(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keystile.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	root := rootKey(t)
	if err := vault.Initialize(ctx, db.Vault(), root, nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	st := &rekeyWindow{Store: db.Vault()}
	v, err := vault.Open(ctx, vault.Options{Store: st, RootKey: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close(ctx) })
	for i := range 3 {
		if _, err := v.Set(ctx, fmt.Sprintf("cred-%d", i), fields("secret", fmt.Sprintf("%s-%d", canary, i)), vault.SetOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	st.refuse = true
	if _, err := v.Rekey(ctx); err == nil {
		t.Fatal("a refused rekey succeeded")
	}
	st.refuse = false
	if got, err := fieldCtx(v, "cred-0"); err != nil || got != canary+"-0" {
		t.Fatalf("read after a refused rekey: %q %v", got, err)
	}
	n := 1
	st.after = func() error {
		for ; n < 3; n++ { // not read yet: opened from the store
			if got, err := fieldCtx(v, fmt.Sprintf("cred-%d", n)); err != nil || got != fmt.Sprintf("%s-%d", canary, n) {
				return fmt.Errorf("read in the commit window: %q %v", got, err)
			}
		}
		return nil
	}
	res, err := v.Rekey(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.NewKEKVersion != 2 {
		t.Fatalf("rekey result %+v (a refused rekey must not use up a version)", res)
	}
}

// TestCredentialDerived: a derived value is computed once per opened
// credential version, also by concurrent callers, and a new version gets
// a fresh one; it is wiped with the credential.
func TestCredentialDerived(t *testing.T) {
	e := newEnv(t, vault.Options{})
	ctx := context.Background()
	if _, err := e.v.Set(ctx, "dm", fields("secret_key", canary), vault.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	var calls sync.Map // version -> count
	derive := func(t *testing.T) (string, []byte) {
		t.Helper()
		var out string
		var kept []byte
		err := e.v.WithCredential(ctx, "dm", func(c *vault.Credential) error {
			f, _ := c.Field("secret_key")
			d, err := c.Derived("upper", func() (secret.Value, error) {
				n, _ := calls.LoadOrStore(c.Version, new(int))
				*n.(*int)++
				return secret.New(bytes.ToUpper(f.Reveal())), nil
			})
			out, kept = string(d.Reveal()), d.Reveal()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return out, kept
	}
	if got, _ := derive(t); got != "CANARY-VAULT-9C41E7D2B0" {
		t.Fatalf("derived %q", got)
	}
	// The opened credential is cached now: concurrent users share it.
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			if got, _ := derive(t); got != "CANARY-VAULT-9C41E7D2B0" {
				t.Errorf("derived %q", got)
			}
		})
	}
	wg.Wait()
	if n, _ := calls.Load(1); *n.(*int) != 1 {
		t.Fatalf("derived %d times for one version, want once", *n.(*int))
	}
	if _, err := e.v.Set(ctx, "dm", fields("secret_key", "v2-"+canary), vault.SetOptions{MustExist: true}); err != nil {
		t.Fatal(err)
	}
	got, kept := derive(t)
	if got != "V2-CANARY-VAULT-9C41E7D2B0" {
		t.Fatalf("after rotation derived %q", got)
	}
	if n, _ := calls.Load(2); *n.(*int) != 1 {
		t.Fatalf("version 2 derived %d times", *n.(*int))
	}
	// Closing the vault wipes the cached credential, its derived value
	// with it.
	if err := e.v.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(kept, make([]byte, len(kept))) {
		t.Fatal("the derived value survived the credential")
	}
}

// TestRefreshSeesAnotherProcess: two vaults on one store stand for two
// replicas. The second serves its cached credential until Refresh, which
// makes it read the first's new version, see a revocation, and open data
// keys wrapped under a KEK the first made by rekeying.
func TestRefreshSeesAnotherProcess(t *testing.T) {
	e := newEnv(t, vault.Options{})
	ctx := context.Background()
	b, err := vault.Open(ctx, vault.Options{Store: e.db.Vault(), RootKey: e.root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(ctx) })
	if _, err := e.v.Set(ctx, "kraken-main", fields("secret", "v1-"+canary), vault.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, err := field(t, b, "kraken-main", "secret"); err != nil || got != "v1-"+canary {
		t.Fatalf("replica b: %q, %v", got, err)
	}
	if _, err := e.v.Set(ctx, "kraken-main", fields("secret", "v2-"+canary), vault.SetOptions{MustExist: true}); err != nil {
		t.Fatal(err)
	}
	if got, _ := field(t, b, "kraken-main", "secret"); got != "v1-"+canary {
		t.Fatalf("replica b before Refresh: %q (want its cached v1: the test would not show Refresh's effect)", got)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := field(t, b, "kraken-main", "secret"); err != nil || got != "v2-"+canary {
		t.Fatalf("replica b after Refresh: %q, %v", got, err)
	}
	// A rekey on a: b's keyring lacks the new KEK until Refresh.
	if _, err := e.v.Rekey(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.v.Set(ctx, "kraken-main", fields("secret", "v3-"+canary), vault.SetOptions{MustExist: true}); err != nil {
		t.Fatal(err)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if got, err := field(t, b, "kraken-main", "secret"); err != nil || got != "v3-"+canary {
		t.Fatalf("replica b after a rekey and Refresh: %q, %v", got, err)
	}
	if err := e.v.Revoke(ctx, "kraken-main", true); err != nil {
		t.Fatal(err)
	}
	if err := b.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := field(t, b, "kraken-main", "secret"); err == nil {
		t.Fatal("replica b used a credential revoked on a after Refresh")
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.Refresh(ctx); err == nil {
		t.Fatal("Refresh of a closed vault succeeded")
	}
}
