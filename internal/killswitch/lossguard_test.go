package killswitch_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/token"
)

const guardYAML = `venues:
  binance: {type: binance, credential: acct-1, base_url: "https://api.binance.com"}
  binance2: {type: binance, credential: acct-1, base_url: "https://api.binance.com"}
  kraken: {type: kraken, credential: acct-2, base_url: "https://api.kraken.com"}
policies:
  scalper: {}
  hodler: {}
killswitch:
  loss_guard:
    - {name: net, scope: token, window: 1h, max_net_spend: "2000 USDT", policies: [scalper]}
    - {name: volume, scope: account, window: day, max_notional: ["10000 USDT", "1 BTC"]}
`

type guardEnv struct {
	s   *killswitch.Switch
	g   *killswitch.LossGuard
	al  *auditLog
	seq int
}

func newGuard(t *testing.T) *guardEnv {
	t.Helper()
	cfg, err := config.Parse("k.yaml", []byte(guardYAML))
	if err != nil {
		t.Fatal(err)
	}
	set, err := killswitch.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	db, _ := openDB(t)
	al := newAuditLog(t)
	s := newSwitch(t, db.Trips(), al)
	policies := map[token.ID]string{"tok_s1": "scalper", "tok_s2": "scalper", "tok_h1": "hodler"}
	g, err := killswitch.NewLossGuard(killswitch.LossGuardOptions{
		Switch: s, Ledger: db.LossLedger(), Store: db.Trips(), Rules: set.LossRules,
		Account: func(v string) string { return cfg.Venues[v].Credential },
		Venues: func(a string) []string {
			var out []string
			for id, v := range cfg.Venues {
				if v.Credential == a {
					out = append(out, id)
				}
			}
			return out
		},
		Policy: func(t token.ID) string { return policies[t] },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go g.Run(ctx)
	return &guardEnv{s: s, g: g, al: al}
}

// order records an accepted order placement as the gateway's event.
func (e *guardEnv) order(t *testing.T, tok, venue, side, notional string, mod ...func(*audit.Event)) {
	t.Helper()
	e.seq++
	ev := audit.Event{RequestID: fmt.Sprint("r", e.seq), TokenID: tok, Venue: venue, Operation: "order.place", Decision: audit.Allow,
		Status: 200, Upstream: 200, Instrument: "BTCUSDT", Side: side, Quantity: "0.01", Notional: notional, VenueOrderID: fmt.Sprint(1000 + e.seq)}
	for _, m := range mod {
		m(&ev)
	}
	e.g.Record(context.Background(), ev)
	waitFor(t, "the guard to count", func() bool { return e.g.Stats().Pending == 0 })
}

func TestLossGuardNetSpend(t *testing.T) {
	e := newGuard(t)
	e.order(t, "tok_s1", "kraken", "buy", "1500 USDT")
	e.order(t, "tok_s1", "kraken", "sell", "1000 USDT") // net 500
	e.order(t, "tok_s1", "kraken", "buy", "1400 USDT")  // net 1900: under
	if e.s.Covers("tok_s1", "kraken") {
		t.Fatal("tripped under the cap")
	}
	e.order(t, "tok_s1", "kraken", "buy", "100.01 USDT") // net 2000.01
	if !e.s.Covers("tok_s1", "kraken") || e.s.Covers("tok_s2", "kraken") {
		t.Fatalf("after exceeding: %+v", e.s.Active())
	}
	recs := e.al.actions(t, killswitch.OpEngage)
	if len(recs) != 1 || recs[0].Rule != "killswitch.loss_guard.net" || recs[0].Actor != "killswitch.loss_guard" ||
		!strings.Contains(recs[0].Reason, "net spend 2000.01 USDT over 1h0m0s exceeds 2000 USDT") || !strings.Contains(recs[0].Detail, `"net_spend":"2000.01"`) {
		t.Fatalf("audit: %+v", recs)
	}
	// An admin clears it: the window restarts from the clear.
	if _, err := e.s.Clear(context.Background(), killswitch.Clearing{Actor: "admin uid=1", Reason: "reviewed"}); err != nil {
		t.Fatal(err)
	}
	e.order(t, "tok_s1", "kraken", "buy", "1999 USDT")
	if e.s.Covers("tok_s1", "kraken") {
		t.Fatal("re-tripped by spend from before the clear")
	}
	e.order(t, "tok_s1", "kraken", "buy", "2 USDT")
	if !e.s.Covers("tok_s1", "kraken") {
		t.Fatal("not tripped after the clear's window filled")
	}
}

func TestLossGuardAccountNotional(t *testing.T) {
	e := newGuard(t)
	// Two tokens on the two venues of acct-1 share the volume cap.
	e.order(t, "tok_h1", "binance", "buy", "6000 USDT")
	e.order(t, "tok_s2", "binance2", "sell", "3999 USDT")
	if e.s.Engaged() {
		t.Fatal("tripped under the cap")
	}
	e.order(t, "tok_h1", "binance", "sell", "2 USDT")
	if !e.s.Covers("tok_anyone", "binance") || !e.s.Covers("tok_anyone", "binance2") || e.s.Covers("tok_anyone", "kraken") {
		t.Fatalf("account trip: %+v", e.s.Active())
	}
}

// TestLossGuardCounts: only orders the venue accepted count, in a capped
// currency, for the rule's policies.
func TestLossGuardCounts(t *testing.T) {
	e := newGuard(t)
	ignored := []func(*audit.Event){
		func(ev *audit.Event) { ev.Decision = audit.Deny; ev.Status = 403 },              // refused by keystile
		func(ev *audit.Event) { ev.VenueOrderID = "" },                                   // refused by the venue, or a replay
		func(ev *audit.Event) { ev.Status = 504 },                                        // unknown outcome
		func(ev *audit.Event) { ev.Operation = "order.cancel" },                          // not a placement
		func(ev *audit.Event) { ev.Notional = "5000 EUR"; ev.Instrument = "BTCEUR" },     // no cap in EUR
		func(ev *audit.Event) { ev.TokenID = "" },                                        // no token
		func(ev *audit.Event) { ev.Side = "short" },                                      // unreadable side
		func(ev *audit.Event) { ev.Notional = ""; ev.Price = ""; ev.Instrument = "XYZ" }, // unpriced
	}
	for _, m := range ignored {
		e.order(t, "tok_s1", "kraken", "buy", "5000 USDT", m)
	}
	if e.s.Engaged() {
		t.Fatalf("tripped by orders that must not count: %+v", e.s.Active())
	}
	// The hodler policy is not under the net rule (but is under volume).
	e.order(t, "tok_h1", "kraken", "buy", "2500 USDT")
	if e.s.Engaged() {
		t.Fatal("net rule applied outside its policies")
	}
	// Quantity × price when the policy computed no notional; a plain
	// quote amount takes the instrument's quote currency.
	e.order(t, "tok_s1", "kraken", "buy", "", func(ev *audit.Event) { ev.Quantity, ev.Price = "0.05", "30000" }) // 1500
	e.order(t, "tok_s1", "kraken", "buy", "600")                                                                 // 600 USDT
	if !e.s.Covers("tok_s1", "kraken") {
		t.Fatalf("not tripped at 2100 USDT: %+v", e.g.Stats())
	}
	if st := e.g.Stats(); st.Unpriced != 2 || st.Dropped != 0 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"bad amount", "killswitch:\n  loss_guard:\n    - {name: g, scope: token, window: 1h, max_net_spend: \"lots\"}\n",
			`k.yaml:3:43: killswitch.loss_guard[0].max_net_spend: "lots": want an amount and a currency`},
		{"window too long", "killswitch:\n  loss_guard:\n    - {name: g, scope: token, window: 48h, max_notional: \"1 BTC\"}\n",
			`killswitch.loss_guard[0].window: must be day or a duration from 1m to 24h, got "48h"`},
		{"duplicate name", "killswitch:\n  loss_guard:\n    - {name: g, scope: token, window: 1h, max_notional: \"1 BTC\"}\n    - {name: g, scope: token, window: 1h, max_notional: \"1 BTC\"}\n",
			`killswitch.loss_guard[1].name: duplicate loss guard name "g"`},
		{"bad name", "killswitch:\n  loss_guard:\n    - {name: \"G!\", scope: token, window: 1h, max_notional: \"1 BTC\"}\n",
			`killswitch.loss_guard[0].name: must match`},
		{"same currency twice", "killswitch:\n  loss_guard:\n    - {name: g, scope: token, window: 1h, max_notional: [\"1 BTC\", \"2 btc\"]}\n",
			`second amount in BTC`},
		{"unknown policy", "killswitch:\n  loss_guard:\n    - {name: g, scope: token, window: 1h, max_notional: \"1 BTC\", policies: [nope]}\n",
			`killswitch.loss_guard[0].policies[0]: unknown policy "nope"`},
		{"unknown bot policy", "killswitch:\n  bot_scopes: {nope: all}\n", `k.yaml:2:16: killswitch.bot_scopes.nope: unknown policy "nope"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse("k.yaml", []byte(tt.yaml))
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			_, err = killswitch.Compile(cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error:\n%v\nwant it to contain:\n%s", err, tt.want)
			}
		})
	}
	cfg, _ := config.Parse("k.yaml", []byte("policies: {mm: {}}\nkillswitch:\n  bot_scope: venues\n  bot_scopes: {mm: all, default: token}\n"))
	set, err := killswitch.Compile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]killswitch.BotScope{"mm": killswitch.BotAll, "": killswitch.BotToken, "default": killswitch.BotToken, "other": killswitch.BotVenues} {
		if got := set.BotScope(p); got != want {
			t.Errorf("BotScope(%q) = %s, want %s", p, got, want)
		}
	}
}
