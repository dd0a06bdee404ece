package localca_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/localca"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/vault"
)

type env struct {
	dir  string
	v    *vault.Vault
	opts localca.Options
}

// newEnv opens a real vault on a real SQLite file in a temp data dir.
func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "keystile.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	b := make([]byte, vault.KeySize)
	_, _ = rand.Read(b)
	root := secret.New(b)
	if err := vault.Initialize(ctx, db.Vault(), root, map[string][]byte{"master_key": []byte(`{"source":"file"}`)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(ctx, vault.Options{Store: db.Vault(), RootKey: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close(ctx) })
	return &env{dir: dir, v: v, opts: localca.Options{Vault: v, CertFile: filepath.Join(dir, "local-ca.pem")}}
}

func (e *env) create(t testing.TB, c localca.CreateOptions) *localca.CA {
	t.Helper()
	ctx := context.Background()
	if _, err := localca.Create(ctx, e.opts, c); err != nil {
		t.Fatalf("create: %v", err)
	}
	ca, err := localca.Load(ctx, e.opts)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return ca
}

// verify checks a leaf against the CA as a TLS client would.
func verify(ca *localca.CA, leaf *tls.Certificate, host string) error {
	_, err := leaf.Leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return err
}

func TestCreateLoadAndLeaves(t *testing.T) {
	e := newEnv(t)
	ca := e.create(t, localca.CreateOptions{})
	info := ca.Info()
	cert := ca.Pool()
	if cert == nil || !strings.HasPrefix(info.Subject, "keystile local CA ") || info.KeyVersion != 1 || len(info.SHA256) != 64 {
		t.Fatalf("info = %+v", info)
	}
	if !bytes.Equal(ca.PEM(), []byte(info.PEM)) || !strings.HasPrefix(info.PEM, "-----BEGIN CERTIFICATE-----") {
		t.Fatalf("PEM = %q", info.PEM)
	}
	if d := info.NotAfter.Sub(info.NotBefore); d < localca.DefaultValidity || d > localca.DefaultValidity+2*time.Hour {
		t.Errorf("CA validity %s", d)
	}
	for _, tc := range []struct {
		name  string
		names []string
		check string
	}{
		{"dns name", []string{"api.binance.com"}, "api.binance.com"},
		{"upper case and trailing dot", []string{"API.Binance.COM."}, "api.binance.com"},
		{"ipv4", []string{"127.0.0.1"}, "127.0.0.1"},
		{"ipv6 in brackets", []string{"[::1]"}, "::1"},
		{"several names", []string{"localhost", "127.0.0.1", "::1"}, "localhost"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			leaf, err := ca.Leaf(context.Background(), tc.names...)
			if err != nil {
				t.Fatal(err)
			}
			if err := verify(ca, leaf, tc.check); err != nil {
				t.Fatalf("verify %s: %v", tc.check, err)
			}
			if err := verify(ca, leaf, "evil.example"); err == nil {
				t.Fatal("leaf verified for another host")
			}
			if ttl := leaf.Leaf.NotAfter.Sub(leaf.Leaf.NotBefore); ttl > localca.DefaultLeafTTL+10*time.Minute {
				t.Errorf("leaf lifetime %s", ttl)
			}
			if leaf.Leaf.IsCA || len(leaf.Certificate) != 1 {
				t.Errorf("leaf IsCA=%v chain=%d", leaf.Leaf.IsCA, len(leaf.Certificate))
			}
			again, err := ca.Leaf(context.Background(), tc.names...)
			if err != nil || again != leaf {
				t.Errorf("second call did not return the cached leaf (%v)", err)
			}
		})
	}
	// A leaf cannot act as a CA: a certificate it signed does not verify.
	if _, err := ca.Leaf(context.Background(), "*.binance.com"); !errors.Is(err, localca.ErrInvalidName) {
		t.Errorf("wildcard: err = %v, want ErrInvalidName", err)
	}
}

func TestCreateRefusesSecondCA(t *testing.T) {
	e := newEnv(t)
	e.create(t, localca.CreateOptions{})
	if _, err := localca.Create(context.Background(), e.opts, localca.CreateOptions{}); !errors.Is(err, localca.ErrExists) {
		t.Fatalf("second create: %v, want ErrExists", err)
	}
}

func TestLoadWithoutCA(t *testing.T) {
	e := newEnv(t)
	if _, err := localca.Load(context.Background(), e.opts); !errors.Is(err, localca.ErrNoCA) {
		t.Fatalf("load: %v, want ErrNoCA", err)
	}
	ok, err := localca.Exists(context.Background(), e.v)
	if err != nil || ok {
		t.Fatalf("Exists = %v, %v", ok, err)
	}
}

func TestRevokedCAIsGone(t *testing.T) {
	e := newEnv(t)
	ca := e.create(t, localca.CreateOptions{})
	if err := e.v.Revoke(context.Background(), localca.CredentialName, true); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Leaf(context.Background(), "api.binance.com"); !errors.Is(err, localca.ErrNoCA) {
		t.Fatalf("leaf after revoke: %v, want ErrNoCA", err)
	}
	if _, err := localca.Load(context.Background(), e.opts); !errors.Is(err, localca.ErrNoCA) {
		t.Fatalf("load after revoke: %v, want ErrNoCA", err)
	}
	// A new CA can be made after a compromise revocation.
	e.create(t, localca.CreateOptions{})
}

// A certificate file that is not the vault key's is refused: swapping the
// public file cannot make keystile present another CA.
func TestSwappedCertificateFileIsRefused(t *testing.T) {
	e := newEnv(t)
	e.create(t, localca.CreateOptions{})
	other := newEnv(t)
	other.create(t, localca.CreateOptions{})
	foreign, err := os.ReadFile(other.opts.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(e.opts.CertFile, foreign, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := localca.Load(context.Background(), e.opts); !errors.Is(err, localca.ErrMismatch) {
		t.Fatalf("load with a foreign certificate: %v, want ErrMismatch", err)
	}
	for _, bad := range [][]byte{[]byte("not pem"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")} {
		if err := os.WriteFile(e.opts.CertFile, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := localca.Load(context.Background(), e.opts); err == nil {
			t.Fatalf("load with %q succeeded", bad)
		}
	}
}

func TestRotate(t *testing.T) {
	e := newEnv(t)
	ca := e.create(t, localca.CreateOptions{})
	old := ca.Info()
	oldPool := ca.Pool()
	before, err := ca.Leaf(context.Background(), "api.binance.com")
	if err != nil {
		t.Fatal(err)
	}
	info, err := ca.Rotate(context.Background(), localca.CreateOptions{Validity: 48 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if info.SHA256 == old.SHA256 || info.KeyVersion != 2 {
		t.Fatalf("rotate: %+v", info)
	}
	after, err := ca.Leaf(context.Background(), "api.binance.com")
	if err != nil {
		t.Fatal(err)
	}
	if after == before {
		t.Fatal("rotation kept the old leaf")
	}
	if err := verify(ca, after, "api.binance.com"); err != nil {
		t.Fatalf("new leaf under the new CA: %v", err)
	}
	if _, err := after.Leaf.Verify(x509.VerifyOptions{Roots: oldPool, DNSName: "api.binance.com"}); err == nil {
		t.Fatal("new leaf verified under the old CA")
	}
	// The file on disk is the new certificate: a fresh Load agrees.
	re, err := localca.Load(context.Background(), e.opts)
	if err != nil || re.Info().SHA256 != info.SHA256 {
		t.Fatalf("reload after rotate: %v (%+v)", err, re)
	}
	if after.Leaf.NotAfter.After(info.NotAfter) {
		t.Errorf("leaf outlives its CA: %s > %s", after.Leaf.NotAfter, info.NotAfter)
	}
}

func TestNameConstraints(t *testing.T) {
	for _, tc := range []struct {
		name      string
		constrain []string
		ok, bad   []string
	}{
		{"dns and ip", []string{"api.binance.com", "127.0.0.1"}, []string{"api.binance.com", "127.0.0.1"}, []string{"www.okx.com", "10.0.0.1", "binance.com"}},
		{"dns only excludes every ip", []string{"api.binance.com"}, []string{"api.binance.com"}, []string{"127.0.0.1", "::1"}},
		{"ip only excludes every dns name", []string{"127.0.0.1"}, []string{"127.0.0.1"}, []string{"localhost", "api.binance.com"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			ca := e.create(t, localca.CreateOptions{Constrain: tc.constrain})
			if len(ca.Info().Constraints) != len(tc.constrain) {
				t.Errorf("constraints = %v", ca.Info().Constraints)
			}
			for _, n := range tc.ok {
				leaf, err := ca.Leaf(context.Background(), n)
				if err != nil {
					t.Fatalf("%s: %v", n, err)
				}
				if err := verify(ca, leaf, n); err != nil {
					t.Fatalf("%s does not verify under the constrained CA: %v", n, err)
				}
			}
			for _, n := range tc.bad {
				if _, err := ca.Leaf(context.Background(), n); !errors.Is(err, localca.ErrNotCovered) {
					t.Errorf("%s: err = %v, want ErrNotCovered", n, err)
				}
			}
		})
	}
}

// TestConstraintsBindAStolenKey: a certificate for another host, signed
// with the CA key directly (what a thief could do), fails verification in
// a client because of the constraints.
func TestConstraintsBindAStolenKey(t *testing.T) {
	e := newEnv(t)
	ca := e.create(t, localca.CreateOptions{Constrain: []string{"api.binance.com"}})
	roots := ca.Pool()
	var caCert *x509.Certificate
	{
		p, _ := os.ReadFile(e.opts.CertFile)
		certs, err := parsePEM(p)
		if err != nil {
			t.Fatal(err)
		}
		caCert = certs[0]
	}
	err := e.v.WithCredential(context.Background(), localca.CredentialName, func(c *vault.Credential) error {
		raw, err := c.Field(localca.FieldPrivateKey)
		if err != nil {
			return err
		}
		key, err := parseRaw(raw.Reveal())
		if err != nil {
			return err
		}
		for _, host := range []string{"github.com", "10.1.1.1"} {
			der, err := forge(caCert, key, host)
			if err != nil {
				return err
			}
			leaf, _ := x509.ParseCertificate(der)
			if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host}); err == nil {
				t.Errorf("a forged leaf for %s verified under the constrained CA", host)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestLeafConcurrentIssuesOnce(t *testing.T) {
	e := newEnv(t)
	ca := e.create(t, localca.CreateOptions{})
	var wg sync.WaitGroup
	certs := make([]*tls.Certificate, 16)
	for i := range certs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := ca.Leaf(context.Background(), "api.kraken.com")
			if err != nil {
				t.Error(err)
			}
			certs[i] = c
		}()
	}
	wg.Wait()
	for _, c := range certs[1:] {
		if c != certs[0] {
			t.Fatal("concurrent callers got different leaves")
		}
	}
}

func TestLeafRenewal(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.opts.Now = func() time.Time { return now }
	e.opts.LeafTTL = time.Hour
	ca := e.create(t, localca.CreateOptions{})
	first, err := ca.Leaf(context.Background(), "api.bybit.com")
	if err != nil {
		t.Fatal(err)
	}
	now = now.Add(30 * time.Minute)
	if again, _ := ca.Leaf(context.Background(), "api.bybit.com"); again != first {
		t.Fatal("renewed before two thirds of the lifetime")
	}
	now = now.Add(11 * time.Minute)
	renewed, err := ca.Leaf(context.Background(), "api.bybit.com")
	if err != nil {
		t.Fatal(err)
	}
	if renewed == first || !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Fatal("not renewed after two thirds of the lifetime")
	}
}

func TestExpiredCA(t *testing.T) {
	e := newEnv(t)
	now := time.Now()
	e.opts.Now = func() time.Time { return now }
	ca := e.create(t, localca.CreateOptions{Validity: 48 * time.Hour})
	now = now.Add(49 * time.Hour)
	if _, err := ca.Leaf(context.Background(), "api.okx.com"); !errors.Is(err, localca.ErrExpired) {
		t.Fatalf("leaf from an expired CA: %v, want ErrExpired", err)
	}
}

func TestOptionBounds(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name string
		o    localca.Options
		c    localca.CreateOptions
	}{
		{"leaf ttl too short", localca.Options{LeafTTL: time.Minute}, localca.CreateOptions{}},
		{"leaf ttl too long", localca.Options{LeafTTL: 90 * 24 * time.Hour}, localca.CreateOptions{}},
		{"validity too short", localca.Options{}, localca.CreateOptions{Validity: time.Hour}},
		{"bad constraint", localca.Options{}, localca.CreateOptions{Constrain: []string{"*.x.com"}}},
		{"no vault", localca.Options{CertFile: "x"}, localca.CreateOptions{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := tc.o
			if o.CertFile == "" {
				o.Vault, o.CertFile = e.v, e.opts.CertFile
			}
			if _, err := localca.Create(context.Background(), o, tc.c); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	if _, err := os.Stat(e.opts.CertFile); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a refused create left a certificate file: %v", err)
	}
	if ok, _ := localca.Exists(context.Background(), e.v); ok {
		t.Fatal("a refused create left a key")
	}
}

// TestKeyNeverOnDiskInClear sweeps every file of the data dir for the CA
// key in its raw, hex, base64 and PKCS#8 forms.
func TestKeyNeverOnDiskInClear(t *testing.T) {
	e := newEnv(t)
	ca := e.create(t, localca.CreateOptions{})
	if _, err := ca.Leaf(context.Background(), "api.binance.com"); err != nil {
		t.Fatal(err)
	}
	var needles [][]byte
	err := e.v.WithCredential(context.Background(), localca.CredentialName, func(c *vault.Credential) error {
		raw, err := c.Field(localca.FieldPrivateKey)
		if err != nil {
			return err
		}
		b := raw.Reveal()
		key, err := parseRaw(b)
		if err != nil {
			return err
		}
		p8, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return err
		}
		ec, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return err
		}
		for _, v := range [][]byte{b, p8, ec} {
			needles = append(needles, bytes.Clone(v), []byte(hex.EncodeToString(v)), []byte(base64.StdEncoding.EncodeToString(v)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(e.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		for i, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s holds the CA key in clear (form %d)", p, i)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 2 {
		t.Fatalf("swept only %d files", files)
	}
}

func TestNormalizeName(t *testing.T) {
	for _, tc := range []struct {
		in, want string
		ok       bool
	}{
		{"api.binance.com", "api.binance.com", true},
		{"API.Binance.com.", "api.binance.com", true},
		{"127.0.0.1", "127.0.0.1", true},
		{"::ffff:127.0.0.1", "127.0.0.1", true},
		{"[::1]", "::1", true},
		{"localhost", "localhost", true},
		{"", "", false},
		{"*.binance.com", "", false},
		{"a..b", "", false},
		{"-a.com", "", false},
		{"a_b.com", "", false},
		{"host:443", "", false},
		{"1.2.3", "", false},
		{"999.1.1.1", "", false},
		{"[127.0.0.1]", "", false},
		{"fe80::1%eth0", "", false},
		{strings.Repeat("a", 64) + ".com", "", false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := localca.NormalizeName(tc.in)
			if (err == nil) != tc.ok || got != tc.want {
				t.Fatalf("NormalizeName(%q) = %q, %v", tc.in, got, err)
			}
		})
	}
}

func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{"api.binance.com", "127.0.0.1", "[::1]", "A.B.", "*.x", "1.2.3", "fe80::1%eth0", "xn--bcher-kva.example"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := localca.NormalizeName(s)
		if err != nil {
			return
		}
		// Normalized names are stable, and usable as certificate names.
		again, err := localca.NormalizeName(n)
		if err != nil || again != n {
			t.Fatalf("NormalizeName(%q) = %q, then %q, %v", s, n, again, err)
		}
		if net.ParseIP(n) == nil && strings.ContainsAny(n, "*:[] /%") {
			t.Fatalf("NormalizeName(%q) = %q", s, n)
		}
	})
}
