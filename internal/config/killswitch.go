package config

import (
	"fmt"
	"time"
)

// KillSwitch configures the kill switch (killswitch:). Zero values mean
// the defaults. internal/killswitch compiles it (amounts, windows, policy
// names); the decoder checks shapes.
type KillSwitch struct {
	// Refresh (killswitch.refresh) is how often serve re-reads the switch
	// from the database, to see trips engaged or cleared by another
	// process. Default 1s.
	Refresh time.Duration `yaml:"refresh"`
	// DrainTimeout (killswitch.drain_timeout) is how long keystile panic
	// waits for the requests already on their way to a venue. Default 5s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// CancelTimeout (killswitch.cancel_timeout) bounds --cancel-orders as
	// a whole. Default 60s.
	CancelTimeout time.Duration `yaml:"cancel_timeout"`
	// CancelTries (killswitch.cancel_tries) is how many passes
	// --cancel-orders makes on a venue while orders remain (1..10).
	// Default 3.
	CancelTries int `yaml:"cancel_tries"`
	// BotScope (killswitch.bot_scope) is the widest scope a bot may trip
	// with POST /-/kill: token (its own token; the default), venues (every
	// venue its token reaches, for every token) or all.
	BotScope string `yaml:"bot_scope"`
	// BotScopes (killswitch.bot_scopes) overrides bot_scope per policy
	// name (tokens without a policy: "default").
	BotScopes map[string]string `yaml:"bot_scopes"`
	// LossGuard (killswitch.loss_guard) are caps on what bots spend,
	// tripping the switch when exceeded.
	LossGuard []LossGuard `yaml:"loss_guard"`
}

// LossGuard trips the switch for a token (or a venue account) whose
// orders over a window exceed a cap — Hummingbot's kill switch, from
// outside the bot. Amounts are counted from order placements the venue
// accepted (keystile sees orders, not fills): buys add their notional to
// the net spend and sells subtract it; every order adds to the notional.
type LossGuard struct {
	// Name (loss_guard[].name) names the guard in rule ids
	// (killswitch.loss_guard.<name>). Required, [a-z0-9][a-z0-9_-]{0,31}.
	Name string `yaml:"name"`
	// Scope (loss_guard[].scope) is token (each token on its own) or
	// account (every token using a venue credential together; trips the
	// venues using it). Required.
	Scope string `yaml:"scope"`
	// Window (loss_guard[].window) is "day" (the UTC calendar day) or a
	// rolling duration from 1m to 24h. Required.
	Window string `yaml:"window"`
	// MaxNetSpend (loss_guard[].max_net_spend) caps buys minus sells: one
	// amount ("2000 USDT") or a list, one per quote currency.
	MaxNetSpend Amounts `yaml:"max_net_spend"`
	// MaxNotional (loss_guard[].max_notional) caps buys plus sells (the
	// volume traded), same form. At least one of the two is required.
	MaxNotional Amounts `yaml:"max_notional"`
	// Policies (loss_guard[].policies) restricts the guard to tokens of
	// these policies ("default" for tokens without one). Empty: every
	// token.
	Policies []string `yaml:"policies"`
}

// Defaults of the killswitch section.
const (
	DefaultKillSwitchRefresh       = time.Second
	DefaultKillSwitchDrainTimeout  = 5 * time.Second
	DefaultKillSwitchCancelTimeout = time.Minute
	DefaultKillSwitchCancelTries   = 3
)

// defaultKillSwitch returns the section's defaults.
func defaultKillSwitch() KillSwitch {
	return KillSwitch{Refresh: DefaultKillSwitchRefresh, DrainTimeout: DefaultKillSwitchDrainTimeout,
		CancelTimeout: DefaultKillSwitchCancelTimeout, CancelTries: DefaultKillSwitchCancelTries, BotScope: "token"}
}

// killSwitch checks the section's shapes.
func (ck *checker) killSwitch(k KillSwitch) {
	ck.positive("killswitch.refresh", k.Refresh)
	ck.positive("killswitch.drain_timeout", k.DrainTimeout)
	ck.positive("killswitch.cancel_timeout", k.CancelTimeout)
	if k.Refresh > time.Minute {
		ck.add("killswitch.refresh", "must be at most 1m (a longer one leaves other replicas serving after a panic), got %s", k.Refresh)
	}
	if k.CancelTries < 0 || k.CancelTries > 10 {
		ck.add("killswitch.cancel_tries", "must be between 1 and 10, got %d", k.CancelTries)
	}
	scopes := []string{"token", "venues", "all"}
	ck.oneOf("killswitch.bot_scope", k.BotScope, scopes...)
	for p, s := range k.BotScopes {
		if s == "" {
			ck.add("killswitch.bot_scopes."+p, "required: token, venues or all")
		}
		ck.oneOf("killswitch.bot_scopes."+p, s, scopes...)
	}
	for i, g := range k.LossGuard {
		key := fmt.Sprintf("killswitch.loss_guard[%d]", i)
		if g.Name == "" {
			ck.add(key+".name", "required")
		}
		if g.Scope == "" {
			ck.add(key+".scope", "required: token or account")
		}
		ck.oneOf(key+".scope", g.Scope, "token", "account")
		if g.Window == "" {
			ck.add(key+".window", "required: day or a duration from 1m to 24h")
		}
		if len(g.MaxNetSpend) == 0 && len(g.MaxNotional) == 0 {
			ck.add(key, "needs max_net_spend or max_notional")
		}
	}
}
