package secretref

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/vault"
)

// Scheme is the kind of store a reference points into.
type Scheme string

// Schemes understood by Parse.
const (
	SchemeEnv     Scheme = "env"     // env:VAR
	SchemeFile    Scheme = "file"    // file:PATH
	SchemeDotenv  Scheme = "dotenv"  // dotenv:PATH#KEY
	SchemeKeyring Scheme = "keyring" // keyring:SERVICE/USER
	SchemeVault   Scheme = "vault"   // vault:CREDENTIAL#FIELD
)

// Errors callers branch on.
var (
	// ErrSyntax marks a reference that does not parse.
	ErrSyntax = errors.New("secretref: malformed reference")
	// ErrNotFound marks a well-formed reference whose secret is absent.
	ErrNotFound = errors.New("secretref: secret not found")
	// ErrUnavailable marks a scheme the Resolver was not given a reader for.
	ErrUnavailable = errors.New("secretref: scheme not available here")
	// ErrEmpty marks a secret that resolved to zero bytes.
	ErrEmpty = errors.New("secretref: secret is empty")
)

// MaxRefLen bounds the length of a reference.
const MaxRefLen = 4096

// MaxFileSize bounds the files read by the file and dotenv schemes.
const MaxFileSize = 1 << 20

// Ref is a parsed reference. Target is the variable name, file path,
// keyring service or credential name; Key is the dotenv key, keyring user
// or credential field (empty for env and file).
type Ref struct {
	Scheme Scheme
	Target string
	Key    string
}

// String returns the reference in the form Parse accepts: Parse(r.String())
// gives back r for every r that Parse returned.
func (r Ref) String() string {
	switch r.Scheme {
	case SchemeDotenv, SchemeVault:
		return string(r.Scheme) + ":" + r.Target + "#" + r.Key
	case SchemeKeyring:
		return string(r.Scheme) + ":" + r.Target + "/" + r.Key
	default:
		return string(r.Scheme) + ":" + r.Target
	}
}

// Parse parses a reference. It never reads anything: a reference that
// parses may still fail to resolve.
func Parse(s string) (Ref, error) {
	if len(s) > MaxRefLen {
		return Ref{}, fmt.Errorf("%w: longer than %d bytes", ErrSyntax, MaxRefLen)
	}
	scheme, rest, ok := strings.Cut(s, ":")
	if !ok {
		return Ref{}, fmt.Errorf("%w: want SCHEME:..., one of env, file, dotenv, keyring, vault", ErrSyntax)
	}
	if strings.ContainsRune(rest, 0) {
		return Ref{}, fmt.Errorf("%w: NUL byte", ErrSyntax)
	}
	r := Ref{Scheme: Scheme(scheme)}
	switch r.Scheme {
	case SchemeEnv:
		if !EnvName(rest) {
			return Ref{}, fmt.Errorf("%w: env:VAR wants a variable name [A-Za-z_][A-Za-z0-9_]*", ErrSyntax)
		}
		r.Target = rest
	case SchemeFile:
		if rest == "" {
			return Ref{}, fmt.Errorf("%w: file:PATH wants a path", ErrSyntax)
		}
		r.Target = rest
	case SchemeDotenv:
		i := strings.LastIndexByte(rest, '#')
		if i <= 0 || !EnvName(rest[i+1:]) {
			return Ref{}, fmt.Errorf("%w: dotenv:PATH#KEY wants a path and a key name", ErrSyntax)
		}
		r.Target, r.Key = rest[:i], rest[i+1:]
	case SchemeKeyring:
		svc, user, ok := strings.Cut(rest, "/")
		if !ok || svc == "" || user == "" {
			return Ref{}, fmt.Errorf("%w: keyring:SERVICE/USER wants both", ErrSyntax)
		}
		r.Target, r.Key = svc, user
	case SchemeVault:
		name, field, ok := strings.Cut(rest, "#")
		if !ok || !vault.ValidName(name) || !vault.ValidField(field) {
			return Ref{}, fmt.Errorf("%w: vault:CREDENTIAL#FIELD wants a credential name and a field name", ErrSyntax)
		}
		r.Target, r.Key = name, field
	default:
		return Ref{}, fmt.Errorf("%w: unknown scheme %q (want env, file, dotenv, keyring or vault)", ErrSyntax, truncate(scheme))
	}
	return r, nil
}

func truncate(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// EnvName reports whether s is a portable environment variable name.
func EnvName(s string) bool {
	if s == "" || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// Keyring reads the OS keyring (masterkey.Keyring satisfies it).
type Keyring interface {
	Get(service, user string) (string, error)
}

// Vault opens credentials (*vault.Vault satisfies it).
type Vault interface {
	WithCredential(ctx context.Context, name string, fn func(*vault.Credential) error) error
}

// Resolver resolves references. The zero Resolver resolves env, file and
// dotenv references against the process; keyring and vault references
// need their reader.
type Resolver struct {
	// Getenv reads the environment. If nil, os.Getenv.
	Getenv func(string) string
	// ReadFile reads a file. If nil, os.ReadFile bounded to MaxFileSize.
	ReadFile func(string) ([]byte, error)
	// Keyring is the OS keyring. If nil, keyring references are unavailable.
	Keyring Keyring
	// Vault is the opened vault. If nil, vault references are unavailable.
	Vault Vault
}

// Resolve returns the secret r points to. The caller owns the value and
// should Wipe it when done. Errors name the reference, never the value.
func (rv *Resolver) Resolve(ctx context.Context, r Ref) (secret.Value, error) {
	v, err := rv.resolve(ctx, r)
	if err != nil {
		return secret.Value{}, fmt.Errorf("secretref: %s: %w", r, err)
	}
	if v.IsZero() {
		return secret.Value{}, fmt.Errorf("%w: %s", ErrEmpty, r)
	}
	return v, nil
}

func (rv *Resolver) resolve(ctx context.Context, r Ref) (secret.Value, error) {
	switch r.Scheme {
	case SchemeEnv:
		getenv := rv.Getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		s := getenv(r.Target)
		if s == "" {
			return secret.Value{}, ErrNotFound
		}
		return secret.FromString(s), nil
	case SchemeFile:
		b, err := rv.readFile(r.Target)
		if err != nil {
			return secret.Value{}, err
		}
		return secret.New(trimNewline(b)), nil
	case SchemeDotenv:
		b, err := rv.readFile(r.Target)
		if err != nil {
			return secret.Value{}, err
		}
		defer secret.Wipe(b)
		v, ok := LookupDotenv(b, r.Key)
		if !ok {
			return secret.Value{}, ErrNotFound
		}
		return v, nil
	case SchemeKeyring:
		if rv.Keyring == nil {
			return secret.Value{}, ErrUnavailable
		}
		s, err := rv.Keyring.Get(r.Target, r.Key)
		if err != nil {
			// Keyring errors come from a third-party backend: keep only
			// the fact, not its text.
			return secret.Value{}, ErrNotFound
		}
		return secret.FromString(s), nil
	case SchemeVault:
		if rv.Vault == nil {
			return secret.Value{}, ErrUnavailable
		}
		var out secret.Value
		err := rv.Vault.WithCredential(ctx, r.Target, func(c *vault.Credential) error {
			f, err := c.Field(r.Key)
			if err != nil {
				return ErrNotFound
			}
			out = f.Clone()
			return nil
		})
		return out, err
	default:
		return secret.Value{}, ErrSyntax
	}
}

func (rv *Resolver) readFile(path string) ([]byte, error) {
	var b []byte
	var err error
	if rv.ReadFile != nil {
		b, err = rv.ReadFile(path)
	} else {
		b, err = readBounded(path)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		// The OS error names the path, which the reference already shows.
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("read: %w", err)
	}
	return b, nil
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path) // #nosec G304 -- the operator names the file in the reference
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, &fs.PathError{Op: "read", Path: path, Err: errors.New("not a regular file")}
	}
	if st.Size() > MaxFileSize {
		return nil, &fs.PathError{Op: "read", Path: path, Err: fmt.Errorf("larger than %d bytes", MaxFileSize)}
	}
	buf := make([]byte, st.Size())
	if _, err := io.ReadFull(f, buf); err != nil {
		secret.Wipe(buf)
		return nil, err
	}
	return buf, nil
}

// trimNewline drops one trailing "\n" or "\r\n", as editors add one.
func trimNewline(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte("\n"))
	return bytes.TrimSuffix(b, []byte("\r"))
}
