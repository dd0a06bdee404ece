package masterkey

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var cheapKDF = &KDFParams{Time: 1, MemoryKiB: 64, Threads: 1}

type memKeyring struct {
	m    map[string]string
	fail bool
}

func (k *memKeyring) Get(s, u string) (string, error) {
	if k.fail {
		return "", ErrKeyringUnavailable
	}
	v, ok := k.m[s+"/"+u]
	if !ok {
		return "", ErrKeyringMissing
	}
	return v, nil
}

func (k *memKeyring) Set(s, u, v string) error {
	if k.fail {
		return ErrKeyringUnavailable
	}
	k.m[s+"/"+u] = v
	return nil
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func prompts(answers ...string) func(string) ([]byte, error) {
	i := 0
	return func(string) ([]byte, error) {
		if i >= len(answers) {
			return nil, errors.New("no more answers")
		}
		i++
		return []byte(answers[i-1]), nil
	}
}

func TestFileSource(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub", "master.key")
	k, p, err := Create(ctx, Options{Source: SourceFile, KeyFile: path})
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode: %v %v", st.Mode(), err)
	}
	k2, err := Load(ctx, Options{}, p)
	if err != nil || !k.Equal(k2) || k.Len() != KeySize {
		t.Fatalf("load: %v", err)
	}
	if _, _, err := Create(ctx, Options{Source: SourceFile, KeyFile: path}); !errors.Is(err, ErrKeyFileExists) {
		t.Fatalf("second create: %v", err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(ctx, Options{}, p); !errors.Is(err, ErrKeyFileMode) {
		t.Fatalf("0644 key file: %v", err)
	}
	if _, err := Load(ctx, Options{KeyFile: path + ".missing"}, p); !errors.Is(err, ErrKeyFileMissing) {
		t.Fatalf("missing key file: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.key")
	if err := os.WriteFile(bad, []byte("not base64!"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(ctx, Options{KeyFile: bad}, p); !errors.Is(err, ErrBadKey) {
		t.Fatalf("bad key file: %v", err)
	}
}

func TestEnvSource(t *testing.T) {
	ctx := context.Background()
	key := base64.StdEncoding.EncodeToString([]byte(strings.Repeat("k", 32)))
	k, p, err := Create(ctx, Options{Source: SourceEnv, Getenv: env(map[string]string{EnvMasterKey: key})})
	if err != nil || string(k.Reveal()) != strings.Repeat("k", 32) || p.Source != SourceEnv {
		t.Fatalf("create: %v", err)
	}
	if _, err := Load(ctx, Options{Getenv: env(nil)}, p); !errors.Is(err, ErrEnvUnset) {
		t.Fatalf("unset: %v", err)
	}
	_, err = Load(ctx, Options{Getenv: env(map[string]string{EnvMasterKey: "c2hvcnQ="})}, p)
	if !errors.Is(err, ErrBadKey) {
		t.Fatalf("short key: %v", err)
	}
	if strings.Contains(err.Error(), "c2hvcnQ=") {
		t.Fatal("error echoes the key")
	}
}

func TestPassphraseSource(t *testing.T) {
	ctx := context.Background()
	const pass = "correct horse battery staple"
	k, p, err := Create(ctx, Options{Source: SourcePassphrase, Prompt: prompts(pass, pass), KDF: cheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	if p.KDF == nil || len(p.KDF.Salt) != 16 || p.KDF.Alg != "argon2id" {
		t.Fatalf("params: %+v", p.KDF)
	}
	k2, err := Load(ctx, Options{Prompt: prompts(pass)}, p)
	if err != nil || !k.Equal(k2) {
		t.Fatalf("same passphrase gives another key: %v", err)
	}
	k3, err := Load(ctx, Options{Prompt: prompts("wrong passphrase!!")}, p)
	if err != nil || k.Equal(k3) {
		t.Fatalf("wrong passphrase gives the same key: %v", err)
	}
	// From a file (systemd credential style), trailing newline ignored.
	f := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(f, []byte(pass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	k4, err := Load(ctx, Options{Getenv: env(map[string]string{EnvPassphraseFile: f})}, p)
	if err != nil || !k.Equal(k4) {
		t.Fatalf("passphrase file: %v", err)
	}
	tests := []struct {
		name string
		o    Options
		want error
	}{
		{"mismatch", Options{Source: SourcePassphrase, Prompt: prompts(pass, pass+"x"), KDF: cheapKDF}, ErrPassphraseMismatch},
		{"short", Options{Source: SourcePassphrase, Prompt: prompts("short", "short"), KDF: cheapKDF}, ErrPassphraseShort},
		{"no terminal", Options{Source: SourcePassphrase, Getenv: env(nil), KDF: cheapKDF}, ErrNoPassphrase},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := Create(ctx, tt.o); !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
	bad := p
	bad.KDF = &KDFParams{Alg: "argon2id"}
	if _, err := Load(ctx, Options{Prompt: prompts(pass)}, bad); err == nil {
		t.Fatal("accepted invalid stored parameters")
	}
}

func TestKeyringSource(t *testing.T) {
	ctx := context.Background()
	kr := &memKeyring{m: map[string]string{}}
	k, p, err := Create(ctx, Options{Source: SourceKeyring, Keyring: kr, KeyringUser: "u1"})
	if err != nil {
		t.Fatal(err)
	}
	k2, err := Load(ctx, Options{Keyring: kr}, p)
	if err != nil || !k.Equal(k2) {
		t.Fatalf("load: %v", err)
	}
	if _, _, err := Create(ctx, Options{Source: SourceKeyring, Keyring: kr, KeyringUser: "u1"}); err == nil {
		t.Fatal("overwrote an existing keyring entry")
	}
	if _, _, err := Create(ctx, Options{Source: SourceKeyring, Keyring: &memKeyring{fail: true}}); !errors.Is(err, ErrKeyringUnavailable) {
		t.Fatalf("unavailable: %v", err)
	}
	if _, err := Load(ctx, Options{Keyring: &memKeyring{m: map[string]string{}}}, p); !errors.Is(err, ErrKeyringMissing) {
		t.Fatalf("missing entry: %v", err)
	}
	if _, err := Load(ctx, Options{}, p); !errors.Is(err, ErrKeyringUnavailable) {
		t.Fatalf("no keyring: %v", err)
	}
}

// TestOSKeyringHeadless documents the real OS keyring's behaviour on a
// machine without a Secret Service: a clear ErrKeyringUnavailable.
func TestOSKeyringHeadless(t *testing.T) {
	if os.Getenv("DBUS_SESSION_BUS_ADDRESS") != "" {
		t.Skip("a D-Bus session exists; the headless behaviour is not observable here")
	}
	_, err := OSKeyring{}.Get("keystile-test", "nobody")
	if !errors.Is(err, ErrKeyringUnavailable) && !errors.Is(err, ErrKeyringMissing) {
		t.Fatalf("err = %v", err)
	}
}

func TestUnknownSource(t *testing.T) {
	if _, _, err := Create(context.Background(), Options{Source: "hsm"}); !errors.Is(err, ErrUnknownSource) {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), Options{}, Params{Source: "hsm"}); !errors.Is(err, ErrUnknownSource) {
		t.Fatal(err)
	}
}
