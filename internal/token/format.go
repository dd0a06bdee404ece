package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/bits"

	"github.com/keystile/keystile/internal/secret"
)

// Token string layout: prefix, 43 base62 characters encoding 32 random bytes
// (left-padded with '0'), 6 base62 characters encoding the CRC-32 (IEEE) of
// those 43 characters.
const (
	// PrefixLive starts a token bound to venues' live endpoints.
	PrefixLive = "kst_live_"
	// PrefixTest starts a token bound to venues' test/demo endpoints.
	PrefixTest = "kst_test_"

	randomBytes = 32
	bodyLen     = 43 // ceil(256 / log2(62))
	sumLen      = 6  // ceil(32 / log2(62))
	prefixLen   = len(PrefixLive)
	// Len is the length in bytes of every well-formed token.
	Len = prefixLen + bodyLen + sumLen

	alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	// maxBody is the base62 encoding of 2^256-1. The alphabet is in ASCII
	// order and the width is fixed, so a body encodes a 256-bit number
	// exactly when it is lexicographically <= maxBody.
	maxBody = "yhjskwdA6OZ1AL1YmHWZWm8LLG7HjnuCA2j5rOw8Xp1"
)

// Parsed is what Parse learns from a token string without any lookup. It
// holds nothing secret.
type Parsed struct {
	// Test is true for kst_test_ tokens, false for kst_live_ ones.
	Test bool
}

// Prefix returns the token's prefix (PrefixLive or PrefixTest).
func (p Parsed) Prefix() string {
	if p.Test {
		return PrefixTest
	}
	return PrefixLive
}

// Parse checks the prefix, length, character set, range and checksum of a
// token string, offline. It is what the leak scanner uses to recognise a
// keystile token; success says nothing about whether the token was ever
// issued or is still valid. Errors wrap ErrMalformed and never contain s.
func Parse(s string) (Parsed, error) {
	var buf [Len]byte
	test, ok := parse(s, &buf)
	if !ok {
		return Parsed{}, ErrMalformed
	}
	return Parsed{Test: test}, nil
}

// LooksValid reports whether Parse accepts s.
func LooksValid(s string) bool {
	var buf [Len]byte
	_, ok := parse(s, &buf)
	return ok
}

// Digest is the SHA-256 of the whole token string: the only form of a token
// that keystile stores.
func Digest(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// parse is the check behind Parse and Verify. buf receives a copy of s so
// that checksumming and hashing need no allocation.
func parse(s string, buf *[Len]byte) (test, ok bool) {
	if len(s) != Len {
		return false, false
	}
	copy(buf[:], s)
	switch s[:prefixLen] {
	case PrefixLive:
	case PrefixTest:
		test = true
	default:
		return false, false
	}
	body := s[prefixLen : prefixLen+bodyLen]
	for i := 0; i < len(body); i++ {
		if digit(body[i]) < 0 {
			return false, false
		}
	}
	if body > maxBody {
		return false, false
	}
	var sum uint64
	for i := prefixLen + bodyLen; i < len(s); i++ {
		d := digit(s[i])
		if d < 0 {
			return false, false
		}
		sum = sum*62 + uint64(d)
	}
	return test, sum == uint64(crcIEEE(buf[prefixLen:prefixLen+bodyLen]))
}

// crcIEEE is crc32.ChecksumIEEE written as a plain table loop: the
// standard function dispatches through a function value, which makes its
// argument escape and would cost Verify an allocation.
func crcIEEE(p []byte) uint32 {
	tab := crc32.IEEETable
	crc := ^uint32(0)
	for _, b := range p {
		crc = tab[(crc^uint32(b))&0xff] ^ crc>>8
	}
	return ^crc
}

// digit returns the base62 value of c, or -1.
func digit(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'A' && c <= 'Z':
		return int(c-'A') + 10
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 36
	}
	return -1
}

// encodeBody writes the fixed-width base62 encoding of the 256-bit
// big-endian number b into dst (len bodyLen).
func encodeBody(dst []byte, b *[randomBytes]byte) {
	var limbs [4]uint64
	for i := range limbs {
		limbs[i] = binary.BigEndian.Uint64(b[i*8:])
	}
	for i := bodyLen - 1; i >= 0; i-- {
		var rem uint64
		for j := range limbs {
			limbs[j], rem = bits.Div64(rem, limbs[j], 62)
		}
		dst[i] = alphabet[rem]
	}
	clear(limbs[:])
}

// decodeBody is the inverse of encodeBody; ok is false on a bad character
// or a value above 2^256-1.
func decodeBody(body string) (b [randomBytes]byte, ok bool) {
	if len(body) != bodyLen {
		return b, false
	}
	var limbs [4]uint64
	for i := 0; i < len(body); i++ {
		d := digit(body[i])
		if d < 0 {
			return b, false
		}
		carry := uint64(d)
		for j := len(limbs) - 1; j >= 0; j-- {
			hi, lo := bits.Mul64(limbs[j], 62)
			var c uint64
			limbs[j], c = bits.Add64(lo, carry, 0)
			carry = hi + c
		}
		if carry != 0 {
			return b, false
		}
	}
	for i, l := range limbs {
		binary.BigEndian.PutUint64(b[i*8:], l)
	}
	return b, true
}

// encodeSum writes the fixed-width base62 encoding of sum into dst (len sumLen).
func encodeSum(dst []byte, sum uint32) {
	v := uint64(sum)
	for i := sumLen - 1; i >= 0; i-- {
		dst[i] = alphabet[v%62]
		v /= 62
	}
}

// mint returns a new random token of the given kind, as a secret, with its
// digest. The token never exists as a Go string here.
func mint(test bool) (secret.Value, [32]byte, error) {
	var rnd [randomBytes]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return secret.Value{}, [32]byte{}, fmt.Errorf("token: read random: %w", err)
	}
	buf := make([]byte, Len)
	if test {
		copy(buf, PrefixTest)
	} else {
		copy(buf, PrefixLive)
	}
	body := buf[prefixLen : prefixLen+bodyLen]
	encodeBody(body, &rnd)
	clear(rnd[:])
	encodeSum(buf[prefixLen+bodyLen:], crc32.ChecksumIEEE(body))
	return secret.New(buf), sha256.Sum256(buf), nil
}
