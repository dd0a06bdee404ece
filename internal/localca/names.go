package localca

import (
	"fmt"
	"net/netip"
	"strings"
)

// maxNameLen bounds a DNS name (RFC 1035: 253 characters without the root dot).
const maxNameLen = 253

// NormalizeName returns the canonical form of a certificate name: a DNS
// name in lower case without a trailing dot, or an IP address in its
// canonical text form (IPv4-mapped IPv6 unmapped, brackets removed). It
// refuses wildcards, ports, empty labels and anything that is neither.
func NormalizeName(s string) (string, error) {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
		a, err := netip.ParseAddr(s)
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", fmt.Errorf("%w: %q", ErrInvalidName, s)
		}
		return a.Unmap().String(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		if a.Zone() != "" {
			return "", fmt.Errorf("%w: %q (zoned address)", ErrInvalidName, s)
		}
		return a.Unmap().String(), nil
	}
	n := strings.ToLower(strings.TrimSuffix(s, "."))
	if n == "" || len(n) > maxNameLen {
		return "", fmt.Errorf("%w: %q", ErrInvalidName, s)
	}
	for _, label := range strings.Split(n, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return "", fmt.Errorf("%w: %q", ErrInvalidName, s)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("%w: %q", ErrInvalidName, s)
			}
		}
	}
	// A name made of digits and dots only is an address that did not
	// parse (e.g. 1.2.3 or 999.1.1.1), not a host name.
	if strings.Trim(n, "0123456789.") == "" {
		return "", fmt.Errorf("%w: %q", ErrInvalidName, s)
	}
	return n, nil
}
