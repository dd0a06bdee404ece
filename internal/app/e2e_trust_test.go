package app_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/sandbox"
)

// TestE2EDuplicateOrderParams: on every exchange, through the sandbox, an
// order naming a parameter twice (a quantity twice, a symbol in two
// places, a duplicate JSON key, nested or in another letter case) is
// refused with 400 venue.duplicate_parameter without any policy, and
// nothing reaches the venue.
func TestE2EDuplicateOrderParams(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: exchangeVenues()})
	tok := h.botToken(t).Token
	for _, tc := range []struct {
		venue, name string
		r           botRequest
	}{
		{"binance", "quantity twice", botRequest{"POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000&quantity=10", ""}},
		{"binance", "query and body", botRequest{"POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000", "quantity=10"}},
		{"kraken", "volume twice", botRequest{"POST", "/0/private/AddOrder", "pair=XBTUSD&type=buy&ordertype=limit&price=30000&volume=0.01&volume=10"}},
		{"kraken", "pair in query and body", botRequest{"POST", "/0/private/AddOrder?pair=ETHUSD", "pair=XBTUSD&type=buy&ordertype=limit&price=30000&volume=0.01"}},
		{"okx", "sz twice", botRequest{"POST", "/api/v5/trade/order", `{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"1","sz":"2","sz":"2000"}`}},
		{"bybit", "symbol in another case", botRequest{"POST", "/v5/order/create", `{"category":"spot","symbol":"BTCUSDT","SYMBOL":"ETHUSDT","side":"Buy","orderType":"Limit","qty":"0.1","price":"1"}`}},
		{"coinbase", "nested base_size twice", botRequest{"POST", "/api/v3/brokerage/orders", `{"client_order_id":"e2e-dup","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.01","base_size":"10","limit_price":"100"}}}`}},
	} {
		t.Run(tc.venue+" "+tc.name, func(t *testing.T) {
			before := h.sb.Stats(tc.venue)
			resp, err := formCall(h, tok, tc.venue, tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if resp.status != http.StatusBadRequest || resp.errorRule() != "venue.duplicate_parameter" {
				t.Fatalf("status %d rule %q, want 400 venue.duplicate_parameter: %s", resp.status, resp.errorRule(), resp.body)
			}
			after := h.sb.Stats(tc.venue)
			if after.Requests != before.Requests || after.Orders != before.Orders {
				t.Fatalf("the venue saw %d requests, %d orders", after.Requests-before.Requests, after.Orders-before.Orders)
			}
		})
	}
}

// TestE2ERevokedTokenDoesNotLockOutOthers: every bot on a host shares the
// loopback address. A revoked bot retrying 30 times (past the failure
// burst) gets 401 and then 429 token.retry_limit, while a different valid
// token from the same address keeps reaching the venue after every one of
// those retries.
func TestE2ERevokedTokenDoesNotLockOutOthers(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: binanceOnly()})
	ctx := context.Background()
	req := admin.CreateTokenRequest{Test: true, Venues: []string{sandbox.VenueBinance}, CIDRs: []string{"127.0.0.1/32", "::1/128"}}
	good := h.mint(t, req)
	req.Name = "revoked-bot"
	old := h.mint(t, req)
	if _, err := h.admin.TokenAction(ctx, old.Info.ID, "revoke"); err != nil {
		t.Fatal(err)
	}
	read := binanceOnly()[0].read
	limited := 0
	for i := range 30 {
		resp := h.mustCall(t, old.Token, sandbox.VenueBinance, read)
		switch {
		case resp.status == http.StatusUnauthorized && resp.errorRule() == "token.revoked":
		case resp.status == http.StatusTooManyRequests && resp.errorRule() == "token.retry_limit":
			limited++
		default:
			t.Fatalf("revoked retry %d: %d %s", i, resp.status, resp.body)
		}
		ok := h.mustCall(t, good.Token, sandbox.VenueBinance, read)
		wantOK(t, sandbox.VenueBinance, read, ok)
	}
	if limited == 0 {
		t.Fatal("30 retries of a revoked token were never limited")
	}
}

// cappedPolicy limits every order to 100 (USDT or USD).
const cappedPolicy = `policies:
  capped:
    operations: ["market.read", "account.read", "order.*"]
    max_notional: ["100 USDT", "100 USD"]
`

// TestE2EFakePriceMarketOrders: market orders carrying their own price
// (and the other ways of naming a price or a size the venue does not
// execute at) are judged at each venue's reference price, read from the
// sandbox's public ticker: all get 403 and the sandbox records none of
// them, while honest small orders of the same kinds go through.
func TestE2EFakePriceMarketOrders(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: exchangeVenues(), ExtraYAML: cappedPolicy})
	tok := h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "capped", Scopes: []string{"market.read", "account.read", "order.*"}}).Token
	for _, tc := range []struct {
		venue, name, rule string
		r                 botRequest
	}{
		{"binance", "MARKET with price=1", "max_notional",
			botRequest{"POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=MARKET&quantity=10&price=1", ""}},
		{"binance", "MARKET quantity=1 and quoteOrderQty=50", "unreadable_order",
			botRequest{"POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=MARKET&quantity=1&quoteOrderQty=50", ""}},
		{"binance", "STOP_LOSS with stopPrice=1", "max_notional",
			botRequest{"POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=STOP_LOSS&quantity=10&stopPrice=1", ""}},
		{"binance", "SELL LIMIT far below the market", "max_notional",
			botRequest{"POST", "/api/v3/order?symbol=BTCUSDT&side=SELL&type=LIMIT&timeInForce=GTC&quantity=10&price=1", ""}},
		{"kraken", "market with price=1", "max_notional",
			botRequest{"POST", "/0/private/AddOrder", "pair=XBTUSD&type=buy&ordertype=market&price=1&volume=10"}},
		{"kraken", "stop-loss triggered at 1", "max_notional",
			botRequest{"POST", "/0/private/AddOrder", "pair=XBTUSD&type=sell&ordertype=stop-loss&price=1&volume=10"}},
		{"okx", "market with px=1", "max_notional",
			botRequest{"POST", "/api/v5/trade/order", `{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","px":"1","sz":"10","tgtCcy":"base_ccy"}`}},
		{"okx", "margin market buy in base", "max_notional",
			botRequest{"POST", "/api/v5/trade/order", `{"instId":"BTC-USDT","tdMode":"cross","side":"buy","ordType":"market","sz":"10","tgtCcy":"base_ccy"}`}},
		{"bybit", "Market with price", "max_notional",
			botRequest{"POST", "/v5/order/create", `{"category":"spot","symbol":"BTCUSDT","side":"Sell","orderType":"Market","qty":"10","price":"1"}`}},
		{"bybit", "Market buy in base coin", "max_notional",
			botRequest{"POST", "/v5/order/create", `{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"10","marketUnit":"baseCoin"}`}},
		{"coinbase", "market with a limit_price", "max_notional",
			botRequest{"POST", "/api/v3/brokerage/orders", `{"client_order_id":"fake-1","product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"base_size":"10","limit_price":"1"}}}`}},
	} {
		t.Run(tc.venue+" "+tc.name, func(t *testing.T) {
			before := h.sb.Stats(tc.venue).Orders
			resp, err := formCall(h, tok, tc.venue, tc.r)
			if err != nil {
				t.Fatal(err)
			}
			if resp.status != http.StatusForbidden || resp.errorRule() != "policy.capped."+tc.rule {
				t.Fatalf("status %d rule %q, want 403 policy.capped.%s: %s", resp.status, resp.errorRule(), tc.rule, resp.body)
			}
			if got := h.sb.Stats(tc.venue).Orders - before; got != 0 {
				t.Fatalf("the sandbox recorded %d orders", got)
			}
		})
	}
	for _, tc := range []struct {
		venue string
		r     botRequest
	}{
		{"binance", botRequest{"POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=MARKET&quantity=0.001", ""}},
		{"kraken", botRequest{"POST", "/0/private/AddOrder", "pair=XBTUSD&type=buy&ordertype=market&volume=0.001"}},
		{"okx", botRequest{"POST", "/api/v5/trade/order", `{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"market","sz":"50"}`}},
		{"bybit", botRequest{"POST", "/v5/order/create", `{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Market","qty":"50"}`}},
		{"coinbase", botRequest{"POST", "/api/v3/brokerage/orders", `{"client_order_id":"honest-1","product_id":"BTC-USD","side":"BUY","order_configuration":{"market_market_ioc":{"quote_size":"50"}}}`}},
	} {
		t.Run(tc.venue+" honest market order", func(t *testing.T) {
			before := h.sb.Stats(tc.venue).Orders
			resp, err := formCall(h, tok, tc.venue, tc.r)
			if err != nil {
				t.Fatal(err)
			}
			wantOK(t, tc.venue, tc.r, resp)
			if got := h.sb.Stats(tc.venue).Orders - before; got != 1 {
				t.Fatalf("the sandbox recorded %d orders, want 1", got)
			}
		})
	}
}

// moveTo stops keystile, moves its data dir to dir and starts a new
// server there with the same config.
func (h *harness) moveTo(t *testing.T, dir string) {
	t.Helper()
	if err := h.stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(h.dataDir, dir); err != nil {
		t.Fatal(err)
	}
	h.serveOn(t, dir)
}

// serveOn starts a new server on the data dir dir (the running one must
// be stopped) and points the admin client at it.
func (h *harness) serveOn(t *testing.T, dir string) {
	t.Helper()
	h.dataDir = dir
	h.restart(t)
	c, err := admin.NewClient(filepath.Join(dir, app.SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	h.admin = c
}

// TestE2EMovedDataDirServes: a data dir moved elsewhere (its old path
// gone) serves: the vault opens with the data dir's own key file, the
// token minted before the move is honoured and the venue credential signs
// requests the sandbox accepts.
func TestE2EMovedDataDirServes(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: binanceOnly()})
	tok := h.botToken(t).Token
	read := binanceOnly()[0].read
	wantOK(t, sandbox.VenueBinance, read, h.mustCall(t, tok, sandbox.VenueBinance, read))
	old := h.dataDir
	h.moveTo(t, filepath.Join(t.TempDir(), "moved", "data"))
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Fatalf("the old data dir is still there: %v", err)
	}
	before := h.sb.Stats(sandbox.VenueBinance)
	wantOK(t, sandbox.VenueBinance, read, h.mustCall(t, tok, sandbox.VenueBinance, read))
	order := binanceOnly()[0].order
	wantOK(t, sandbox.VenueBinance, order, h.mustCall(t, tok, sandbox.VenueBinance, order))
	after := h.sb.Stats(sandbox.VenueBinance)
	if after.AuthFailures != before.AuthFailures || after.Orders != before.Orders+1 {
		t.Fatalf("after the move: %d auth failures, %d orders", after.AuthFailures-before.AuthFailures, after.Orders-before.Orders)
	}
}

// TestE2EBackupRestoreRoundTrip: a backup taken while bots place orders
// holds no secret in clear and no master key; restored into another data
// dir with a copy of the key file, it serves: the token minted before the
// backup is honoured, the credential signs, the restored audit log
// verifies.
func TestE2EBackupRestoreRoundTrip(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: binanceOnly()})
	ctx := context.Background()
	tok := h.botToken(t).Token
	v := binanceOnly()[0]
	wantOK(t, v.id, v.order, h.mustCall(t, tok, v.id, v.order))

	// Bots keep trading while the backup is taken.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var traffic atomic.Int64
	for b := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				r := v.read
				if i%2 == 0 {
					r = botRequest{"POST", strings.Replace(v.order.path, "e2e-1", fmt.Sprintf("bk-%d-%d", b, i), 1), ""}
				}
				if resp, err := h.call(tok, v.id, r); err == nil && resp.status == http.StatusOK {
					traffic.Add(1)
				}
			}
		}()
	}
	for traffic.Load() < 10 {
		time.Sleep(5 * time.Millisecond)
	}
	archive := filepath.Join(t.TempDir(), "keystile-backup.tgz")
	res, err := app.Backup(ctx, app.BackupOptions{DataDir: h.dataDir, Config: h.cfg, Archive: archive})
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("backup while serving: %v", err)
	}
	if res.KeyFile != filepath.Join(h.dataDir, app.KeyFile) || res.Manifest.MasterKey.Included {
		t.Fatalf("backup key: %+v", res)
	}
	names := map[string]bool{}
	for _, f := range res.Manifest.Files {
		names[f.Name] = true
	}
	if !names[app.DBFile] || !names[app.AuditDBFile] {
		t.Fatalf("backup members %+v", res.Manifest.Files)
	}

	// Nothing secret in the archive: the credential values, the master
	// key, in any encoding (the database members are read as stored).
	key, err := os.ReadFile(filepath.Join(h.dataDir, app.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	needles := []needle{{"master key", strings.TrimSpace(string(key))}}
	for k, val := range h.info.Venues[v.id].Credentials {
		needles = append(needles, encodedForms(v.id+"."+k, val)...)
	}
	for name, data := range archiveMembers(t, archive) {
		if found := findNeedles(string(data), needles); len(found) > 0 {
			t.Fatalf("backup member %s holds %v", name, found)
		}
	}

	// Restore next to it and serve from there.
	restored := filepath.Join(t.TempDir(), "restored")
	rr, err := app.Restore(ctx, app.RestoreOptions{Archive: archive, DataDir: restored, KeyFile: res.KeyFile})
	if err != nil || !rr.Verified || rr.KeyFile != filepath.Join(restored, app.KeyFile) {
		t.Fatalf("restore: %+v %v", rr, err)
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	// The local CA the bots trust comes back with it (its certificate is
	// a member, its key is in the database).
	if a, b := readFile(t, filepath.Join(h.dataDir, app.LocalCAFile)), readFile(t, filepath.Join(restored, app.LocalCAFile)); !bytes.Equal(a, b) || len(a) == 0 {
		t.Fatal("the restored data dir has another local CA certificate")
	}
	h.serveOn(t, restored)
	before := h.sb.Stats(v.id)
	wantOK(t, v.id, v.read, h.mustCall(t, tok, v.id, v.read))
	if after := h.sb.Stats(v.id); after.AuthFailures != before.AuthFailures {
		t.Fatal("the restored credential did not sign")
	}
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	db, vlt, err := app.OpenVault(ctx, app.Env{}, restored, h.cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	defer vlt.Close(ctx)
	keys, err := app.AuditKeys(ctx, vlt)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := app.OpenAuditReader(ctx, h.cfg, restored)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	rep, err := audit.Verify(ctx, rd, keys.PublicKey())
	if err != nil || rep.Records < 10 {
		t.Fatalf("restored audit log: %+v %v", rep, err)
	}
}

// archiveMembers reads a backup archive's members.
func archiveMembers(t *testing.T, path string) map[string][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[hdr.Name] = b
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path) // #nosec G304 -- a test's own file
	if err != nil {
		t.Fatal(err)
	}
	return b
}
