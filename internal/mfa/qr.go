package mfa

import (
	"fmt"
	"strings"

	qrcode "github.com/skip2/go-qrcode"
)

// TerminalQR renders content as a QR code for a terminal, two module rows
// per line with the half-block characters ▀ ▄ █ and spaces, quiet zone
// included. By default light modules are drawn (blocks) and dark modules
// left blank, which reads correctly on a dark-background terminal; invert
// draws the dark modules instead, for a light background.
func TerminalQR(content string, invert bool) (string, error) {
	q, err := qrcode.New(content, qrcode.Medium)
	if err != nil {
		return "", fmt.Errorf("mfa: qr code: %w", err)
	}
	return renderHalfBlocks(q.Bitmap(), invert), nil
}

// renderHalfBlocks draws bitmap[y][x] (true = dark module).
func renderHalfBlocks(bm [][]bool, invert bool) string {
	ink := func(y, x int) bool {
		if y >= len(bm) || x >= len(bm[y]) {
			return false // below the last row: the terminal's background
		}
		return bm[y][x] == invert
	}
	var b strings.Builder
	for y := 0; y < len(bm); y += 2 {
		for x := range bm[y] {
			switch top, bottom := ink(y, x), ink(y+1, x); {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteByte(' ')
			}
		}
		b.WriteByte('\n')
	}
	return b.String()
}
