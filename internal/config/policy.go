package config

// Policy is one entry of policies: what the tokens attached to it may do.
// Every field is optional; an empty field places no restriction, except
// Operations (see below). Amounts are decimal strings with a currency
// ("250 USDT"), never YAML numbers. internal/policy compiles and checks
// these; the decoder only checks their shapes.
type Policy struct {
	// Venues (policies.<p>.venues) are the venue ids the policy allows.
	// Empty: every venue.
	Venues []string `yaml:"venues"`
	// Operations (policies.<p>.operations) are globs (path.Match syntax)
	// over operation names, e.g. "market.read", "order.*". Empty: every
	// operation except wallet.withdraw, wallet.transfer and apikey.manage
	// (any wallet.* or apikey.* operation), which are allowed only when
	// named literally — a glob never enables them.
	Operations []string `yaml:"operations"`
	// Instruments (policies.<p>.instruments) restricts the instruments of
	// orders.
	Instruments Instruments `yaml:"instruments"`
	// Sides (policies.<p>.sides) are the order sides allowed (buy, sell).
	// Empty: any.
	Sides []string `yaml:"sides"`
	// OrderTypes (policies.<p>.order_types) are the order types allowed
	// (limit, market, ...). Empty: any.
	OrderTypes []string `yaml:"order_types"`
	// MaxQuantity (policies.<p>.max_quantity) caps an order's base
	// quantity: a plain decimal such as "0.5".
	MaxQuantity string `yaml:"max_quantity"`
	// MaxNotional (policies.<p>.max_notional) caps an order's notional:
	// one amount ("250 USDT") or a list of amounts in distinct
	// currencies. An order in a currency with no entry is denied.
	MaxNotional Amounts `yaml:"max_notional"`
	// PriceBand (policies.<p>.price_band) is the largest relative distance
	// of a limit price from the venue's reference price, e.g. "5%".
	PriceBand string `yaml:"price_band"`
	// TimeZone (policies.<p>.time_zone) is the IANA zone of hours and of
	// calendar-day budgets. Default UTC.
	TimeZone string `yaml:"time_zone"`
	// Hours (policies.<p>.hours) are the windows when requests are
	// allowed, e.g. "Mon-Fri 08:00-20:00" or "Sat 22:00-02:00" (crossing
	// midnight). Empty: always.
	Hours []string `yaml:"hours"`
	// Budgets (policies.<p>.budgets) cap the notional spent per window.
	Budgets []Budget `yaml:"budgets"`
	// Rate (policies.<p>.rate) are token-bucket request rate limits.
	Rate []Rate `yaml:"rate"`
	// Expr (policies.<p>.expr) is an optional CEL expression over request
	// and order that must evaluate to true.
	Expr string `yaml:"expr"`
}

// Instruments restricts order instruments with case-insensitive globs.
type Instruments struct {
	// Allow (instruments.allow): the instrument must match one. Empty: any.
	Allow []string `yaml:"allow"`
	// Deny (instruments.deny): an instrument matching one is denied, even
	// if allowed.
	Deny []string `yaml:"deny"`
}

// Amounts is a list of amounts; in YAML it may also be written as a single
// string ("250 USDT" is the same as ["250 USDT"]).
type Amounts []string

// Budget caps the total notional of orders in a window.
type Budget struct {
	// Name (budgets[].name) names the budget in rule ids
	// (policy.<p>.budget.<name>). Required.
	Name string `yaml:"name"`
	// Scope (budgets[].scope) is token (each token has its own budget) or
	// account (the venue credential's budget, shared by all its tokens).
	// Required.
	Scope string `yaml:"scope"`
	// Window (budgets[].window) is "day" (the calendar day in time_zone)
	// or a rolling duration such as "24h". Required.
	Window string `yaml:"window"`
	// Limit (budgets[].limit) is an amount such as "1000 USDT". Required.
	Limit string `yaml:"limit"`
}

// Rate is a token-bucket request rate limit.
type Rate struct {
	// Scope (rate[].scope) is token or account. Required.
	Scope string `yaml:"scope"`
	// Limit (rate[].limit) is N/s, N/m or N/h. Required.
	Limit string `yaml:"limit"`
	// Burst (rate[].burst) is the bucket size. 0 means N.
	Burst int `yaml:"burst"`
}
