package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/sandbox"
)

// policyYAML is the demo's policy: a scalper on Binance, BTCUSDT only,
// at most 100 USDT per order and 1000 USDT a day.
const policyYAML = `policies:
  scalper:
    venues: [binance]
    operations: ["market.read", "account.read", "order.*"]
    instruments: {allow: [BTCUSDT]}
    max_notional: "100 USDT"
    budgets:
      - {name: daily, scope: token, window: day, limit: "1000 USDT"}
`

// policyStep mints a token under the scalper policy and shows an order
// over its limit refused before signing, then one order sent twice with
// the same Idempotency-Key reaching the venue once.
func policyStep(ctx context.Context, client *admin.Client, hc *http.Client, gw string, sb *sandbox.Server, res *Result, say func(string, ...any)) error {
	m, err := client.CreateToken(ctx, admin.CreateTokenRequest{Name: "demo-scalper", Policy: "scalper", Venues: []string{"binance"}, Test: true,
		Scopes: []string{"market.read", "account.read", "order.*"}, TTL: 15 * time.Minute, CIDRs: []string{"127.0.0.1/32", "::1/128"}})
	if err != nil {
		return fmt.Errorf("demo: mint scalper token: %w", err)
	}
	say("7. A second bot, token %s under policy \"scalper\" (binance, BTCUSDT, ≤ 100 USDT per order, 1000 USDT a day):", m.Info.ID)
	before := sb.Stats(sandbox.VenueBinance).Orders
	send := func(qty, key string) (int, http.Header, []byte, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost,
			gw+"/binance/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&price=30000&quantity="+qty, nil)
		if err != nil {
			return 0, nil, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+m.Token)
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		return resp.StatusCode, resp.Header, b, err
	}
	code, hdr, body, err := send("0.01", "")
	if err != nil {
		return fmt.Errorf("demo: scalper order: %w", err)
	}
	var e struct {
		Error struct {
			Rule string `json:"rule"`
		} `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	res.Denied, res.PolicyRule = Step{Venue: "binance", Method: http.MethodPost, Status: code, RequestID: hdr.Get("Keystile-Request-Id")}, e.Error.Rule
	say("   buy 0.01 BTC at 30000 (300 USDT):              %d %s (refused before signing)", code, e.Error.Rule)
	if code != http.StatusForbidden || e.Error.Rule != "policy.scalper.max_notional" {
		return fmt.Errorf("demo: over-limit order answered %d %q", code, e.Error.Rule)
	}
	var first []byte
	for i := range 2 {
		code, hdr, body, err := send("0.002", "demo-order-1")
		if err != nil {
			return fmt.Errorf("demo: scalper order: %w", err)
		}
		replay := hdr.Get("Keystile-Idempotent-Replay") == "true"
		say("   buy 0.002 BTC (60 USDT), Idempotency-Key demo-order-1: %d replay=%v client order id %s", code, replay, hdr.Get("Keystile-Client-Order-Id"))
		if code != http.StatusOK {
			return fmt.Errorf("demo: scalper order answered %d", code)
		}
		if i == 0 {
			first = body
		} else {
			res.Replayed = replay && string(body) == string(first)
		}
	}
	res.ScalperOrders = sb.Stats(sandbox.VenueBinance).Orders - before
	say("   orders binance received from the scalper: %d", res.ScalperOrders)
	if !res.Replayed || res.ScalperOrders != 1 {
		return fmt.Errorf("demo: idempotent order: replayed %v, %d orders", res.Replayed, res.ScalperOrders)
	}
	say("")
	return nil
}

// verifyAudit opens the vault and the audit log offline and verifies the
// chain and checkpoints.
func verifyAudit(ctx context.Context, dir string, cfg *config.Config) (audit.Report, error) {
	db, v, err := app.OpenVault(ctx, app.Env{}, dir, cfg, nil, nil)
	if err != nil {
		return audit.Report{}, fmt.Errorf("demo: open vault: %w", err)
	}
	defer db.Close()
	defer v.Close(context.WithoutCancel(ctx))
	keys, err := app.AuditKeys(ctx, v)
	if err != nil {
		return audit.Report{}, fmt.Errorf("demo: audit keys: %w", err)
	}
	r, err := app.OpenAuditReader(ctx, cfg, dir)
	if err != nil {
		return audit.Report{}, fmt.Errorf("demo: audit log: %w", err)
	}
	defer r.Close()
	rep, err := audit.Verify(ctx, r, keys.PublicKey())
	if err != nil {
		return rep, fmt.Errorf("demo: audit verify: %w", err)
	}
	if rep.Records == 0 || rep.Checkpoints == 0 || rep.Unsigned != 0 {
		return rep, fmt.Errorf("demo: audit log: %d records, %d checkpoints, %d unsigned", rep.Records, rep.Checkpoints, rep.Unsigned)
	}
	return rep, nil
}
