package masterkey

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"golang.org/x/crypto/argon2"

	"github.com/keystile/keystile/internal/secret"
)

// KeySize is the root key size in bytes.
const KeySize = 32

// Environment variables read by the sources.
const (
	EnvMasterKey      = "KEYSTILE_MASTER_KEY"
	EnvPassphraseFile = "KEYSTILE_PASSPHRASE_FILE" // #nosec G101 -- a variable name
)

// Source names.
const (
	SourceFile       = "file"
	SourcePassphrase = "passphrase"
	SourceKeyring    = "keyring"
	SourceEnv        = "env"
)

// Sources lists the valid source names.
var Sources = []string{SourceFile, SourcePassphrase, SourceKeyring, SourceEnv}

// MinPassphraseLen is the shortest passphrase accepted at init.
const MinPassphraseLen = 12

// Errors callers branch on.
var (
	ErrUnknownSource      = errors.New("masterkey: unknown source (want file, passphrase, keyring or env)")
	ErrKeyFileMissing     = errors.New("masterkey: key file missing")
	ErrKeyFileExists      = errors.New("masterkey: key file already exists; refusing to overwrite it")
	ErrKeyFileMode        = errors.New("masterkey: key file is accessible by group or others; run chmod 600 on it")
	ErrBadKey             = errors.New("masterkey: key is not base64 of 32 bytes")
	ErrEnvUnset           = errors.New("masterkey: " + EnvMasterKey + " is not set (base64 of 32 random bytes, e.g. `head -c32 /dev/urandom | base64`)")
	ErrNoPassphrase       = errors.New("masterkey: no passphrase: no terminal to prompt on and " + EnvPassphraseFile + " not set")
	ErrPassphraseShort    = fmt.Errorf("masterkey: passphrase shorter than %d characters", MinPassphraseLen)
	ErrPassphraseMismatch = errors.New("masterkey: passphrases do not match")
	ErrKeyringUnavailable = errors.New("masterkey: OS keyring unavailable (no Secret Service / D-Bus session on this machine); use --master-key passphrase, env or file")
	ErrKeyringMissing     = errors.New("masterkey: no keystile master key in the OS keyring")
)

// Keyring is the OS keyring as the keyring source needs it.
type Keyring interface {
	Get(service, user string) (string, error)
	Set(service, user, value string) error
}

// KDFParams are the Argon2id parameters of a passphrase-derived key.
type KDFParams struct {
	Alg       string `json:"alg"` // "argon2id"
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
	Salt      []byte `json:"salt"`
}

// DefaultKDF is the cost used for new passphrase vaults: 3 passes over
// 64 MiB (RFC 9106's second recommended option), 4 lanes.
var DefaultKDF = KDFParams{Alg: "argon2id", Time: 3, MemoryKiB: 64 << 10, Threads: 4}

// Params records how a vault's root key is obtained. It is stored with the
// vault and holds nothing secret.
type Params struct {
	Source         string     `json:"source"`
	KeyFile        string     `json:"key_file,omitempty"`
	KDF            *KDFParams `json:"kdf,omitempty"`
	KeyringService string     `json:"keyring_service,omitempty"`
	KeyringUser    string     `json:"keyring_user,omitempty"`
}

// Options say where the sources look.
type Options struct {
	// Source is one of Sources. Required for Create; Load uses Params.
	Source string
	// KeyFile is the key file path. Required for the file source.
	KeyFile string
	// PassphraseFile holds the passphrase; if empty, $KEYSTILE_PASSPHRASE_FILE,
	// then the prompt.
	PassphraseFile string
	// Getenv reads the environment. If nil, os.Getenv.
	Getenv func(string) string
	// Prompt reads a line without echo. If nil, there is no terminal.
	Prompt func(prompt string) ([]byte, error)
	// Keyring is the OS keyring. If nil, the keyring source is unavailable.
	Keyring Keyring
	// KeyringService and KeyringUser name the keyring entry. If empty,
	// "keystile" and "master-key".
	KeyringService, KeyringUser string
	// KDF overrides DefaultKDF for new passphrase vaults (tests use a
	// cheap one). Salt is always generated.
	KDF *KDFParams
}

func (o *Options) getenv(k string) string {
	if o.Getenv != nil {
		return o.Getenv(k)
	}
	return os.Getenv(k)
}

// Create makes a new root key for init and returns it with the Params to
// store. The file source refuses to overwrite an existing key file.
func Create(ctx context.Context, o Options) (secret.Value, Params, error) {
	switch o.Source {
	case SourceFile:
		if o.KeyFile == "" {
			return secret.Value{}, Params{}, errors.New("masterkey: no key file path")
		}
		k, err := randomKey()
		if err != nil {
			return secret.Value{}, Params{}, err
		}
		if err := writeKeyFile(o.KeyFile, k); err != nil {
			k.Wipe()
			return secret.Value{}, Params{}, err
		}
		return k, Params{Source: SourceFile, KeyFile: o.KeyFile}, nil
	case SourceEnv:
		k, err := loadEnv(&o)
		return k, Params{Source: SourceEnv}, err
	case SourceKeyring:
		if o.Keyring == nil {
			return secret.Value{}, Params{}, ErrKeyringUnavailable
		}
		svc, user := keyringNames(o.KeyringService, o.KeyringUser)
		if _, err := o.Keyring.Get(svc, user); err == nil {
			return secret.Value{}, Params{}, fmt.Errorf("masterkey: the OS keyring already holds %s/%s; refusing to overwrite it", svc, user)
		}
		k, err := randomKey()
		if err != nil {
			return secret.Value{}, Params{}, err
		}
		if err := o.Keyring.Set(svc, user, base64.StdEncoding.EncodeToString(k.Reveal())); err != nil {
			k.Wipe()
			return secret.Value{}, Params{}, fmt.Errorf("%w: %v", ErrKeyringUnavailable, err)
		}
		return k, Params{Source: SourceKeyring, KeyringService: svc, KeyringUser: user}, nil
	case SourcePassphrase:
		pass, err := readPassphrase(&o, true)
		if err != nil {
			return secret.Value{}, Params{}, err
		}
		defer pass.Wipe()
		if len([]rune(string(pass.Reveal()))) < MinPassphraseLen {
			return secret.Value{}, Params{}, ErrPassphraseShort
		}
		kdf := DefaultKDF
		if o.KDF != nil {
			kdf = *o.KDF
		}
		kdf.Alg = "argon2id"
		kdf.Salt = make([]byte, 16)
		if _, err := rand.Read(kdf.Salt); err != nil {
			return secret.Value{}, Params{}, fmt.Errorf("masterkey: salt: %w", err)
		}
		k, err := derive(pass, kdf)
		return k, Params{Source: SourcePassphrase, KDF: &kdf}, err
	default:
		return secret.Value{}, Params{}, ErrUnknownSource
	}
}

// Load obtains the root key described by p.
func Load(ctx context.Context, o Options, p Params) (secret.Value, error) {
	switch p.Source {
	case SourceFile:
		path := o.KeyFile
		if path == "" {
			path = p.KeyFile
		}
		return readKeyFile(path)
	case SourceEnv:
		return loadEnv(&o)
	case SourceKeyring:
		if o.Keyring == nil {
			return secret.Value{}, ErrKeyringUnavailable
		}
		v, err := o.Keyring.Get(p.KeyringService, p.KeyringUser)
		if err != nil {
			if errors.Is(err, ErrKeyringMissing) || errors.Is(err, ErrKeyringUnavailable) {
				return secret.Value{}, err
			}
			return secret.Value{}, fmt.Errorf("%w: %v", ErrKeyringUnavailable, err)
		}
		return decodeKey([]byte(v))
	case SourcePassphrase:
		if p.KDF == nil || p.KDF.Alg != "argon2id" || len(p.KDF.Salt) < 16 || p.KDF.Time == 0 || p.KDF.MemoryKiB < 8 || p.KDF.Threads == 0 {
			return secret.Value{}, errors.New("masterkey: stored passphrase parameters are invalid")
		}
		pass, err := readPassphrase(&o, false)
		if err != nil {
			return secret.Value{}, err
		}
		defer pass.Wipe()
		return derive(pass, *p.KDF)
	default:
		return secret.Value{}, ErrUnknownSource
	}
}

func keyringNames(svc, user string) (string, string) {
	if svc == "" {
		svc = "keystile"
	}
	if user == "" {
		user = "master-key"
	}
	return svc, user
}

func randomKey() (secret.Value, error) {
	b := make([]byte, KeySize)
	if _, err := rand.Read(b); err != nil {
		return secret.Value{}, fmt.Errorf("masterkey: random: %w", err)
	}
	return secret.New(b), nil
}

func derive(pass secret.Value, p KDFParams) (secret.Value, error) {
	k := argon2.IDKey(pass.Reveal(), p.Salt, p.Time, p.MemoryKiB, p.Threads, KeySize)
	return secret.New(k), nil
}

func decodeKey(b []byte) (secret.Value, error) {
	b = bytes.TrimSpace(b)
	out := make([]byte, base64.StdEncoding.DecodedLen(len(b)))
	n, err := base64.StdEncoding.Decode(out, b)
	if err != nil || n != KeySize {
		secret.Wipe(out)
		return secret.Value{}, ErrBadKey
	}
	return secret.New(out[:n]), nil
}

func loadEnv(o *Options) (secret.Value, error) {
	v := o.getenv(EnvMasterKey)
	if v == "" {
		return secret.Value{}, ErrEnvUnset
	}
	k, err := decodeKey([]byte(v))
	if err != nil {
		return secret.Value{}, fmt.Errorf("%w: %s", ErrBadKey, EnvMasterKey)
	}
	return k, nil
}

func writeKeyFile(path string, k secret.Value) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("masterkey: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- operator-chosen path
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s", ErrKeyFileExists, path)
	}
	if err != nil {
		return fmt.Errorf("masterkey: create key file: %w", err)
	}
	enc := []byte(base64.StdEncoding.EncodeToString(k.Reveal()) + "\n")
	defer secret.Wipe(enc)
	if _, err := f.Write(enc); err != nil {
		_ = f.Close()
		return fmt.Errorf("masterkey: write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return fmt.Errorf("masterkey: write key file: %w", err)
	}
	return f.Close()
}

func readKeyFile(path string) (secret.Value, error) {
	if path == "" {
		return secret.Value{}, errors.New("masterkey: no key file path")
	}
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return secret.Value{}, fmt.Errorf("%w: %s", ErrKeyFileMissing, path)
	}
	if err != nil {
		return secret.Value{}, fmt.Errorf("masterkey: key file: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return secret.Value{}, fmt.Errorf("%w: %s (mode %04o)", ErrKeyFileMode, path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path) // #nosec G304 -- operator-chosen path
	if err != nil {
		return secret.Value{}, fmt.Errorf("masterkey: key file: %w", err)
	}
	defer secret.Wipe(b)
	k, err := decodeKey(b)
	if err != nil {
		return secret.Value{}, fmt.Errorf("masterkey: key file %s: %w", path, err)
	}
	return k, nil
}

func readPassphrase(o *Options, confirm bool) (secret.Value, error) {
	path := o.PassphraseFile
	if path == "" {
		path = o.getenv(EnvPassphraseFile)
	}
	if path != "" {
		b, err := os.ReadFile(path) // #nosec G304 -- operator-chosen path
		if err != nil {
			return secret.Value{}, fmt.Errorf("masterkey: passphrase file: %w", err)
		}
		p := bytes.TrimRight(b, "\r\n")
		out := secret.New(append([]byte(nil), p...))
		secret.Wipe(b)
		if out.IsZero() {
			return secret.Value{}, errors.New("masterkey: passphrase file is empty")
		}
		return out, nil
	}
	if o.Prompt == nil {
		return secret.Value{}, ErrNoPassphrase
	}
	p1, err := o.Prompt("Master passphrase: ")
	if err != nil {
		return secret.Value{}, fmt.Errorf("masterkey: prompt: %w", err)
	}
	if !confirm {
		return secret.New(p1), nil
	}
	p2, err := o.Prompt("Repeat passphrase: ")
	if err != nil {
		secret.Wipe(p1)
		return secret.Value{}, fmt.Errorf("masterkey: prompt: %w", err)
	}
	defer secret.Wipe(p2)
	if !bytes.Equal(p1, p2) {
		secret.Wipe(p1)
		return secret.Value{}, ErrPassphraseMismatch
	}
	return secret.New(p1), nil
}
