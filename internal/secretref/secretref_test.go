package secretref_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/secretref"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/vault"
)

const canary = "CANARY-secretref-7d1e93f0aa"

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want secretref.Ref
		err  bool
	}{
		{"env", "env:BINANCE_SECRET", secretref.Ref{Scheme: secretref.SchemeEnv, Target: "BINANCE_SECRET"}, false},
		{"env lowercase", "env:_x1", secretref.Ref{Scheme: secretref.SchemeEnv, Target: "_x1"}, false},
		{"env bad name", "env:1ABC", secretref.Ref{}, true},
		{"env empty", "env:", secretref.Ref{}, true},
		{"file", "file:/run/secrets/key", secretref.Ref{Scheme: secretref.SchemeFile, Target: "/run/secrets/key"}, false},
		{"file relative with colon", "file:a:b", secretref.Ref{Scheme: secretref.SchemeFile, Target: "a:b"}, false},
		{"file empty", "file:", secretref.Ref{}, true},
		{"dotenv", "dotenv:.env#API_KEY", secretref.Ref{Scheme: secretref.SchemeDotenv, Target: ".env", Key: "API_KEY"}, false},
		{"dotenv hash in path", "dotenv:a#b/.env#K", secretref.Ref{Scheme: secretref.SchemeDotenv, Target: "a#b/.env", Key: "K"}, false},
		{"dotenv no key", "dotenv:.env", secretref.Ref{}, true},
		{"dotenv no path", "dotenv:#K", secretref.Ref{}, true},
		{"dotenv bad key", "dotenv:.env#A-B", secretref.Ref{}, true},
		{"keyring", "keyring:svc/user/x", secretref.Ref{Scheme: secretref.SchemeKeyring, Target: "svc", Key: "user/x"}, false},
		{"keyring no user", "keyring:svc/", secretref.Ref{}, true},
		{"keyring no slash", "keyring:svc", secretref.Ref{}, true},
		{"vault", "vault:binance-main#secret", secretref.Ref{Scheme: secretref.SchemeVault, Target: "binance-main", Key: "secret"}, false},
		{"vault no field", "vault:binance-main", secretref.Ref{}, true},
		{"vault bad name", "vault:Bad Name#secret", secretref.Ref{}, true},
		{"no scheme", "BINANCE_SECRET", secretref.Ref{}, true},
		{"unknown scheme", "aws-sm:arn", secretref.Ref{}, true},
		{"nul", "file:a\x00b", secretref.Ref{}, true},
		{"too long", "file:" + strings.Repeat("a", secretref.MaxRefLen), secretref.Ref{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := secretref.Parse(tt.in)
			if tt.err {
				if !errors.Is(err, secretref.ErrSyntax) {
					t.Fatalf("Parse(%q) = %+v, %v; want ErrSyntax", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Parse(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			if got.String() != tt.in {
				t.Fatalf("String() = %q, want %q", got.String(), tt.in)
			}
		})
	}
}

func TestLookupDotenv(t *testing.T) {
	content := "# comment\n" +
		"PLAIN=plain-value\n" +
		"export EXPORTED = exported-value  # trailing comment\n" +
		"SINGLE='single # not a comment'\n" +
		"DOUBLE=\"line1\\nq\\\"x\"\r\n" +
		"DUP=first\n" +
		"DUP=second\n" +
		"BROKEN=\"unterminated\n" +
		"=novalue\n" +
		"EMPTY=\n" +
		"LAST=no-newline"
	tests := []struct {
		key, want string
		ok        bool
	}{
		{"PLAIN", "plain-value", true},
		{"EXPORTED", "exported-value", true},
		{"SINGLE", "single # not a comment", true},
		{"DOUBLE", "line1\nq\"x", true},
		{"DUP", "second", true},
		{"BROKEN", "", false},
		{"EMPTY", "", true},
		{"LAST", "no-newline", true},
		{"MISSING", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			v, ok := secretref.LookupDotenv([]byte(content), tt.key)
			if ok != tt.ok || string(v.Reveal()) != tt.want {
				t.Fatalf("LookupDotenv(%s) = %q, %v; want %q, %v", tt.key, v.Reveal(), ok, tt.want, tt.ok)
			}
		})
	}
}

type mapKeyring map[string]string

func (k mapKeyring) Get(svc, user string) (string, error) {
	v, ok := k[svc+"/"+user]
	if !ok {
		return "", errors.New("keyring: no entry for " + svc + "/" + user + " " + canary)
	}
	return v, nil
}

func openVault(t *testing.T) *vault.Vault {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	root := make([]byte, 32)
	_, _ = rand.Read(root)
	if err := vault.Initialize(ctx, db.Vault(), secret.New(append([]byte(nil), root...)), nil, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Options{Store: db.Vault(), RootKey: secret.New(root)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close(ctx) })
	if _, err := v.Set(ctx, "binance-main", map[string]secret.Value{"secret": secret.FromString(canary + "-vault")}, vault.SetOptions{}); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "key"), []byte(canary+"-file\r\n"), 0o600))
	must(os.WriteFile(filepath.Join(dir, "empty"), nil, 0o600))
	must(os.WriteFile(filepath.Join(dir, ".env"), []byte("A=1\nAPI_KEY="+canary+"-dotenv\n"), 0o600))
	env := map[string]string{"BOT_SECRET": canary + "-env"}
	full := &secretref.Resolver{
		Getenv:  func(k string) string { return env[k] },
		Keyring: mapKeyring{"svc/user": canary + "-keyring"},
		Vault:   openVault(t),
	}
	bare := &secretref.Resolver{Getenv: func(k string) string { return env[k] }}
	tests := []struct {
		name string
		r    *secretref.Resolver
		ref  string
		want string
		err  error
	}{
		{"env", full, "env:BOT_SECRET", canary + "-env", nil},
		{"env missing", full, "env:NOPE", "", secretref.ErrNotFound},
		{"file trims one newline", full, "file:" + filepath.Join(dir, "key"), canary + "-file", nil},
		{"file missing", full, "file:" + filepath.Join(dir, "nope"), "", secretref.ErrNotFound},
		{"file empty", full, "file:" + filepath.Join(dir, "empty"), "", secretref.ErrEmpty},
		{"file directory", full, "file:" + dir, "", nil},
		{"dotenv", full, "dotenv:" + filepath.Join(dir, ".env") + "#API_KEY", canary + "-dotenv", nil},
		{"dotenv missing key", full, "dotenv:" + filepath.Join(dir, ".env") + "#B", "", secretref.ErrNotFound},
		{"keyring", full, "keyring:svc/user", canary + "-keyring", nil},
		{"keyring missing", full, "keyring:svc/other", "", secretref.ErrNotFound},
		{"keyring unavailable", bare, "keyring:svc/user", "", secretref.ErrUnavailable},
		{"vault", full, "vault:binance-main#secret", canary + "-vault", nil},
		{"vault missing field", full, "vault:binance-main#api_key", "", secretref.ErrNotFound},
		{"vault missing credential", full, "vault:nope#secret", "", vault.ErrNotFound},
		{"vault unavailable", bare, "vault:binance-main#secret", "", secretref.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ref, err := secretref.Parse(tt.ref)
			if err != nil {
				t.Fatal(err)
			}
			v, err := tt.r.Resolve(context.Background(), ref)
			if tt.want != "" {
				if err != nil || string(v.Reveal()) != tt.want {
					t.Fatalf("Resolve = %q, %v; want %q", v.Reveal(), err, tt.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("Resolve = %q, want an error", v.Reveal())
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("Resolve error = %v, want %v", err, tt.err)
			}
			if strings.Contains(err.Error(), canary) {
				t.Fatalf("error reveals a value: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "secretref: ") {
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
}

func ExampleParse() {
	ref, err := secretref.Parse("dotenv:/srv/bot/.env#BINANCE_SECRET")
	if err != nil {
		panic(err)
	}
	fmt.Println(ref.Scheme, ref.Target, ref.Key)
	// Output: dotenv /srv/bot/.env BINANCE_SECRET
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"env:A", "file:/x", "dotenv:.env#K", "dotenv:a#b#C", "keyring:s/u", "vault:a#b", "x:", ":", "", "env:\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := secretref.Parse(s)
		if err != nil {
			if !errors.Is(err, secretref.ErrSyntax) {
				t.Fatalf("Parse(%q): error %v does not wrap ErrSyntax", s, err)
			}
			return
		}
		if r.String() != s {
			t.Fatalf("String() = %q, want %q", r.String(), s)
		}
		r2, err := secretref.Parse(r.String())
		if err != nil || r2 != r {
			t.Fatalf("round trip of %q: %+v, %v", s, r2, err)
		}
	})
}

func FuzzLookupDotenv(f *testing.F) {
	f.Add([]byte("A=1\nexport B='x'\nC=\"a\\nb\" # c\n"), "B")
	f.Add([]byte("\"\n'\n=\n#"), "A")
	f.Fuzz(func(t *testing.T, b []byte, key string) {
		in := append([]byte(nil), b...)
		v, ok := secretref.LookupDotenv(b, key)
		if !ok && !v.IsZero() {
			t.Fatal("value without ok")
		}
		if string(in) != string(b) {
			t.Fatal("LookupDotenv modified its input")
		}
		// A bare assignment appended last always wins.
		if secretref.EnvName(key) {
			extra := append(append([]byte(nil), b...), []byte("\n"+key+"=zz9")...)
			if v, ok := secretref.LookupDotenv(extra, key); !ok || string(v.Reveal()) != "zz9" {
				t.Fatalf("appended assignment not found: %q %v", v.Reveal(), ok)
			}
		}
	})
}
