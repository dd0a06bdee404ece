package sign

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"net/url"
	"testing"
)

// refHMAC is an independent reference computation for the HMAC tests.
func refHMAC(t *testing.T, alg, enc, key, msg string) string {
	t.Helper()
	var hf func() hash.Hash
	switch alg {
	case "", "sha256":
		hf = sha256.New
	case "sha384":
		hf = sha512.New384
	case "sha512":
		hf = sha512.New
	}
	m := hmac.New(hf, []byte(key))
	m.Write([]byte(msg))
	sum := m.Sum(nil)
	switch enc {
	case "base64":
		return base64.StdEncoding.EncodeToString(sum)
	case "base64url":
		return base64.RawURLEncoding.EncodeToString(sum)
	}
	return hex.EncodeToString(sum)
}

func setPath(u *url.URL, escaped string) error {
	p, err := url.PathUnescape(escaped)
	if err != nil {
		return err
	}
	u.Path, u.RawPath = p, escaped
	return nil
}
