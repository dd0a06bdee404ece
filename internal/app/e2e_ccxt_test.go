package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/sandbox"
)

// EnvCCXT names the node_modules directory holding the pinned ccxt
// (sdktest/node/package-lock.json); .ci/run installs it and sets it.
const EnvCCXT = "KEYSTILE_SDKTEST_NODE_MODULES"

// sdkProxyHosts are the real hosts each exchange's SDK dials (ccxt's
// default URLs); the sandbox venues take their CONNECTs (proxy_hosts).
var sdkProxyHosts = map[string][]string{
	sandbox.VenueBinance:  {"api.binance.com", "fapi.binance.com", "dapi.binance.com"},
	sandbox.VenueKraken:   {"api.kraken.com"},
	sandbox.VenueOKX:      {"www.okx.com"},
	sandbox.VenueBybit:    {"api.bybit.com"},
	sandbox.VenueCoinbase: {"api.coinbase.com"},
}

// ccxtExchange is one exchange of the ccxt plan.
type ccxtExchange struct {
	ID           string            `json:"id"`
	Symbol       string            `json:"symbol"`
	Amount       float64           `json:"amount"`
	Price        float64           `json:"price"`
	DeniedAmount float64           `json:"denied_amount"`
	Credentials  map[string]string `json:"credentials"`
	// deniedClass is the ccxt exception class keystile's refusal (in the
	// venue's error format) maps to.
	deniedClass string
}

// ccxtPlan is the README's ccxt settings: placeholders where ccxt wants
// credentials (keystile signs), the token in the proxy URL.
func ccxtPlan() []ccxtExchange {
	ph := map[string]string{"apiKey": "placeholder", "secret": "placeholder"}
	return []ccxtExchange{
		{ID: "binance", Symbol: "BTC/USDT", Amount: 0.001, Price: 30000, DeniedAmount: 5, Credentials: ph, deniedClass: "InvalidOrder"},
		// ccxt base64-decodes Kraken's secret.
		{ID: "kraken", Symbol: "BTC/USD", Amount: 0.01, Price: 30000, DeniedAmount: 5,
			Credentials: map[string]string{"apiKey": "placeholder", "secret": "cGxhY2Vob2xkZXI="}, deniedClass: "PermissionDenied"},
		{ID: "okx", Symbol: "BTC/USDT", Amount: 0.1, Price: 30000, DeniedAmount: 5,
			Credentials: map[string]string{"apiKey": "placeholder", "secret": "placeholder", "password": "placeholder"}, deniedClass: "AccountSuspended"},
		{ID: "bybit", Symbol: "BTC/USDT", Amount: 0.1, Price: 30000, DeniedAmount: 5, Credentials: ph, deniedClass: "PermissionDenied"},
		{ID: "coinbase", Symbol: "BTC/USD", Amount: 0.01, Price: 30000, DeniedAmount: 5, Credentials: ph, deniedClass: "PermissionDenied"},
	}
}

// ccxtStep is one line of the suite's output.
type ccxtStep struct {
	Exchange   string   `json:"exchange"`
	Step       string   `json:"step"`
	OK         bool     `json:"ok"`
	ErrorClass string   `json:"error_class"`
	ErrorChain []string `json:"error_chain"`
	Message    string   `json:"message"`
	Markets    int      `json:"markets"`
	HasSymbol  bool     `json:"has_symbol"`
	ID         string   `json:"id"`
	CCXT       string   `json:"ccxt"`
}

// TestE2ECCXT runs unmodified ccxt (pinned in sdktest/node) through the
// forward proxy against the sandbox's five exchanges: loadMarkets,
// fetchBalance, a limit order and its cancel, and an order keystile's
// policy denies, which ccxt must raise as the venue's mapped exception.
// What the emulators received is checked: keystile's signatures with the
// vault's keys, none of ccxt's placeholders or of the token.
func TestE2ECCXT(t *testing.T) {
	modules := os.Getenv(EnvCCXT)
	if modules == "" {
		t.Skipf("%s is not set: .ci/run installs the pinned ccxt (sdktest/node) and sets it", EnvCCXT)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("%s is set but node is not on PATH: %v", EnvCCXT, err)
	}
	rec := &received{}
	h := startHarness(t, harnessOptions{Venues: exchangeVenues(), ExtraYAML: fwdPolicy, Received: rec.add,
		Configure: func(_ sandbox.Info, cfg *config.Config) {
			for id, hosts := range sdkProxyHosts {
				vc := cfg.Venues[id]
				vc.ProxyHosts = hosts
				cfg.Venues[id] = vc
			}
		}})
	m := h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "fwd", CIDRs: []string{"127.0.0.1/32", "::1/128"}})
	_, caPEM := h.caPool(t)
	caFile := filepath.Join(t.TempDir(), "keystile-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	exchanges := ccxtPlan()
	plan, err := json.Marshal(map[string]any{"proxy": "http://keystile:" + m.Token + "@" + h.srv.ProxyAddr(), "exchanges": exchanges})
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("../../sdktest/node/ccxt_suite.js")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, script) // #nosec G204 -- the test's own script
	cmd.Env = append(os.Environ(), "NODE_PATH="+modules, "NODE_EXTRA_CA_CERTS="+caFile, "KEYSTILE_CCXT_PLAN="+string(plan),
		"HTTPS_PROXY=", "HTTP_PROXY=", "NO_PROXY=")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ccxt suite: %v\nstdout:\n%s\nstderr:\n%s", err, out, stderr.String())
	}
	steps := map[string]map[string]ccxtStep{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var s ccxtStep
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("ccxt suite printed %q: %v", sc.Text(), err)
		}
		if s.Step == "version" {
			t.Logf("ccxt %s", s.CCXT)
			continue
		}
		if steps[s.Exchange] == nil {
			steps[s.Exchange] = map[string]ccxtStep{}
		}
		steps[s.Exchange][s.Step] = s
	}
	passed := 0
	for _, x := range exchanges {
		ok := t.Run(x.ID, func(t *testing.T) {
			got := steps[x.ID]
			for _, name := range []string{"loadMarkets", "fetchBalance", "createOrder", "cancelOrder"} {
				s, seen := got[name]
				if !seen || !s.OK {
					t.Errorf("%s: %+v", name, s)
				}
			}
			if s := got["loadMarkets"]; !s.HasSymbol || s.Markets == 0 {
				t.Errorf("loadMarkets: %s missing among %d markets", x.Symbol, s.Markets)
			}
			d := got["createOrderDenied"]
			if d.OK || d.ErrorClass != x.deniedClass || !contains(d.ErrorChain, "ExchangeError") {
				t.Errorf("denied order: want %s (an ExchangeError), got %+v", x.deniedClass, d)
			}
			if !strings.Contains(d.Message, "policy.fwd.max_quantity") {
				t.Errorf("denied order: the message does not name keystile's rule: %q", d.Message)
			}
			// What reached the emulator: keystile's signatures with the
			// vault's credential (the emulator verified them), never the
			// token nor ccxt's placeholders.
			creds := h.info.Venues[x.ID].Credentials
			var n int
			for _, r := range rec.since(x.ID, 0) {
				n++
				raw := rawReceived(r)
				if strings.Contains(raw, m.Token) {
					t.Errorf("the kst_ token reached the venue: %s %s", r.Method, r.RequestURI)
				}
				if strings.Contains(raw, "placeholder") || strings.Contains(raw, x.Credentials["secret"]) {
					t.Errorf("a ccxt placeholder reached the venue:\n%s", raw)
				}
				if key := creds["api_key"]; key != "" && x.ID != sandbox.VenueCoinbase && sentKey(x.ID, r) != "" && sentKey(x.ID, r) != key {
					t.Errorf("%s %s: the venue got API key %q, not the vault's", r.Method, r.RequestURI, sentKey(x.ID, r))
				}
			}
			if n < 4 {
				t.Errorf("the emulator received %d requests", n)
			}
		})
		if ok {
			passed++
		}
	}
	t.Logf("ccxt suite: %d/%d exchanges pass", passed, len(exchanges))
	if t.Failed() {
		t.Logf("ccxt output:\n%s\nstderr:\n%s", out, stderr.String())
	}
}

// sentKey is the API key a received request carried in the venue's own
// header ("" if none: public reads).
func sentKey(venueID string, r sandbox.Received) string {
	switch venueID {
	case sandbox.VenueBinance:
		return r.Header.Get("X-Mbx-Apikey")
	case sandbox.VenueKraken:
		return r.Header.Get("Api-Key")
	case sandbox.VenueOKX:
		return r.Header.Get("Ok-Access-Key")
	case sandbox.VenueBybit:
		return r.Header.Get("X-Bapi-Api-Key")
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
