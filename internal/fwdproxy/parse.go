package fwdproxy

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/keystile/keystile/internal/localca"
)

// Parse errors.
var (
	// ErrNoCredentials: the CONNECT carries no Proxy-Authorization.
	ErrNoCredentials = errors.New("fwdproxy: no Proxy-Authorization")
	// ErrBadCredentials: Proxy-Authorization is not Basic or Bearer with a
	// kst_ token.
	ErrBadCredentials = errors.New("fwdproxy: Proxy-Authorization holds no keystile token")
	// ErrBadAuthority: the CONNECT target is not host:port.
	ErrBadAuthority = errors.New("fwdproxy: CONNECT target is not host:port")
)

// maxAuthorization bounds the Proxy-Authorization value parsed.
const maxAuthorization = 1024

// ParseProxyAuthorization returns the kst_ token of a Proxy-Authorization
// value: "Basic base64(user:token)" (what clients send for
// HTTPS_PROXY=http://keystile:kst_...@host:port: the token as the
// password, with any user name), "Basic base64(token:)" (the token as
// the user, which Go and httpx send for http://kst_...@host:port; Python's
// requests sends nothing for such a URL) or "Bearer token". The scheme is
// case-insensitive. It checks only the shape: the token itself is
// verified by the caller.
func ParseProxyAuthorization(v string) (string, error) {
	v = strings.TrimSpace(v)
	if v == "" {
		return "", ErrNoCredentials
	}
	if len(v) > maxAuthorization {
		return "", ErrBadCredentials
	}
	scheme, rest, ok := strings.Cut(v, " ")
	if !ok {
		return "", ErrBadCredentials
	}
	rest = strings.TrimSpace(rest)
	var tok string
	switch {
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.DecodeString(rest)
		if err != nil {
			return "", ErrBadCredentials
		}
		user, pass, ok := strings.Cut(string(raw), ":")
		if !ok {
			return "", ErrBadCredentials
		}
		switch {
		case strings.HasPrefix(user, "kst_"):
			tok = user
		case strings.HasPrefix(pass, "kst_"):
			tok = pass
		default:
			return "", ErrBadCredentials
		}
	case strings.EqualFold(scheme, "Bearer"):
		tok = rest
	default:
		return "", ErrBadCredentials
	}
	// kst_ tokens are letters, digits and underscores only.
	if !strings.HasPrefix(tok, "kst_") || strings.ContainsFunc(tok, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_')
	}) {
		return "", ErrBadCredentials
	}
	return tok, nil
}

// ParseAuthority parses a CONNECT target (RFC 9110 authority-form,
// host:port) into a normalized host (localca.NormalizeName: lower-case DNS
// name or canonical IP, no brackets) and a port in 1..65535. User info,
// paths, a missing or non-decimal port are refused.
func ParseAuthority(s string) (string, uint16, error) {
	if s == "" || strings.ContainsAny(s, "@/?#\\ \t") {
		return "", 0, fmt.Errorf("%w: %q", ErrBadAuthority, s)
	}
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || i == len(s)-1 {
		return "", 0, fmt.Errorf("%w: %q", ErrBadAuthority, s)
	}
	host, port := s[:i], s[i+1:]
	for _, c := range port {
		if c < '0' || c > '9' {
			return "", 0, fmt.Errorf("%w: %q", ErrBadAuthority, s)
		}
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil || p == 0 || len(port) > 5 {
		return "", 0, fmt.Errorf("%w: %q", ErrBadAuthority, s)
	}
	// An IPv6 literal must be bracketed, and nothing else may be.
	if strings.Contains(host, ":") != (strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")) {
		return "", 0, fmt.Errorf("%w: %q", ErrBadAuthority, s)
	}
	n, err := localca.NormalizeName(host)
	if err != nil {
		return "", 0, fmt.Errorf("%w: %q", ErrBadAuthority, s)
	}
	return n, uint16(p), nil
}

// JoinAuthority is the inverse of ParseAuthority for normalized hosts.
func JoinAuthority(host string, port uint16) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]:" + strconv.Itoa(int(port))
	}
	return host + ":" + strconv.Itoa(int(port))
}
