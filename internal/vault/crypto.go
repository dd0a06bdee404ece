package vault

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the size of every symmetric key in the vault.
const KeySize = chacha20poly1305.KeySize

var errOpen = errors.New("message authentication failed")

// seal encrypts plaintext under key with XChaCha20-Poly1305 and a random
// nonce; the result is nonce || ciphertext || tag.
func seal(key, plaintext, ad []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, err
	}
	return aead.Seal(out, out, plaintext, ad), nil
}

// open reverses seal. Any modification of ciphertext or ad fails.
func open(key, sealed, ad []byte) ([]byte, error) {
	aead, err := chacha20poly1305.NewX(key)
	if err != nil {
		return nil, err
	}
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errOpen
	}
	nonce, ct := sealed[:aead.NonceSize()], sealed[aead.NonceSize():]
	pt, err := aead.Open(nil, nonce, ct, ad)
	if err != nil {
		return nil, errOpen
	}
	return pt, nil
}

func newKey() ([]byte, error) {
	k := make([]byte, KeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("vault: random key: %w", err)
	}
	return k, nil
}

// ad builds unambiguous associated data: a purpose label followed by
// length-prefixed parts.
func ad(purpose string, parts ...string) []byte {
	b := make([]byte, 0, 64)
	b = append(b, "keystile/v1/"...)
	b = append(b, purpose...)
	for _, p := range parts {
		b = binary.BigEndian.AppendUint32(b, uint32(len(p))) // #nosec G115 -- names are short
		b = append(b, p...)
	}
	return b
}

func itoa(n int) string { return strconv.Itoa(n) }

func adKEK(version int) []byte { return ad("kek", itoa(version)) }

func adSystem(name string, kekVersion int) []byte { return ad("system", name, itoa(kekVersion)) }

func adDEK(name string, version, kekVersion int) []byte {
	return ad("dek", name, itoa(version), itoa(kekVersion))
}

func adField(name, field string, version int) []byte { return ad("field", name, field, itoa(version)) }

func mac(key, msg []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write(msg)
	return m.Sum(nil)
}

// credentialMAC authenticates the fields of a credential row that an
// attacker with write access to the database could use to roll back or
// revive a credential.
func credentialMAC(key []byte, c CredentialRecord) []byte {
	return mac(key, ad("credential", c.Name, itoa(c.CurrentVersion), c.State, itoa(c.RotationDays),
		strconv.FormatInt(unix(c.CreatedAt), 10), strconv.FormatInt(unix(c.RevokedAt), 10)))
}

// unix is t in Unix seconds, with the zero time as 0 (as stores keep it).
func unix(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}
