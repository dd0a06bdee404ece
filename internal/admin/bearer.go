package admin

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/keystile/keystile/internal/secret"
)

// AdminTokenPrefix starts every admin bearer token of the TCP listener;
// the rest is 32 random bytes in unpadded base64url (43 characters).
const AdminTokenPrefix = "ksa_"

const adminTokenLen = len(AdminTokenPrefix) + 43

// ErrMalformedAdminToken is returned by ParseAdminToken.
var ErrMalformedAdminToken = errors.New("admin: malformed admin token")

// BearerToken is an accepted admin bearer token: only its digest.
type BearerToken struct {
	Name   string
	Digest [32]byte
}

// NewAdminToken makes an admin bearer token and its digest. If r is nil,
// crypto/rand.
func NewAdminToken(r io.Reader) (secret.Value, [32]byte, error) {
	if r == nil {
		r = rand.Reader
	}
	raw := make([]byte, 32)
	defer clear(raw)
	if _, err := io.ReadFull(r, raw); err != nil {
		return secret.Value{}, [32]byte{}, fmt.Errorf("admin: new admin token: %w", err)
	}
	tok := []byte(AdminTokenPrefix + base64.RawURLEncoding.EncodeToString(raw))
	return secret.New(tok), sha256.Sum256(tok), nil
}

// ParseAdminToken checks an admin token's form and returns its digest.
func ParseAdminToken(s string) ([32]byte, error) {
	if len(s) != adminTokenLen || !strings.HasPrefix(s, AdminTokenPrefix) {
		return [32]byte{}, ErrMalformedAdminToken
	}
	raw, err := base64.RawURLEncoding.Strict().DecodeString(s[len(AdminTokenPrefix):])
	if err != nil || len(raw) != 32 {
		return [32]byte{}, ErrMalformedAdminToken
	}
	clear(raw)
	return sha256.Sum256([]byte(s)), nil
}

// bearerFromHeader extracts the token of "Authorization: Bearer ksa_...".
func bearerFromHeader(h string) (string, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(tok), true
}

// matchBearer finds the token with this digest, comparing against every
// configured digest in constant time.
func matchBearer(tokens []BearerToken, d [32]byte) (string, bool) {
	name, found := "", 0
	for _, t := range tokens {
		if subtle.ConstantTimeCompare(t.Digest[:], d[:]) == 1 {
			name, found = t.Name, 1
		}
	}
	return name, found == 1
}
