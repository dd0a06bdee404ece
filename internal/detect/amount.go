package detect

import (
	"math"
	"strconv"
	"strings"
)

// maxCurrency bounds a currency code taken from an event.
const maxCurrency = 16

// ParseAmount reads an audit event's decimal amount: a plain decimal
// ("0.002") or a decimal and a currency code ("60 USDT", as the policy
// engine writes notionals). It returns the value as a float (detection is
// statistical; no money decision is made from it), the upper-cased
// currency ("" when none) and whether s was such an amount. Negative,
// zero, non-finite and exponent forms are refused, as are currencies that
// are not 1-16 letters or digits.
func ParseAmount(s string) (v float64, currency string, ok bool) {
	num, cur, hasCur := strings.Cut(strings.TrimSpace(s), " ")
	if hasCur {
		cur = strings.TrimSpace(cur)
		if cur == "" || len(cur) > maxCurrency {
			return 0, "", false
		}
		for i := 0; i < len(cur); i++ {
			c := cur[i]
			if !(c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
				return 0, "", false
			}
		}
		cur = strings.ToUpper(cur)
	}
	if num == "" || len(num) > 64 {
		return 0, "", false
	}
	dot := false
	for i := 0; i < len(num); i++ {
		c := num[i]
		switch {
		case c >= '0' && c <= '9':
		case c == '.' && !dot:
			dot = true
		default:
			return 0, "", false
		}
	}
	if num == "." {
		return 0, "", false
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || !(f > 0) || math.IsInf(f, 0) {
		return 0, "", false
	}
	return f, cur, true
}
