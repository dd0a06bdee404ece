package config

import (
	"strings"
	"testing"
	"time"
)

func TestKillSwitchSection(t *testing.T) {
	c, err := Parse("k.yaml", []byte("killswitch:\n  refresh: 250ms\n  bot_scope: all\n  bot_scopes: {scalper: token}\n"+
		"  loss_guard:\n    - {name: g, scope: account, window: day, max_notional: \"5 BTC\"}\n"))
	if err != nil {
		t.Fatal(err)
	}
	k := c.KillSwitch
	if k.Refresh != 250*time.Millisecond || k.DrainTimeout != DefaultKillSwitchDrainTimeout || k.BotScope != "all" ||
		k.BotScopes["scalper"] != "token" || len(k.LossGuard) != 1 || k.LossGuard[0].MaxNotional[0] != "5 BTC" {
		t.Fatalf("killswitch = %+v", k)
	}
	if d := Default().KillSwitch; d.CancelTries != 3 || d.BotScope != "token" || d.Refresh != time.Second {
		t.Fatalf("defaults = %+v", d)
	}
}

func TestKillSwitchErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"bot scope", "killswitch:\n  bot_scope: everything\n", `k.yaml:2:3: killswitch.bot_scope: must be one of token|venues|all, got "everything"`},
		{"policy bot scope", "killswitch:\n  bot_scopes:\n    p: nope\n", `k.yaml:3:5: killswitch.bot_scopes.p: must be one of token|venues|all`},
		{"refresh too long", "killswitch:\n  refresh: 2m\n", `k.yaml:2:3: killswitch.refresh: must be at most 1m`},
		{"zero drain", "killswitch:\n  drain_timeout: 0s\n", `k.yaml:2:3: killswitch.drain_timeout: must be positive`},
		{"tries", "killswitch:\n  cancel_tries: 11\n", `k.yaml:2:3: killswitch.cancel_tries: must be between 1 and 10`},
		{"guard without cap", "killswitch:\n  loss_guard:\n    - {name: g, scope: token, window: 1h}\n", `k.yaml:3:7: killswitch.loss_guard[0]: needs max_net_spend or max_notional`},
		{"guard scope", "killswitch:\n  loss_guard:\n    - {name: g, scope: bot, window: 1h, max_notional: \"1 USD\"}\n", `killswitch.loss_guard[0].scope: must be one of token|account`},
		{"guard window", "killswitch:\n  loss_guard:\n    - {name: g, scope: token, max_notional: \"1 USD\"}\n", `killswitch.loss_guard[0].window: required`},
		{"unknown key", "killswitch:\n  loss_gard: []\n", `k.yaml:2:3: killswitch.loss_gard: unknown key "loss_gard" (did you mean "loss_guard"?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("k.yaml", []byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
}
