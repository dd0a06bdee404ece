package storetest

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/store"
	"github.com/keystile/keystile/internal/vault"
)

// Vault runs the vault.Store contract on stores from open, each on a
// fresh database.
func Vault(t *testing.T, open func(t *testing.T) vault.Store) {
	ctx := context.Background()
	// The vault keeps times in seconds.
	t0 := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	kek1 := vault.KEKRecord{Version: 1, Wrapped: []byte("kek-1-sealed"), CreatedAt: t0, Active: true}
	sys1 := []vault.SystemKeyRecord{
		{Name: "fingerprint", KEKVersion: 1, Wrapped: []byte("fp-sealed")},
		{Name: "mac", KEKVersion: 1, Wrapped: []byte("mac-sealed")},
	}
	initVault := func(t *testing.T, s vault.Store) {
		t.Helper()
		if err := s.Init(ctx, map[string][]byte{"salt": []byte("s4lt"), "params": []byte("argon2id")}, kek1, sys1); err != nil {
			t.Fatalf("Init: %v", err)
		}
	}
	cred := func(name string, v int) (vault.CredentialRecord, vault.VersionRecord) {
		c := vault.CredentialRecord{Name: name, CurrentVersion: v, State: "active", RotationDays: 30,
			CreatedAt: t0, RotatedAt: t0.Add(time.Duration(v) * time.Hour), MAC: []byte("mac-" + name)}
		ver := vault.VersionRecord{Name: name, Version: v, KEKVersion: 1, WrappedDEK: []byte(strconv.Itoa(v) + "-dek"),
			CreatedAt: t0.Add(time.Duration(v) * time.Hour),
			Fields:    map[string][]byte{"secret": []byte(strconv.Itoa(v) + "-s"), "key": []byte(strconv.Itoa(v) + "-k")}}
		return c, ver
	}

	t.Run("init", func(t *testing.T) {
		s := open(t)
		if _, err := s.Meta(ctx, "salt"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Meta before Init: %v, want ErrNotFound", err)
		}
		if keks, sys, err := s.Keyring(ctx); err != nil || len(keks) != 0 || len(sys) != 0 {
			t.Fatalf("Keyring before Init: %v %v %v", keks, sys, err)
		}
		initVault(t, s)
		if v, err := s.Meta(ctx, "salt"); err != nil || string(v) != "s4lt" {
			t.Fatalf("Meta = %q, %v", v, err)
		}
		keks, sys, err := s.Keyring(ctx)
		if err != nil || !reflect.DeepEqual(keks, []vault.KEKRecord{kek1}) || !reflect.DeepEqual(sys, sys1) {
			t.Fatalf("Keyring =\n%+v\n%+v\n%v", keks, sys, err)
		}
		err = s.Init(ctx, map[string][]byte{"other": []byte("x")}, vault.KEKRecord{Version: 2, Wrapped: []byte("k2"), CreatedAt: t0}, nil)
		if !errors.Is(err, store.ErrExists) {
			t.Fatalf("second Init: %v, want ErrExists", err)
		}
		if _, err := s.Meta(ctx, "other"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a refused Init wrote meta: %v", err)
		}
	})

	t.Run("versions", func(t *testing.T) {
		s := open(t)
		initVault(t, s)
		if _, err := s.Credential(ctx, "binance"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Credential(missing): %v", err)
		}
		for v := 1; v <= 3; v++ {
			c, ver := cred("binance", v)
			if err := s.PutVersion(ctx, c, ver, 2); err != nil {
				t.Fatalf("PutVersion v%d: %v", v, err)
			}
		}
		c, ver := cred("alpaca", 1)
		if err := s.PutVersion(ctx, c, ver, 0); err != nil {
			t.Fatal(err)
		}
		got, err := s.Credential(ctx, "binance")
		want, _ := cred("binance", 3)
		want.Versions, want.Fields = []int{2, 3}, []string{"key", "secret"}
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("Credential =\n%+v, %v\nwant\n%+v", got, err, want)
		}
		_, want3 := cred("binance", 3)
		if v, err := s.Version(ctx, "binance", 3); err != nil || !reflect.DeepEqual(v, want3) {
			t.Fatalf("Version 3 =\n%+v, %v\nwant\n%+v", v, err, want3)
		}
		if _, err := s.Version(ctx, "binance", 1); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Version 1 beyond keep: %v, want ErrNotFound", err)
		}
		list, err := s.Credentials(ctx)
		if err != nil || len(list) != 2 || list[0].Name != "alpaca" || list[1].Name != "binance" ||
			!slices.Equal(list[1].Versions, []int{2, 3}) || !slices.Equal(list[0].Fields, []string{"key", "secret"}) {
			t.Fatalf("Credentials = %+v, %v", list, err)
		}
		// A version number used twice is refused whole.
		c, ver = cred("binance", 3)
		ver.Fields = map[string][]byte{"other": []byte("x")}
		if err := s.PutVersion(ctx, c, ver, 0); err == nil {
			t.Fatal("PutVersion of an existing version succeeded")
		}
		if got, _ := s.Credential(ctx, "binance"); !slices.Equal(got.Fields, []string{"key", "secret"}) {
			t.Fatalf("a refused PutVersion left fields %v", got.Fields)
		}
		keys, err := s.WrappedKeys(ctx)
		if err != nil || len(keys) != 3 || keys[0].Name != "alpaca" || keys[1].Version != 2 || keys[2].Version != 3 ||
			!bytes.Equal(keys[2].WrappedDEK, want3.WrappedDEK) || keys[2].KEKVersion != 1 {
			t.Fatalf("WrappedKeys = %+v, %v", keys, err)
		}
	})

	t.Run("revoke and delete", func(t *testing.T) {
		s := open(t)
		initVault(t, s)
		for _, n := range []string{"a", "b"} {
			c, ver := cred(n, 1)
			if err := s.PutVersion(ctx, c, ver, 0); err != nil {
				t.Fatal(err)
			}
		}
		c, _ := cred("a", 1)
		c.State, c.RevokedAt, c.MAC = "revoked", t0.Add(48*time.Hour), []byte("mac-revoked")
		fps := []vault.Fingerprint{
			{Value: []byte("fp-a-key"), Name: "a", Field: "key", RevokedAt: c.RevokedAt},
			{Value: []byte("fp-a-secret"), Name: "a", Field: "secret", RevokedAt: c.RevokedAt},
		}
		if err := s.Revoke(ctx, c, fps); err != nil {
			t.Fatal(err)
		}
		got, err := s.Credential(ctx, "a")
		if err != nil || got.State != "revoked" || !got.RevokedAt.Equal(c.RevokedAt) || len(got.Versions) != 0 ||
			len(got.Fields) != 0 || !bytes.Equal(got.MAC, c.MAC) {
			t.Fatalf("after Revoke: %+v, %v", got, err)
		}
		if _, err := s.Version(ctx, "a", 1); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("a revoked version is still readable: %v", err)
		}
		// Recording a fingerprint twice is not an error.
		if err := s.Revoke(ctx, c, fps[:1]); err != nil {
			t.Fatalf("Revoke again: %v", err)
		}
		missing := c
		missing.Name = "nope"
		if err := s.Revoke(ctx, missing, []vault.Fingerprint{{Value: []byte("fp-nope"), Name: "nope", Field: "k", RevokedAt: t0}}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Revoke(missing): %v", err)
		}
		hit, err := s.Compromised(ctx, [][]byte{[]byte("fp-a-secret"), []byte("fp-unknown"), []byte("fp-nope")})
		if err != nil || len(hit) != 1 || !reflect.DeepEqual(hit[0], fps[1]) {
			t.Fatalf("Compromised = %+v, %v", hit, err)
		}
		if hit, err := s.Compromised(ctx, nil); err != nil || len(hit) != 0 {
			t.Fatalf("Compromised(none) = %+v, %v", hit, err)
		}
		if err := s.Delete(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Credential(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("deleted credential: %v", err)
		}
		if err := s.Delete(ctx, "a"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("Delete twice: %v", err)
		}
		if hit, _ := s.Compromised(ctx, [][]byte{[]byte("fp-a-key")}); len(hit) != 1 {
			t.Fatal("Delete dropped the fingerprints")
		}
		if err := s.Delete(ctx, "b"); err != nil {
			t.Fatal(err)
		}
		if keys, err := s.WrappedKeys(ctx); err != nil || len(keys) != 0 {
			t.Fatalf("Delete left versions: %+v %v", keys, err)
		}
	})

	t.Run("rekey", func(t *testing.T) {
		s := open(t)
		initVault(t, s)
		for v := 1; v <= 2; v++ {
			c, ver := cred("a", v)
			if err := s.PutVersion(ctx, c, ver, 0); err != nil {
				t.Fatal(err)
			}
		}
		kek2 := vault.KEKRecord{Version: 2, Wrapped: []byte("kek-2-sealed"), CreatedAt: t0.Add(time.Hour), Active: true}
		sys2 := []vault.SystemKeyRecord{{Name: "fingerprint", KEKVersion: 2, Wrapped: []byte("fp-2")}, {Name: "mac", KEKVersion: 2, Wrapped: []byte("mac-2")}}
		// A data key whose KEK is not the one read: the whole call fails.
		stale := []vault.Rewrapped{
			{Name: "a", Version: 1, OldKEKVersion: 1, NewKEKVersion: 2, WrappedDEK: []byte("new-1")},
			{Name: "a", Version: 2, OldKEKVersion: 7, NewKEKVersion: 2, WrappedDEK: []byte("new-2")},
		}
		if err := s.Rekey(ctx, kek2, stale, sys2); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Rekey with a stale data key: %v, want ErrConflict", err)
		}
		keks, sys, err := s.Keyring(ctx)
		if err != nil || !reflect.DeepEqual(keks, []vault.KEKRecord{kek1}) || !reflect.DeepEqual(sys, sys1) {
			t.Fatalf("a failed Rekey changed the keyring: %+v %+v %v", keks, sys, err)
		}
		if v, _ := s.Version(ctx, "a", 1); v.KEKVersion != 1 || string(v.WrappedDEK) != "1-dek" {
			t.Fatalf("a failed Rekey changed a data key: %+v", v)
		}
		// A data key missing (deleted since read) is a conflict too.
		gone := []vault.Rewrapped{{Name: "zz", Version: 1, OldKEKVersion: 1, NewKEKVersion: 2, WrappedDEK: []byte("x")}}
		if err := s.Rekey(ctx, kek2, gone, sys2); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("Rekey of a missing data key: %v, want ErrConflict", err)
		}
		stale[1].OldKEKVersion = 1
		if err := s.Rekey(ctx, kek2, stale, sys2); err != nil {
			t.Fatalf("Rekey: %v", err)
		}
		keks, sys, err = s.Keyring(ctx)
		old := kek1
		old.Active = false
		if err != nil || !reflect.DeepEqual(keks, []vault.KEKRecord{old, kek2}) || !reflect.DeepEqual(sys, sys2) {
			t.Fatalf("after Rekey: %+v %+v %v", keks, sys, err)
		}
		v, err := s.Version(ctx, "a", 2)
		if err != nil || v.KEKVersion != 2 || string(v.WrappedDEK) != "new-2" || len(v.Fields) != 2 {
			t.Fatalf("rewrapped version: %+v %v", v, err)
		}
	})

	t.Run("touch", func(t *testing.T) {
		s := open(t)
		initVault(t, s)
		c, ver := cred("a", 1)
		if err := s.PutVersion(ctx, c, ver, 0); err != nil {
			t.Fatal(err)
		}
		t1 := t0.Add(72 * time.Hour)
		if err := s.TouchUsed(ctx, map[string]time.Time{"a": t1, "unknown": t1}); err != nil {
			t.Fatal(err)
		}
		if err := s.TouchUsed(ctx, map[string]time.Time{"a": t0}); err != nil {
			t.Fatal(err)
		}
		if got, err := s.Credential(ctx, "a"); err != nil || !got.LastUsedAt.Equal(t1) {
			t.Fatalf("LastUsedAt = %v, %v; want %v (never lowered)", got.LastUsedAt, err, t1)
		}
		// PutVersion keeps the last-use time.
		c, ver = cred("a", 2)
		if err := s.PutVersion(ctx, c, ver, 0); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Credential(ctx, "a"); !got.LastUsedAt.Equal(t1) {
			t.Fatalf("PutVersion reset LastUsedAt to %v", got.LastUsedAt)
		}
	})
}
