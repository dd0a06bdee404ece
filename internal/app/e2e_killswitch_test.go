package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/token"
)

// killVenues are the venues with a cancel-all procedure: the five
// exchanges and Betfair.
func killVenues() []e2eVenue {
	v := exchangeVenues()
	for _, e := range e2eVenues() {
		if e.id == sandbox.VenueBetfair {
			v = append(v, e)
		}
	}
	return v
}

// trafficReads are reads a bot repeats while the panic happens: public
// or cheap endpoints the emulators do not rate-limit tightly.
var trafficReads = []struct {
	venue string
	r     botRequest
}{
	{sandbox.VenueKraken, botRequest{"GET", "/0/public/Time", ""}},
	{sandbox.VenueOKX, botRequest{"GET", "/api/v5/market/ticker?instId=BTC-USDT", ""}},
	{sandbox.VenueBybit, botRequest{"GET", "/v5/market/tickers?category=spot&symbol=BTCUSDT", ""}},
	{sandbox.VenueBetfair, botRequest{"POST", "/exchange/betting/rest/v1.0/listEventTypes/", `{"filter":{}}`}},
}

// emulatorRequests is the number of requests each emulator has received.
func emulatorRequests(h *harness) map[string]int64 {
	out := map[string]int64{}
	for _, v := range h.venues {
		out[v.id] = h.sb.Stats(v.id).Requests
	}
	return out
}

// openOrders lists the open orders of every emulator.
func openOrders(h *harness) map[string][]string {
	out := map[string][]string{}
	for _, v := range h.venues {
		for _, o := range h.sb.Orders(v.id) {
			if o.Status == sandbox.OrderOpen {
				out[v.id] = append(out[v.id], o.ID)
			}
		}
	}
	return out
}

// auditActions reads the server's action records of one operation.
func auditActions(t *testing.T, h *harness, op string) []audit.Record {
	t.Helper()
	r, err := app.OpenAuditReader(context.Background(), h.cfg, h.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var out []audit.Record
	if err := r.Scan(context.Background(), 1, func(rec audit.Record) error {
		if rec.Kind == audit.KindAction && rec.Operation == op {
			out = append(out, rec)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestE2EPanicCancelOrders: open orders on the binance, kraken, okx, bybit,
// coinbase and betfair emulators; many tokens keep reading concurrently;
// keystile panic --cancel-orders; then no order is open on any emulator,
// no request of any token reaches an emulator after the panic returned,
// every token is refused on its next request (403 token.killed), health
// still answers, and panic clear restores service.
func TestE2EPanicCancelOrders(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	bf := canaryCredentials()[sandbox.VenueBetfair]
	h := startHarness(t, harnessOptions{Venues: killVenues(), Credentials: map[string]map[string]string{sandbox.VenueBetfair: bf}})
	ctx := context.Background()
	const nTokens = 24
	toks := make([]string, nTokens)
	for i := range toks {
		toks[i] = h.mint(t, admin.CreateTokenRequest{Name: fmt.Sprint("bot-", i), Test: true, CIDRs: []string{"127.0.0.1/32", "::1/128"}}).Token
	}
	// An open order on every venue (two on binance, on two symbols).
	for _, v := range h.venues {
		resp, err := formCall(h, toks[0], v.id, v.order)
		if err != nil {
			t.Fatal(err)
		}
		wantOK(t, v.id, v.order, resp)
	}
	second := botRequest{"POST", "/api/v3/order?symbol=ETHUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=0.1&price=4000&newClientOrderId=e2e-2", ""}
	if resp, err := formCall(h, toks[1], sandbox.VenueBinance, second); err != nil || resp.status != 200 {
		t.Fatalf("second binance order: %v %d %s", err, resp.status, resp.body)
	}
	before := openOrders(h)
	for _, v := range h.venues {
		if len(before[v.id]) == 0 {
			t.Fatalf("%s: no open order before the panic", v.id)
		}
	}

	// Concurrent traffic from every token.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var sent, refusedAfter, servedAfter atomic.Int64
	var returned atomic.Bool
	for i, tok := range toks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := i; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				tr := trafficReads[n%len(trafficReads)]
				resp, err := formCall(h, tok, tr.venue, tr.r)
				sent.Add(1)
				if err != nil || !returned.Load() {
					continue
				}
				if resp.status == http.StatusForbidden && resp.errorRule() == "token.killed" {
					refusedAfter.Add(1)
				} else {
					servedAfter.Add(1)
				}
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	time.Sleep(300 * time.Millisecond) // traffic flows

	res, err := h.admin.Panic(ctx, admin.PanicRequest{Reason: "e2e: bots compromised", CancelOrders: true})
	returned.Store(true)
	if err != nil {
		close(stop)
		wg.Wait()
		t.Fatalf("panic: %v", err)
	}
	after := emulatorRequests(h)
	time.Sleep(400 * time.Millisecond) // traffic keeps coming, all refused
	close(stop)
	wg.Wait()

	if !res.Engaged.New || res.Engaged.Trip.Scope != killswitch.ScopeAll || !res.Engaged.Persisted {
		t.Fatalf("engaged: %+v", res.Engaged)
	}
	if got := emulatorRequests(h); !mapsEqual(got, after) {
		t.Fatalf("requests reached emulators after the panic returned:\n at return %v\n now       %v", after, got)
	}
	t.Logf("traffic: %d requests sent by %d tokens, %d refused after the panic returned", sent.Load(), nTokens, refusedAfter.Load())
	if servedAfter.Load() != 0 || refusedAfter.Load() == 0 {
		t.Fatalf("after the panic: %d served, %d refused (of %d sent)", servedAfter.Load(), refusedAfter.Load(), sent.Load())
	}
	if left := openOrders(h); len(left) != 0 {
		t.Fatalf("orders still open: %v", left)
	}
	if res.CancelError != "" || len(res.Cancel) != len(h.venues) {
		t.Fatalf("cancel: %q %+v", res.CancelError, res.Cancel)
	}
	for _, r := range res.Cancel {
		want := before[r.Venue]
		got := slices.Clone(r.Cancelled)
		slices.Sort(got)
		slices.Sort(want)
		if !r.OK() || !slices.Equal(got, want) || r.Endpoint != "test" {
			t.Errorf("%s: report %+v, want cancelled %v", r.Venue, r, want)
		}
	}
	// Every token, on every venue, on its next request.
	for i, tok := range toks {
		v := h.venues[i%len(h.venues)]
		resp, err := formCall(h, tok, v.id, v.read)
		if err != nil || resp.status != http.StatusForbidden || resp.errorRule() != "token.killed" {
			t.Fatalf("token %d on %s after the panic: %v %d %s", i, v.id, err, resp.status, resp.body)
		}
	}
	// The same through each exchange SDK's own key place (token where the
	// API key goes, the SDK's placeholder signature), and an order batch.
	for _, v := range exchangeVenues() {
		if resp := h.sdkCall(t, toks[5], v.id, v.order); resp.status != http.StatusForbidden || resp.errorRule() != "token.killed" {
			t.Fatalf("SDK-style %s order after the panic: %d %s", v.id, resp.status, resp.body)
		}
	}
	batch := botRequest{"POST", "/exchange/betting/json-rpc/v1", `[{"jsonrpc":"2.0","method":"SportsAPING/v1.0/listEventTypes","params":{},"id":1},` +
		`{"jsonrpc":"2.0","method":"SportsAPING/v1.0/placeOrders","params":{"marketId":"1.2","instructions":[]},"id":2}]`}
	if resp, err := formCall(h, toks[6], sandbox.VenueBetfair, batch); err != nil || resp.status != http.StatusForbidden || resp.errorRule() != "token.killed" {
		t.Fatalf("JSON-RPC batch after the panic: %v %d %s", err, resp.status, resp.body)
	}
	if got := emulatorRequests(h); !mapsEqual(got, after) {
		t.Fatalf("a refused request reached an emulator: %v vs %v", got, after)
	}
	hr, err := h.hc.Get(h.gw + "/-/healthz")
	if err != nil || hr.StatusCode != 200 {
		t.Fatalf("health under panic: %v", err)
	}
	_ = hr.Body.Close()

	// The levers are in the audit log, with who and why.
	engage := auditActions(t, h, killswitch.OpEngage)
	cancels := auditActions(t, h, killswitch.OpCancelOrders)
	if len(engage) != 1 || !strings.HasPrefix(engage[0].Actor, "admin uid=") || engage[0].Reason != "e2e: bots compromised" {
		t.Fatalf("engage records: %+v", engage)
	}
	if len(cancels) != len(h.venues) {
		t.Fatalf("cancel records: %d", len(cancels))
	}

	// panic clear restores service.
	cl, err := h.admin.PanicClear(ctx, admin.ClearRequest{Reason: "e2e: keys rotated"})
	if err != nil || len(cl.Cleared) != 1 {
		t.Fatalf("clear: %+v %v", cl, err)
	}
	for _, v := range h.venues {
		resp, err := formCall(h, toks[2], v.id, v.read)
		if err != nil {
			t.Fatal(err)
		}
		wantOK(t, v.id, v.read, resp)
	}

	// A bot quoting a credential in its kill reason: the value is kept
	// nowhere (the reason is scrubbed before it is stored or audited).
	req, _ := http.NewRequest("POST", h.gw+"/-/kill", strings.NewReader(`{"reason":"leaked `+bf["password"]+`"}`))
	req.Header.Set("Authorization", "Bearer "+toks[3])
	if resp, err := h.hc.Do(req); err != nil || resp.StatusCode != 200 || resp.Body.Close() != nil {
		t.Fatalf("kill with a secret in the reason: %v", err)
	}
	resJSON, _ := json.Marshal(res)
	if found := findNeedles(string(resJSON), canaryNeedles(map[string]map[string]string{sandbox.VenueBetfair: bf})); len(found) > 0 {
		t.Fatalf("panic answer leaks %v", found)
	}
	if _, leaks := sweepDataDir(t, h.dataDir, canaryNeedles(map[string]map[string]string{sandbox.VenueBetfair: bf})); len(leaks) > 0 {
		t.Fatalf("credential in the data dir: %v", leaks)
	}

	if st, err := h.admin.KillSwitch(ctx); err != nil || len(st.Trips) != 1 || strings.Contains(st.Trips[0].Reason, bf["password"]) {
		t.Fatalf("the bot's trip: %+v %v", st, err)
	}
}

func mapsEqual(a, b map[string]int64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestE2EBotKill: a bot trips the switch for itself with POST /-/kill; it
// is refused afterwards (another bot is not), cannot lift it (no bot
// lever turns it off), and with the admin second factor enrolled an
// admin's panic clear needs a TOTP code: refused without one (401
// mfa_required), with a wrong or replayed one, cleared with a fresh one.
// Engaging the switch never asks for a code.
func TestE2EBotKill(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	clock := &mfaClock{t: time.Now().Truncate(30 * time.Second).Add(5 * time.Second)}
	h := startHarness(t, harnessOptions{Venues: exchangeVenues()[:1], Now: clock.Now})
	ctx := context.Background()
	bot := h.botToken(t)
	other := h.botToken(t)
	v := h.venues[0]
	kill := func(tok, body string) botResponse {
		t.Helper()
		req, _ := http.NewRequest("POST", h.gw+"/-/kill", strings.NewReader(body))
		req.Header.Set("Keystile-Token", tok)
		resp, err := h.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := resp.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		return botResponse{status: resp.StatusCode, body: []byte(b.String())}
	}
	wantOK(t, v.id, v.read, h.mustCall(t, bot.Token, v.id, v.read))
	// It asks for everything; the default policy allows its own token only.
	r := kill(bot.Token, `{"scope":"all","reason":"my PnL is wrong"}`)
	var ans killswitch.BotKillAnswer
	if r.status != 200 || json.Unmarshal(r.body, &ans) != nil || ans.Scope != killswitch.BotToken || ans.Requested != killswitch.BotAll {
		t.Fatalf("kill: %d %s", r.status, r.body)
	}
	n := h.sb.Stats(v.id).Requests
	if resp := h.mustCall(t, bot.Token, v.id, v.read); resp.status != 403 || resp.errorRule() != "token.killed" {
		t.Fatalf("bot after its kill: %d %s", resp.status, resp.body)
	}
	if h.sb.Stats(v.id).Requests != n {
		t.Fatal("the killed bot's request reached the venue")
	}
	wantOK(t, v.id, v.read, h.mustCall(t, other.Token, v.id, v.read))
	// A killed bot's kill is harmless; nothing a bot sends turns it off.
	if r := kill(bot.Token, `{"scope":"token"}`); r.status != 200 || !strings.Contains(string(r.body), `"already":true`) {
		t.Fatalf("second kill: %d %s", r.status, r.body)
	}
	if r := kill(bot.Token, `{"scope":"off"}`); r.status != 200 {
		t.Fatalf("an 'off' request from a killed bot: %d %s", r.status, r.body)
	}
	if st, err := h.admin.KillSwitch(ctx); err != nil || len(st.Trips) != 1 || st.Trips[0].Scope != killswitch.ScopeToken {
		t.Fatalf("status: %+v %v", st, err)
	}
	// Only an admin clears it, with the second factor: enrol one.
	sec, err := mfa.NewSecret(nil)
	if err != nil {
		t.Fatal(err)
	}
	recovery, _ := mfa.NewRecoveryCodes(nil, mfa.DefaultRecoveryCodes)
	code := func() string {
		c, err := mfa.CodeAt(sec, clock.Now())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	if _, err := h.admin.MFAEnroll(ctx, sec.Clone(), recovery); err != nil {
		t.Fatal(err)
	}
	if _, err := h.admin.MFAConfirm(ctx, code()); err != nil {
		t.Fatal(err)
	}
	clock.Add(mfa.Period)
	clear := admin.ClearRequest{Reason: "bot restarted", Token: bot.Info.ID}
	var ae *admin.APIError
	if _, err := h.admin.PanicClear(ctx, clear); errCode(err) != "mfa_required" || !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
		t.Fatalf("clear without a code: %v", err)
	}
	wrong := "000000"
	if code() == wrong {
		wrong = "000001"
	}
	h.admin.SetMFA(admin.ClientMFA{Code: wrong})
	if _, err := h.admin.PanicClear(ctx, clear); errCode(err) != "mfa_invalid" {
		t.Fatalf("clear with a wrong code: %v", err)
	}
	if resp := h.mustCall(t, bot.Token, v.id, v.read); resp.status != 403 || resp.errorRule() != "token.killed" {
		t.Fatalf("bot after refused clears: %d %s", resp.status, resp.body)
	}
	h.admin.SetMFA(admin.ClientMFA{Code: code()})
	cl, err := h.admin.PanicClear(ctx, clear)
	if err != nil || len(cl.Cleared) != 1 {
		t.Fatalf("clear with a code: %+v %v", cl, err)
	}
	wantOK(t, v.id, v.read, h.mustCall(t, bot.Token, v.id, v.read))
	// Engaging needs no code; clearing again with the same (used) code is
	// a replay.
	h.admin.SetMFA(admin.ClientMFA{})
	if _, err := h.admin.Panic(ctx, admin.PanicRequest{Reason: "second factor enrolled: still instant", Venue: v.id}); err != nil {
		t.Fatalf("panic with a second factor enrolled, without a code: %v", err)
	}
	if resp := h.mustCall(t, other.Token, v.id, v.read); resp.status != 403 || resp.errorRule() != "token.killed" {
		t.Fatalf("other bot after the venue panic: %d %s", resp.status, resp.body)
	}
	h.admin.SetMFA(admin.ClientMFA{Code: code()})
	if _, err := h.admin.PanicClear(ctx, admin.ClearRequest{Reason: "venue checked"}); errCode(err) != "mfa_replay" {
		t.Fatalf("clear with a replayed code: %v", err)
	}
	clock.Add(mfa.Period)
	h.admin.SetMFA(admin.ClientMFA{Code: code()})
	if cl, err := h.admin.PanicClear(ctx, admin.ClearRequest{Reason: "venue checked"}); err != nil || len(cl.Cleared) != 1 {
		t.Fatalf("clear the venue: %+v %v", cl, err)
	}
	wantOK(t, v.id, v.read, h.mustCall(t, other.Token, v.id, v.read))
	recs := auditActions(t, h, killswitch.OpEngage)
	if len(recs) != 2 || recs[0].Actor != "bot" || recs[0].Reason != "my PnL is wrong" || !strings.HasPrefix(recs[1].Actor, "admin uid=") ||
		recs[1].Venue != v.id {
		t.Fatalf("audit engage: %d records", len(recs))
	}
	if clears := auditActions(t, h, killswitch.OpClear); len(clears) != 2 || clears[0].Reason != "bot restarted" || !strings.HasPrefix(clears[0].Actor, "admin uid=") {
		t.Fatalf("audit clear: %d records", len(clears))
	}
}

// TestE2ELossGuard: a loss guard caps a token's net spend; the order that
// takes it over the cap is the last one the venue sees.
func TestE2ELossGuard(t *testing.T) {
	if testing.Short() {
		t.Skip("end to end")
	}
	h := startHarness(t, harnessOptions{Venues: exchangeVenues()[:1], ExtraYAML: `killswitch:
  loss_guard:
    - {name: net, scope: token, window: 1h, max_net_spend: "100 USDT"}
`})
	bot := h.botToken(t)
	order := func(i int) botResponse {
		r := botRequest{"POST", fmt.Sprintf("/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000&newClientOrderId=lg-%d", i), ""}
		resp, err := formCall(h, bot.Token, sandbox.VenueBinance, r)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// 30 USDT each: the fourth takes the net spend to 120 USDT.
	for i := 1; i <= 4; i++ {
		if r := order(i); r.status != 200 {
			t.Fatalf("order %d: %d %s", i, r.status, r.body)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for !h.srv.KillSwitch().Covers(token.ID(bot.Info.ID), sandbox.VenueBinance) {
		if time.Now().After(deadline) {
			t.Fatal("the loss guard did not trip")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if r := order(5); r.status != 403 || r.errorRule() != "token.killed" {
		t.Fatalf("order after the trip: %d %s", r.status, r.body)
	}
	if n := h.sb.Stats(sandbox.VenueBinance).Orders; n != 4 {
		t.Fatalf("the venue saw %d orders, want 4", n)
	}
	// The trip is in force before its audit record is durable: wait for it.
	var recs []audit.Record
	for deadline := time.Now().Add(5 * time.Second); len(recs) == 0 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		recs = auditActions(t, h, killswitch.OpEngage)
	}
	if len(recs) != 1 || recs[0].Rule != "killswitch.loss_guard.net" || !strings.Contains(recs[0].Reason, "net spend 120 USDT") {
		t.Fatalf("audit: %+v", recs)
	}
}
