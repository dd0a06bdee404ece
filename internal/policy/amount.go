package policy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/shopspring/decimal"
)

// maxDecimalLen bounds the decimal strings read from configs and orders.
const maxDecimalLen = 64

// parsePlain parses a plain decimal: digits with an optional fraction
// ("0.5", "37500.00000000"). Signs, exponents, spaces, "NaN" and the like
// are refused: an amount a venue might read differently is not an amount.
func parsePlain(s string) (decimal.Decimal, error) {
	if s == "" {
		return decimal.Decimal{}, errors.New("empty decimal")
	}
	if len(s) > maxDecimalLen {
		return decimal.Decimal{}, fmt.Errorf("decimal longer than %d characters", maxDecimalLen)
	}
	dot := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= '0' && c <= '9':
		case c == '.' && !dot && i > 0 && i < len(s)-1:
			dot = true
		default:
			return decimal.Decimal{}, fmt.Errorf("%q is not a plain decimal (digits and one '.')", s)
		}
	}
	return decimal.NewFromString(s)
}

// Amount is a decimal quantity of a currency ("250 USDT").
type Amount struct {
	Value    decimal.Decimal
	Currency string // upper case
}

// String formats the amount as "<value> <CURRENCY>".
func (a Amount) String() string { return a.Value.String() + " " + a.Currency }

// ParseAmount parses "<plain decimal> <CURRENCY>", e.g. "250 USDT". The
// currency is 2-12 letters or digits, matched case-insensitively (returned
// upper case). The value must be positive.
func ParseAmount(s string) (Amount, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return Amount{}, fmt.Errorf("%q: want an amount and a currency, like \"250 USDT\"", s)
	}
	v, err := parsePlain(f[0])
	if err != nil {
		return Amount{}, fmt.Errorf("%q: %w", s, err)
	}
	if !v.IsPositive() {
		return Amount{}, fmt.Errorf("%q: must be positive", s)
	}
	cur := strings.ToUpper(f[1])
	if !validCurrency(cur) {
		return Amount{}, fmt.Errorf("%q: currency must be 2-12 letters or digits", s)
	}
	return Amount{Value: v, Currency: canonicalCurrency(cur)}, nil
}

func validCurrency(c string) bool {
	if len(c) < 2 || len(c) > 12 {
		return false
	}
	for i := 0; i < len(c); i++ {
		if !(c[i] >= 'A' && c[i] <= 'Z' || c[i] >= '0' && c[i] <= '9') {
			return false
		}
	}
	return true
}

// canonicalCurrency maps venue aliases to one name (Kraken's XBT is BTC).
func canonicalCurrency(c string) string {
	if c == "XBT" {
		return "BTC"
	}
	return c
}

// knownQuotes are quote currencies recognised as the suffix of an
// instrument without a separator, longest first so that BTCFDUSD is FDUSD
// and BTCUSDT is USDT, not USD.
var knownQuotes = []string{
	"PYUSD", "FDUSD",
	"USDT", "USDC", "BUSD", "TUSD", "USDP", "USDE", "USDS", "EURC", "EURI",
	"DAI", "USD", "EUR", "GBP", "JPY", "AUD", "CAD", "CHF", "TRY", "BRL", "KRW", "MXN", "PLN", "ZAR",
	"BTC", "XBT", "ETH", "BNB", "SOL",
}

// QuoteCurrency returns the quote currency of an instrument name:
// BTC-USDT, BTC/USDT, BTC_USDT and BTC-USDT-SWAP split on the separator;
// BTCUSDT and XBTUSD take the longest known quote suffix that leaves a
// base of three or more characters (else the longest). ok is false when no
// quote can be told.
func QuoteCurrency(instrument string) (string, bool) {
	s := strings.ToUpper(strings.TrimSpace(instrument))
	if i := strings.IndexAny(s, "-/_:"); i >= 0 {
		rest := s[i+1:]
		if j := strings.IndexAny(rest, "-/_:"); j >= 0 {
			rest = rest[:j]
		}
		if i == 0 || !validCurrency(rest) {
			return "", false
		}
		return canonicalCurrency(rest), true
	}
	// Longest suffix first, but one that leaves a base of at least three
	// characters wins over one that does not: XBTUSD is XBT/USD, not
	// XB/TUSD, while OPUSDT is still OP/USDT.
	fallback := ""
	for _, q := range knownQuotes {
		if len(s) <= len(q) || !strings.HasSuffix(s, q) {
			continue
		}
		if len(s)-len(q) >= 3 {
			return canonicalCurrency(q), true
		}
		if fallback == "" {
			fallback = q
		}
	}
	if fallback != "" {
		return canonicalCurrency(fallback), true
	}
	return "", false
}

// parseBand parses a price band "5%" (0 < band <= 100%) into a fraction.
func parseBand(s string) (decimal.Decimal, error) {
	num, ok := strings.CutSuffix(strings.TrimSpace(s), "%")
	if !ok {
		return decimal.Decimal{}, fmt.Errorf("%q: want a percentage like \"5%%\"", s)
	}
	v, err := parsePlain(strings.TrimSpace(num))
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("%q: %w", s, err)
	}
	if !v.IsPositive() || v.GreaterThan(decimal.NewFromInt(100)) {
		return decimal.Decimal{}, fmt.Errorf("%q: must be above 0%% and at most 100%%", s)
	}
	return v.Div(decimal.NewFromInt(100)), nil
}
