package killswitch

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/policy"
)

// Settings are the compiled killswitch section of keystile.yaml.
type Settings struct {
	Refresh, DrainTimeout, CancelTimeout time.Duration
	CancelTries                          int
	// BotScope is the widest scope a bot under a policy may trip ("" is
	// the default policy).
	BotScope  func(policy string) BotScope
	LossRules []LossRule
}

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)

// maxLossWindow bounds rolling loss guard windows: the ledger's entries
// are pruned with the policy budgets' after a day.
const maxLossWindow = 24 * time.Hour

// Compile compiles cfg.KillSwitch. Every problem is a *config.Error
// naming file, line, column and key; all are returned, joined.
func Compile(cfg *config.Config) (Settings, error) {
	k := cfg.KillSwitch
	var errs []error
	errorf := func(key, format string, args ...any) {
		file, line, col := cfg.Locate(key)
		errs = append(errs, &config.Error{File: file, Line: line, Column: col, Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	s := Settings{Refresh: k.Refresh, DrainTimeout: k.DrainTimeout, CancelTimeout: k.CancelTimeout, CancelTries: k.CancelTries}
	knownPolicy := func(p string) bool {
		_, ok := cfg.Policies[p]
		return ok || p == "default"
	}
	def := BotToken
	if k.BotScope != "" {
		sc, err := ParseBotScope(k.BotScope)
		if err != nil {
			errorf("killswitch.bot_scope", "must be token, venues or all, got %q", k.BotScope)
		}
		def = sc
	}
	per := map[string]BotScope{}
	for _, p := range sortedKeys(k.BotScopes) {
		key := "killswitch.bot_scopes." + p
		if !knownPolicy(p) {
			errorf(key, "unknown policy %q (not in policies:, nor \"default\")", p)
		}
		sc, err := ParseBotScope(k.BotScopes[p])
		if err != nil {
			errorf(key, "must be token, venues or all, got %q", k.BotScopes[p])
		}
		per[p] = sc
	}
	s.BotScope = func(p string) BotScope {
		if p == "" {
			p = "default"
		}
		if sc, ok := per[p]; ok {
			return sc
		}
		return def
	}
	seen := map[string]bool{}
	for i, g := range k.LossGuard {
		key := fmt.Sprintf("killswitch.loss_guard[%d]", i)
		r := LossRule{Name: g.Name, Scope: g.Scope, Policies: g.Policies}
		switch {
		case !nameRE.MatchString(g.Name):
			errorf(key+".name", "must match [a-z0-9][a-z0-9_-]{0,31}, got %q", g.Name)
		case seen[g.Name]:
			errorf(key+".name", "duplicate loss guard name %q", g.Name)
		}
		seen[g.Name] = true
		if g.Scope != "token" && g.Scope != "account" {
			errorf(key+".scope", "must be token or account, got %q", g.Scope)
		}
		if g.Window != "day" {
			d, err := time.ParseDuration(g.Window)
			if err != nil || d < time.Minute || d > maxLossWindow {
				errorf(key+".window", "must be day or a duration from 1m to 24h, got %q", g.Window)
			}
			r.Window = d
		}
		var err error
		if r.MaxNet, err = amounts(g.MaxNetSpend); err != nil {
			errorf(key+".max_net_spend", "%v", err)
		}
		if r.MaxNotional, err = amounts(g.MaxNotional); err != nil {
			errorf(key+".max_notional", "%v", err)
		}
		if len(g.MaxNetSpend) == 0 && len(g.MaxNotional) == 0 {
			errorf(key, "needs max_net_spend or max_notional")
		}
		for j, p := range g.Policies {
			if !knownPolicy(p) {
				errorf(fmt.Sprintf("%s.policies[%d]", key, j), "unknown policy %q (not in policies:, nor \"default\")", p)
			}
		}
		s.LossRules = append(s.LossRules, r)
	}
	if len(errs) > 0 {
		return Settings{}, errors.Join(errs...)
	}
	return s, nil
}

// amounts parses a list of amounts, one per currency.
func amounts(list config.Amounts) (map[string]decimal.Decimal, error) {
	out := map[string]decimal.Decimal{}
	for _, a := range list {
		amt, err := policy.ParseAmount(a)
		if err != nil {
			return nil, err
		}
		if _, dup := out[amt.Currency]; dup {
			return nil, fmt.Errorf("second amount in %s", amt.Currency)
		}
		out[amt.Currency] = amt.Value
	}
	return out, nil
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
