package venue

// PriceReference is implemented by venues with a public ticker: the policy
// engine reads the reference (last traded) price of an instrument from it
// for price bands and for the notional of market orders. The request is
// unsigned market data; it never carries a credential.
type PriceReference interface {
	// TickerRequest returns the public request that reads instrument's
	// ticker: the method, the escaped path below the venue's base URL and
	// the raw query.
	TickerRequest(instrument string) (method, path, rawQuery string)
	// ParseTicker reads the reference price from the ticker answer's body:
	// a plain decimal string, exactly as the venue wrote it.
	ParseTicker(instrument string, body []byte) (price string, err error)
}
