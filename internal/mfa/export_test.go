package mfa

import (
	qrcode "github.com/skip2/go-qrcode"

	"github.com/keystile/keystile/internal/secret"
)

// DecodeSecretForTest returns a TOTP secret's raw bytes.
func DecodeSecretForTest(s secret.Value) ([]byte, error) {
	enc := b32()
	raw := make([]byte, enc.DecodedLen(s.Len()))
	n, err := enc.Decode(raw, s.Reveal())
	return raw[:n], err
}

// QRBitmapForTest returns the module bitmap TerminalQR draws.
func QRBitmapForTest(content string) [][]bool {
	q, err := qrcode.New(content, qrcode.Medium)
	if err != nil {
		panic(err)
	}
	return q.Bitmap()
}
