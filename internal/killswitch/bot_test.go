package killswitch_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/token"
)

func TestParseBotKill(t *testing.T) {
	tests := []struct {
		name, body string
		want       killswitch.BotKillRequest
		err        bool
	}{
		{"empty", "", killswitch.BotKillRequest{Scope: killswitch.BotToken}, false},
		{"spaces", " \n", killswitch.BotKillRequest{Scope: killswitch.BotToken}, false},
		{"empty object", "{}", killswitch.BotKillRequest{Scope: killswitch.BotToken}, false},
		{"scope and reason", `{"scope":"all","reason":" drawdown 8% "}`, killswitch.BotKillRequest{Scope: killswitch.BotAll, Reason: "drawdown 8%"}, false},
		{"venues", `{"scope":"venues"}`, killswitch.BotKillRequest{Scope: killswitch.BotVenues}, false},
		{"unknown scope", `{"scope":"global"}`, killswitch.BotKillRequest{}, true},
		{"unknown field", `{"scope":"all","off":true}`, killswitch.BotKillRequest{}, true},
		{"trailing", `{"scope":"all"} {}`, killswitch.BotKillRequest{}, true},
		{"not an object", `["all"]`, killswitch.BotKillRequest{}, true},
		{"scope not a string", `{"scope":1}`, killswitch.BotKillRequest{}, true},
		{"control character", `{"reason":"a\u0007b"}`, killswitch.BotKillRequest{}, true},
		{"reason too long", `{"reason":"` + strings.Repeat("x", killswitch.MaxBotReason+1) + `"}`, killswitch.BotKillRequest{}, true},
		{"invalid utf-8 becomes U+FFFD", "{\"reason\":\"\xff\"}", killswitch.BotKillRequest{Scope: killswitch.BotToken, Reason: "\uFFFD"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := killswitch.ParseBotKill([]byte(tt.body))
			if tt.err {
				if !errors.Is(err, killswitch.ErrBadKillRequest) {
					t.Fatalf("err = %v, want ErrBadKillRequest", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseBotKill = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func FuzzParseBotKill(f *testing.F) {
	for _, s := range []string{"", "{}", `{"scope":"all","reason":"x"}`, `{"scope":"venues"}`, `{"scope":"token"} `, `{"reason":"\u00e9"}`, `{`, `null`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := killswitch.ParseBotKill(b)
		if err != nil {
			if !errors.Is(err, killswitch.ErrBadKillRequest) {
				t.Fatalf("error not ErrBadKillRequest: %v", err)
			}
			return
		}
		if _, err := killswitch.ParseBotScope(string(req.Scope)); err != nil {
			t.Fatalf("accepted scope %q", req.Scope)
		}
		if len(req.Reason) > killswitch.MaxBotReason {
			t.Fatalf("reason of %d bytes accepted", len(req.Reason))
		}
	})
}

// TestBotKill: a bot gets what its policy allows, narrowed (never
// refused) when it asks for more; the audit record names the bot's token.
func TestBotKill(t *testing.T) {
	ctx := context.Background()
	bot := &token.Token{ID: "tok_bot1", Venues: []string{"binance", "kraken"}}
	mm := &token.Token{ID: "tok_mm1", Policy: "market-maker", Venues: []string{"okx"}}
	tests := []struct {
		name      string
		tok       *token.Token
		body      string
		scope     killswitch.BotScope
		requested killswitch.BotScope
		covers    [][2]string // token, venue now refused
		spared    [][2]string // still served
	}{
		{"default: own token", bot, ``, killswitch.BotToken, "", [][2]string{{"tok_bot1", "binance"}, {"tok_bot1", "okx"}}, [][2]string{{"tok_other", "binance"}}},
		{"asks for all, allowed token", bot, `{"scope":"all","reason":"lost my mind"}`, killswitch.BotToken, killswitch.BotAll,
			[][2]string{{"tok_bot1", "kraken"}}, [][2]string{{"tok_other", "kraken"}}},
		{"policy allows all", mm, `{"scope":"all"}`, killswitch.BotAll, "", [][2]string{{"tok_other", "binance"}, {"tok_mm1", "okx"}}, nil},
		{"venues", mm, `{"scope":"venues"}`, killswitch.BotVenues, "", [][2]string{{"tok_other", "okx"}}, [][2]string{{"tok_other", "binance"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db, _ := openDB(t)
			al := newAuditLog(t)
			s := newSwitch(t, db.Trips(), al, func(o *killswitch.Options) {
				o.BotScope = func(p string) killswitch.BotScope {
					if p == "market-maker" {
						return killswitch.BotAll
					}
					return killswitch.BotToken
				}
			})
			ans, err := s.BotKill(ctx, "req-1", tt.tok, []byte(tt.body))
			if err != nil {
				t.Fatal(err)
			}
			if !ans.Killed || ans.Scope != tt.scope || ans.Requested != tt.requested || len(ans.Trips) == 0 {
				t.Fatalf("answer %+v", ans)
			}
			for _, c := range tt.covers {
				if !s.Covers(token.ID(c[0]), c[1]) {
					t.Errorf("%s on %s still served", c[0], c[1])
				}
			}
			for _, c := range tt.spared {
				if s.Covers(token.ID(c[0]), c[1]) {
					t.Errorf("%s on %s refused", c[0], c[1])
				}
			}
			recs := al.actions(t, killswitch.OpEngage)
			if len(recs) == 0 || recs[0].Actor != "bot" || recs[0].Rule != killswitch.RuleBot || recs[0].RequestID != "req-1" ||
				recs[0].Token != al.keys.TokenHash(string(tt.tok.ID)) {
				t.Fatalf("audit: %+v", recs)
			}
		})
	}
	t.Run("malformed body engages nothing", func(t *testing.T) {
		db, _ := openDB(t)
		s := newSwitch(t, db.Trips(), nil)
		if _, err := s.BotKill(ctx, "r", bot, []byte(`{"scope":"off"}`)); !errors.Is(err, killswitch.ErrBadKillRequest) || s.Engaged() {
			t.Fatalf("err %v, engaged %v", err, s.Engaged())
		}
	})
}
