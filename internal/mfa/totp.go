package mfa

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"

	"github.com/keystile/keystile/internal/secret"
)

// TOTP parameters: the ones every authenticator app supports (RFC 6238
// defaults: HMAC-SHA1, 30-second steps from the Unix epoch, 6 digits).
const (
	Period = 30 * time.Second
	// Skew is how many steps before and after now a code is accepted for.
	Skew = 1
)

func hotpOpts() hotp.ValidateOpts {
	return hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}
}

// Step is the TOTP time step of t: floor(Unix time / 30 s).
func Step(t time.Time) int64 {
	sec, p := t.Unix(), int64(Period/time.Second)
	s := sec / p
	if sec%p < 0 {
		s--
	}
	return s
}

// CodeAt returns the TOTP code of secret (base32) at time t. keystile never
// needs it to verify; authenticator-side tools and tests do.
func CodeAt(secretB32 secret.Value, t time.Time) (string, error) {
	s := Step(t)
	if s < 0 {
		return "", errors.New("mfa: time before the Unix epoch")
	}
	c, err := hotp.GenerateCodeCustom(string(secretB32.Reveal()), uint64(s), hotpOpts())
	if err != nil {
		return "", fmt.Errorf("mfa: totp: %w", err)
	}
	return c, nil
}

// matchStep returns the step in [Step(now)-Skew, Step(now)+Skew] whose code
// is code, comparing every candidate in constant time.
func matchStep(secretB32 []byte, code Code, now time.Time) (int64, bool, error) {
	cur := Step(now)
	var found int64
	ok := 0
	for s := cur - Skew; s <= cur+Skew; s++ {
		if s < 0 {
			continue
		}
		want, err := hotp.GenerateCodeCustom(string(secretB32), uint64(s), hotpOpts())
		if err != nil {
			return 0, false, fmt.Errorf("mfa: totp: %w", err)
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code.v)) == 1 {
			found, ok = s, 1
		}
	}
	return found, ok == 1, nil
}

// KeyURI is the otpauth:// URI an authenticator app reads from the QR
// code (Key URI Format: issuer, account, secret, SHA1, 6 digits, 30 s). It
// contains the secret: show it to the person enrolling only.
func KeyURI(issuer, account string, secretB32 secret.Value) (string, error) {
	enc := b32()
	raw := make([]byte, enc.DecodedLen(secretB32.Len()))
	defer clear(raw)
	n, err := enc.Decode(raw, secretB32.Reveal())
	if err != nil {
		return "", fmt.Errorf("%w: the TOTP secret is not base32", ErrInvalidInput)
	}
	k, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: account, Secret: raw[:n],
		Period: uint(Period / time.Second), Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return "", fmt.Errorf("mfa: key uri: %w", err)
	}
	return k.URL(), nil
}
