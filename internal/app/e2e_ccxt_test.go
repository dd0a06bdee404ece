package app_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/secret"
)

// EnvCCXT names the node_modules directory holding the pinned ccxt
// (sdktest/node/package-lock.json); .ci/run installs it and sets it.
const EnvCCXT = "KEYSTILE_SDKTEST_NODE_MODULES"

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
	Last       float64  `json:"last"`
	HasOrder   bool     `json:"has_order"`
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
	// Each request is checked against the venue's verifier with the
	// vault's credential as it arrives (the signatures' time windows).
	rec := &verifiedLog{}
	h := startHarness(t, harnessOptions{Venues: exchangeVenues(), ExtraYAML: fwdPolicy, Received: rec.add,
		Configure: func(_ sandbox.Info, cfg *config.Config) {
			// The real hosts ccxt dials (what sandbox --configure writes).
			for id, vc := range cfg.Venues {
				vc.ProxyHosts = sandbox.SDKHosts(id)
				cfg.Venues[id] = vc
			}
		}})
	rec.setInfo(h.info)
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
			for _, name := range []string{"loadMarkets", "fetchTicker", "fetchBalance", "createOrder", "fetchOpenOrders", "cancelOrder"} {
				s, seen := got[name]
				if !seen || !s.OK {
					t.Errorf("%s: %+v", name, s)
				}
			}
			if s := got["loadMarkets"]; !s.HasSymbol || s.Markets == 0 {
				t.Errorf("loadMarkets: %s missing among %d markets", x.Symbol, s.Markets)
			}
			if s := got["fetchTicker"]; s.Last <= 0 {
				t.Errorf("fetchTicker: last %v", s.Last)
			}
			if s := got["fetchOpenOrders"]; !s.HasOrder {
				t.Errorf("fetchOpenOrders: the order placed is not among them: %+v", s)
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
			for _, v := range rec.snapshot() {
				r := v.x
				if r.Venue != x.ID {
					continue
				}
				n++
				if err := v.err; err != nil {
					t.Errorf("%s %s: not signed with the vault's credential: %v", r.Method, r.RequestURI, err)
				}
				if c := signatureCount(x.ID, r); c > 1 {
					t.Errorf("%s %s: %d signatures reached the venue (the SDK's and keystile's)", r.Method, r.RequestURI, c)
				}
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

// verifiedLog records what the emulators received, each request with
// verifyReceived's verdict taken on arrival.
type verifiedLog struct {
	mu   sync.Mutex
	info *sandbox.Info
	all  []verifiedRequest
}

type verifiedRequest struct {
	x   sandbox.Received
	err error
}

func (l *verifiedLog) setInfo(info sandbox.Info) {
	l.mu.Lock()
	l.info = &info
	l.mu.Unlock()
}

func (l *verifiedLog) add(x sandbox.Received) {
	l.mu.Lock()
	defer l.mu.Unlock()
	err := errors.New("received before the test knew the credentials")
	if l.info != nil {
		err = verifyReceived(l.info.Venues[x.Venue], x, time.Now())
	}
	l.all = append(l.all, verifiedRequest{x, err})
}

func (l *verifiedLog) snapshot() []verifiedRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]verifiedRequest(nil), l.all...)
}

// verifyReceived checks a request an exchange emulator received with the
// venue's own verifier and the credential the vault holds: a request
// carrying the venue's key header must verify; one without it (public
// market data) must carry no signature at all.
func verifyReceived(info sandbox.VenueInfo, x sandbox.Received, now time.Time) error {
	c := info.Credentials
	path, rawQuery, _ := strings.Cut(x.RequestURI, "?")
	if sentKey(x.Venue, x) == "" && x.Header.Get("Authorization") == "" {
		if signatureCount(x.Venue, x) > 0 || strings.Contains(rawQuery, "timestamp=") {
			return errors.New("a public request went out with a signature or timestamp")
		}
		return nil
	}
	switch x.Venue {
	case sandbox.VenueBinance:
		if !strings.Contains(rawQuery+string(x.Body), "signature=") {
			return nil // MARKET_DATA: the key alone
		}
		return sandbox.VerifyBinance(rawQuery, x.Body, x.Header, sandbox.BinanceKey{APIKey: c["api_key"], Secret: []byte(c["secret"])}, now)
	case sandbox.VenueKraken:
		sec, err := base64.StdEncoding.DecodeString(c["secret"])
		if err != nil {
			return err
		}
		_, err = sandbox.VerifyKraken(path, x.Body, x.Header, c["api_key"], sec)
		return err
	case sandbox.VenueOKX:
		return sandbox.VerifyOKX(x.Method, x.RequestURI, x.Body, x.Header, secret.FromString(c["api_key"]),
			secret.FromString(c["secret"]), secret.FromString(c["passphrase"]), now)
	case sandbox.VenueBybit:
		return sandbox.VerifyBybit(x.Method, rawQuery, x.Body, x.Header, secret.FromString(c["api_key"]), secret.FromString(c["secret"]), now)
	case sandbox.VenueCoinbase:
		blk, _ := pem.Decode([]byte(c["private_key"]))
		if blk == nil {
			return errors.New("coinbase private key is not PEM")
		}
		k, err := x509.ParseECPrivateKey(blk.Bytes)
		if err != nil {
			return err
		}
		_, err = sandbox.VerifyCoinbase(x.Method, x.Host, path, x.Header, c["key_name"], &k.PublicKey, now)
		return err
	}
	return fmt.Errorf("no verifier for %s", x.Venue)
}

// signatureCount counts the signatures a received request carries in
// the venue's own places.
func signatureCount(venueID string, r sandbox.Received) int {
	switch venueID {
	case sandbox.VenueBinance:
		_, q, _ := strings.Cut(r.RequestURI, "?")
		n := 0
		for _, p := range strings.Split(q+"&"+string(r.Body), "&") {
			if strings.HasPrefix(p, "signature=") {
				n++
			}
		}
		return n
	case sandbox.VenueKraken:
		return len(r.Header.Values("Api-Sign"))
	case sandbox.VenueOKX:
		return len(r.Header.Values("Ok-Access-Sign"))
	case sandbox.VenueBybit:
		return len(r.Header.Values("X-Bapi-Sign"))
	case sandbox.VenueCoinbase:
		return len(r.Header.Values("Authorization")) + len(r.Header.Values("Cb-Access-Sign"))
	}
	return 0
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
