package localca

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/vault"
)

// CredentialName is the vault credential that holds the CA's private key.
const CredentialName = "keystile-local-ca" // #nosec G101 -- a credential name, not a credential

// FieldPrivateKey is the credential field holding the key: the P-256
// scalar, 32 bytes big-endian (SEC 1 raw form).
const FieldPrivateKey = "private_key"

// Defaults and bounds.
const (
	DefaultLeafTTL  = 24 * time.Hour
	MinLeafTTL      = 10 * time.Minute
	MaxLeafTTL      = 30 * 24 * time.Hour
	DefaultValidity = 5 * 365 * 24 * time.Hour
	MinValidity     = 24 * time.Hour
	MaxValidity     = 20 * 365 * 24 * time.Hour
	// maxLeaves bounds the leaf cache; the names come from the
	// configuration, so this is never reached in practice.
	maxLeaves = 256
	// maxCertFile bounds the certificate file read by Load.
	maxCertFile = 64 << 10
)

// Errors callers branch on.
var (
	// ErrNoCA: the vault holds no usable CA key (none was created, or it
	// was revoked).
	ErrNoCA = errors.New("localca: no local CA (run keystile ca init)")
	// ErrExists: Create found a CA already.
	ErrExists = errors.New("localca: a local CA exists already (keystile ca rotate replaces it)")
	// ErrMismatch: the certificate file does not belong to the vault's key.
	ErrMismatch = errors.New("localca: the CA certificate does not match the CA key in the vault (keystile ca rotate issues a new pair)")
	// ErrNotCovered: the CA's name constraints exclude the name.
	ErrNotCovered = errors.New("localca: the CA's name constraints do not cover this name (keystile ca rotate --constrain with the current venues)")
	// ErrExpired: the CA is no longer (or not yet) valid.
	ErrExpired = errors.New("localca: the CA certificate has expired (keystile ca rotate)")
	// ErrInvalidName: a name is neither a DNS name nor an IP address.
	ErrInvalidName = errors.New("localca: invalid certificate name")
)

// Vault is what the CA needs from the vault. *vault.Vault satisfies it.
// WithCredential must return errors wrapping vault.ErrNotFound or
// vault.ErrRevoked for a missing or revoked credential.
type Vault interface {
	WithCredential(ctx context.Context, name string, fn func(*vault.Credential) error) error
	Set(ctx context.Context, name string, fields map[string]secret.Value, o vault.SetOptions) (vault.Info, error)
}

var _ Vault = (*vault.Vault)(nil)

// Options configure Load and Create.
type Options struct {
	// Vault holds the CA key. Required.
	Vault Vault
	// CertFile is the CA certificate's PEM file. Required.
	CertFile string
	// LeafTTL is the lifetime of issued leaves. If 0, DefaultLeafTTL;
	// otherwise between MinLeafTTL and MaxLeafTTL.
	LeafTTL time.Duration
	// Now is the clock. If nil, time.Now.
	Now func() time.Time
	// Logger receives issuance messages (never key material). If nil, none.
	Logger *slog.Logger
}

func (o *Options) fill() error {
	if o.Vault == nil || o.CertFile == "" {
		return errors.New("localca: a vault and a certificate file are required")
	}
	if o.LeafTTL == 0 {
		o.LeafTTL = DefaultLeafTTL
	}
	if o.LeafTTL < MinLeafTTL || o.LeafTTL > MaxLeafTTL {
		return fmt.Errorf("localca: leaf lifetime %s outside [%s, %s]", o.LeafTTL, MinLeafTTL, MaxLeafTTL)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// CreateOptions configure a new CA.
type CreateOptions struct {
	// Validity is the CA certificate's lifetime. If 0, DefaultValidity.
	Validity time.Duration
	// Constrain, if not empty, lists the only DNS names (each with its
	// subdomains) and IP addresses the CA may certify, as critical X.509
	// name constraints. The other kind of name is then excluded entirely
	// (no IP at all when only DNS names are listed, and the reverse).
	Constrain []string
}

// Info describes the CA. It holds no secret.
type Info struct {
	Subject     string    `json:"subject"`
	SHA256      string    `json:"sha256"` // fingerprint of the certificate (DER), hex
	NotBefore   time.Time `json:"not_before"`
	NotAfter    time.Time `json:"not_after"`
	Constraints []string  `json:"name_constraints,omitempty"`
	KeyVersion  int       `json:"key_version"` // vault version of the key
	CertFile    string    `json:"cert_file"`
	PEM         string    `json:"pem"`
}

// CA is a loaded local CA. It is safe for concurrent use.
type CA struct {
	o Options

	mu      sync.RWMutex
	cert    *x509.Certificate
	pem     []byte
	version int
	leaves  map[string]*leaf
	flights map[string]*flight
}

type leaf struct {
	cert    *tls.Certificate
	renewAt time.Time
	expires time.Time
}

type flight struct {
	done chan struct{}
	cert *tls.Certificate
	err  error
}

// Exists reports whether the vault holds a usable CA key.
func Exists(ctx context.Context, v Vault) (bool, error) {
	err := v.WithCredential(ctx, CredentialName, func(*vault.Credential) error { return nil })
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, vault.ErrNotFound), errors.Is(err, vault.ErrRevoked):
		return false, nil
	default:
		return false, fmt.Errorf("localca: read CA key: %w", err)
	}
}

// Create makes a new CA: a P-256 key sealed in the vault and its
// self-signed certificate written to o.CertFile. It fails with ErrExists
// if a usable CA key is in the vault already.
func Create(ctx context.Context, o Options, c CreateOptions) (Info, error) {
	if err := o.fill(); err != nil {
		return Info{}, err
	}
	ok, err := Exists(ctx, o.Vault)
	if err != nil {
		return Info{}, err
	}
	if ok {
		return Info{}, ErrExists
	}
	cert, pemBytes, version, err := create(ctx, o, c)
	if err != nil {
		return Info{}, err
	}
	return info(cert, pemBytes, version, o.CertFile), nil
}

// create generates and stores a CA, replacing any existing one.
func create(ctx context.Context, o Options, c CreateOptions) (*x509.Certificate, []byte, int, error) {
	validity := c.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	if validity < MinValidity || validity > MaxValidity {
		return nil, nil, 0, fmt.Errorf("localca: validity %s outside [%s, %s]", validity, MinValidity, MaxValidity)
	}
	var names []string
	for _, n := range c.Constrain {
		nn, err := NormalizeName(n)
		if err != nil {
			return nil, nil, 0, err
		}
		if !slices.Contains(names, nn) {
			names = append(names, nn)
		}
	}
	slices.Sort(names)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("localca: generate key: %w", err)
	}
	raw, err := key.Bytes()
	if err != nil {
		return nil, nil, 0, fmt.Errorf("localca: encode key: %w", err)
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("localca: encode public key: %w", err)
	}
	id := sha256.Sum256(pubDER)
	now := o.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "keystile local CA " + hex.EncodeToString(id[:4]), Organization: []string{"keystile"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          id[:20],
	}
	if len(names) > 0 {
		constrain(tmpl, names)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		secret.Wipe(raw)
		return nil, nil, 0, fmt.Errorf("localca: self-sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		secret.Wipe(raw)
		return nil, nil, 0, fmt.Errorf("localca: parse new certificate: %w", err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})

	// The certificate goes to a temporary file first, the key into the
	// vault, then the file into place: a failure leaves either the old
	// pair or a key without its file (Load then says so), never a file
	// that claims a key the vault does not hold.
	tmp, err := writeTemp(o.CertFile, pemBytes)
	if err != nil {
		secret.Wipe(raw)
		return nil, nil, 0, err
	}
	rotationDays := max(1, int((validity-30*24*time.Hour)/(24*time.Hour)))
	vi, err := o.Vault.Set(ctx, CredentialName, map[string]secret.Value{FieldPrivateKey: secret.New(raw)}, vault.SetOptions{RotationDays: rotationDays})
	if err != nil {
		_ = os.Remove(tmp)
		return nil, nil, 0, fmt.Errorf("localca: store CA key: %w", err)
	}
	if err := os.Rename(tmp, o.CertFile); err != nil {
		_ = os.Remove(tmp)
		return nil, nil, 0, fmt.Errorf("localca: write %s: %w", o.CertFile, err)
	}
	o.Logger.Info("localca: created a local CA", "subject", cert.Subject.CommonName, "not_after", cert.NotAfter, "name_constraints", names)
	return cert, pemBytes, vi.CurrentVersion, nil
}

// constrain adds critical name constraints permitting exactly names, and
// excluding the kind of name (DNS or IP) that names do not list.
func constrain(tmpl *x509.Certificate, names []string) {
	tmpl.PermittedDNSDomainsCritical = true
	for _, n := range names {
		if a, err := netip.ParseAddr(n); err == nil {
			tmpl.PermittedIPRanges = append(tmpl.PermittedIPRanges, &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())})
		} else {
			tmpl.PermittedDNSDomains = append(tmpl.PermittedDNSDomains, n)
		}
	}
	if len(tmpl.PermittedIPRanges) == 0 {
		tmpl.ExcludedIPRanges = []*net.IPNet{{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, {IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}}
	}
	if len(tmpl.PermittedDNSDomains) == 0 {
		// An empty dNSName constraint matches every name (RFC 5280
		// 4.2.1.10 as Go and OpenSSL implement it).
		tmpl.ExcludedDNSDomains = []string{""}
	}
}

func serial() *big.Int {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	b[0] &= 0x7f
	return new(big.Int).SetBytes(b)
}

func writeTemp(path string, data []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(path), ".local-ca-*.pem")
	if err != nil {
		return "", fmt.Errorf("localca: write %s: %w", path, err)
	}
	name := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o600) // the data dir's rule; bots get it with `keystile ca export`
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(name)
		return "", fmt.Errorf("localca: write %s: %w", path, err)
	}
	return name, nil
}

// Load reads the CA certificate file, checks it against the key in the
// vault and returns the CA. It fails with ErrNoCA when the vault holds no
// usable key, and ErrMismatch when the file does not belong to it.
func Load(ctx context.Context, o Options) (*CA, error) {
	if err := o.fill(); err != nil {
		return nil, err
	}
	ca := &CA{o: o, leaves: map[string]*leaf{}, flights: map[string]*flight{}}
	if err := ca.reload(ctx); err != nil {
		return nil, err
	}
	return ca, nil
}

// reload reads the certificate file and the key's version and checks that
// they belong together; it replaces the CA in force and drops the leaves.
func (ca *CA) reload(ctx context.Context) error {
	b, err := readBounded(ca.o.CertFile)
	if err != nil {
		ok, verr := Exists(ctx, ca.o.Vault)
		if verr == nil && !ok {
			return ErrNoCA
		}
		return fmt.Errorf("localca: read %s: %w", ca.o.CertFile, err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return fmt.Errorf("localca: %s holds no PEM certificate", ca.o.CertFile)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("localca: parse %s: %w", ca.o.CertFile, err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !cert.IsCA {
		return fmt.Errorf("%w (%s is not an ECDSA CA certificate)", ErrMismatch, ca.o.CertFile)
	}
	version := 0
	err = ca.o.Vault.WithCredential(ctx, CredentialName, func(c *vault.Credential) error {
		key, err := openKey(c)
		if err != nil {
			return err
		}
		if !key.PublicKey.Equal(pub) {
			return ErrMismatch
		}
		version = c.Version
		return nil
	})
	switch {
	case errors.Is(err, vault.ErrNotFound), errors.Is(err, vault.ErrRevoked):
		return ErrNoCA
	case err != nil:
		return err
	}
	ca.mu.Lock()
	ca.cert, ca.pem, ca.version = cert, pem.EncodeToMemory(block), version
	ca.leaves = map[string]*leaf{}
	ca.mu.Unlock()
	return nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path) // #nosec G304 -- the data dir's certificate file
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCertFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxCertFile {
		return nil, fmt.Errorf("larger than %d bytes", maxCertFile)
	}
	return b, nil
}

// openKey parses the CA key of an opened credential.
func openKey(c *vault.Credential) (*ecdsa.PrivateKey, error) {
	raw, err := c.Field(FieldPrivateKey)
	if err != nil {
		return nil, fmt.Errorf("localca: CA key: %w", err)
	}
	key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), raw.Reveal())
	if err != nil {
		// The parse error says nothing about the value; keep it short.
		return nil, errors.New("localca: the CA key in the vault is not a P-256 key")
	}
	return key, nil
}

// Rotate replaces the CA with a new key and certificate (a new version of
// the vault credential) and drops every issued leaf. Bots must then trust
// the new certificate (Info().PEM).
func (ca *CA) Rotate(ctx context.Context, c CreateOptions) (Info, error) {
	cert, pemBytes, version, err := create(ctx, ca.o, c)
	if err != nil {
		return Info{}, err
	}
	ca.mu.Lock()
	ca.cert, ca.pem, ca.version = cert, pemBytes, version
	ca.leaves = map[string]*leaf{}
	ca.mu.Unlock()
	return ca.Info(), nil
}

// Replace creates a new CA whether one exists or not (the offline form of
// Rotate).
func Replace(ctx context.Context, o Options, c CreateOptions) (Info, error) {
	if err := o.fill(); err != nil {
		return Info{}, err
	}
	cert, pemBytes, version, err := create(ctx, o, c)
	if err != nil {
		return Info{}, err
	}
	return info(cert, pemBytes, version, o.CertFile), nil
}

// Info describes the CA in force.
func (ca *CA) Info() Info {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	return info(ca.cert, ca.pem, ca.version, ca.o.CertFile)
}

func info(cert *x509.Certificate, pemBytes []byte, version int, file string) Info {
	fp := sha256.Sum256(cert.Raw)
	i := Info{Subject: cert.Subject.CommonName, SHA256: hex.EncodeToString(fp[:]), NotBefore: cert.NotBefore.UTC(),
		NotAfter: cert.NotAfter.UTC(), KeyVersion: version, CertFile: file, PEM: string(pemBytes)}
	i.Constraints = append(i.Constraints, cert.PermittedDNSDomains...)
	for _, r := range cert.PermittedIPRanges {
		i.Constraints = append(i.Constraints, r.IP.String())
	}
	return i
}

// PEM returns the CA certificate in PEM form.
func (ca *CA) PEM() []byte {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	return bytes.Clone(ca.pem)
}

// Pool returns a certificate pool holding only the CA certificate.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	ca.mu.RLock()
	p.AddCert(ca.cert)
	ca.mu.RUnlock()
	return p
}

// Covers reports whether the CA may certify name (always, without name
// constraints). name must be normalized (NormalizeName).
func (ca *CA) Covers(name string) bool {
	ca.mu.RLock()
	cert := ca.cert
	ca.mu.RUnlock()
	return covers(cert, name)
}

func covers(cert *x509.Certificate, name string) bool {
	if !cert.PermittedDNSDomainsCritical && len(cert.PermittedDNSDomains) == 0 && len(cert.PermittedIPRanges) == 0 {
		return true
	}
	if a, err := netip.ParseAddr(name); err == nil {
		for _, r := range cert.PermittedIPRanges {
			if r.Contains(a.AsSlice()) {
				return true
			}
		}
		return false
	}
	for _, d := range cert.PermittedDNSDomains {
		if name == d || strings.HasSuffix(name, "."+d) {
			return true
		}
	}
	return false
}

// Leaf returns a server certificate for names (DNS names or IP
// addresses), issued on first use and cached until two thirds of its
// lifetime have passed. Concurrent callers for the same names share one
// issuance. It fails with ErrInvalidName, ErrNotCovered or ErrExpired.
func (ca *CA) Leaf(ctx context.Context, names ...string) (*tls.Certificate, error) {
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: no name", ErrInvalidName)
	}
	norm := make([]string, 0, len(names))
	for _, n := range names {
		nn, err := NormalizeName(n)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(norm, nn) {
			norm = append(norm, nn)
		}
	}
	slices.Sort(norm)
	key := strings.Join(norm, ",")
	now := ca.o.Now()

	ca.mu.Lock()
	if l := ca.leaves[key]; l != nil && now.Before(l.renewAt) {
		ca.mu.Unlock()
		return l.cert, nil
	}
	if f := ca.flights[key]; f != nil {
		ca.mu.Unlock()
		select {
		case <-f.done:
			return f.cert, f.err
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f := &flight{done: make(chan struct{})}
	ca.flights[key] = f
	cert := ca.cert
	ca.mu.Unlock()

	f.cert, f.err = ca.issue(context.WithoutCancel(ctx), cert, norm, now)
	ca.mu.Lock()
	delete(ca.flights, key)
	if f.err == nil && ca.cert == cert {
		if len(ca.leaves) >= maxLeaves {
			for k, l := range ca.leaves {
				if !now.Before(l.expires) || len(ca.leaves) >= maxLeaves {
					delete(ca.leaves, k)
				}
			}
		}
		ttl := f.cert.Leaf.NotAfter.Sub(now)
		ca.leaves[key] = &leaf{cert: f.cert, renewAt: now.Add(ttl * 2 / 3), expires: f.cert.Leaf.NotAfter}
	}
	ca.mu.Unlock()
	close(f.done)
	return f.cert, f.err
}

// issue signs a new leaf for names with the CA key, opened from the vault
// only for this signature.
func (ca *CA) issue(ctx context.Context, caCert *x509.Certificate, names []string, now time.Time) (*tls.Certificate, error) {
	if now.Before(caCert.NotBefore) || !now.Before(caCert.NotAfter) {
		return nil, ErrExpired
	}
	// No subject: the names are in the SAN extension (then critical).
	// A common name would be checked as a DNS name by OpenSSL (Node,
	// Python) against the name constraints, and an IP there violates a
	// constraint that excludes every DNS name.
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(ca.o.LeafTTL),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	if tmpl.NotAfter.After(caCert.NotAfter) {
		tmpl.NotAfter = caCert.NotAfter
	}
	for _, n := range names {
		if !covers(caCert, n) {
			return nil, fmt.Errorf("%w: %s", ErrNotCovered, n)
		}
		if a, err := netip.ParseAddr(n); err == nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, a.AsSlice())
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("localca: leaf key: %w", err)
	}
	var der []byte
	err = ca.o.Vault.WithCredential(ctx, CredentialName, func(c *vault.Credential) error {
		key, err := openKey(c)
		if err != nil {
			return err
		}
		if !key.PublicKey.Equal(caCert.PublicKey) {
			return ErrMismatch
		}
		der, err = x509.CreateCertificate(rand.Reader, tmpl, caCert, &leafKey.PublicKey, key)
		if err != nil {
			return fmt.Errorf("localca: sign leaf: %w", err)
		}
		return nil
	})
	switch {
	case errors.Is(err, vault.ErrNotFound), errors.Is(err, vault.ErrRevoked):
		return nil, ErrNoCA
	case err != nil:
		return nil, err
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("localca: parse leaf: %w", err)
	}
	ca.o.Logger.Debug("localca: issued a leaf certificate", "names", names, "not_after", parsed.NotAfter)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: leafKey, Leaf: parsed}, nil
}
