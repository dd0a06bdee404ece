package binance

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	gobinance "github.com/adshao/go-binance/v2"
	"github.com/adshao/go-binance/v2/common"

	"github.com/keystile/keystile/internal/sandbox"
)

// recorder keeps what the emulator received.
type recorder struct {
	mu  sync.Mutex
	got []sandbox.Received
}

func (r *recorder) add(x sandbox.Received) {
	r.mu.Lock()
	r.got = append(r.got, x)
	r.mu.Unlock()
}

func (r *recorder) all() []sandbox.Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sandbox.Received(nil), r.got...)
}

// result is what one run of the SDK did.
type result struct {
	Symbols   []string `json:"symbols"`
	BTCFree   string   `json:"btc_free"`
	OrderID   int64    `json:"order_id"`
	Cancelled int64    `json:"cancelled"`
	// DeniedCode and DeniedMsg are the *common.APIError the SDK raised
	// for the order keystile's policy refuses.
	DeniedCode int64  `json:"denied_code"`
	DeniedMsg  string `json:"denied_msg"`
	Err        string `json:"err"`
}

// drive runs the SDK's calls: exchange information, the account, a limit
// order and its cancel, and an order over the policy's max_quantity.
func drive(ctx context.Context, c *gobinance.Client) result {
	var res result
	info, err := c.NewExchangeInfoService().Do(ctx)
	if err != nil {
		res.Err = "exchange info: " + err.Error()
		return res
	}
	for _, s := range info.Symbols {
		res.Symbols = append(res.Symbols, s.Symbol)
	}
	acct, err := c.NewGetAccountService().Do(ctx)
	if err != nil {
		res.Err = "account: " + err.Error()
		return res
	}
	for _, b := range acct.Balances {
		if b.Asset == "BTC" {
			res.BTCFree = b.Free
		}
	}
	o, err := c.NewCreateOrderService().Symbol("BTCUSDT").Side(gobinance.SideTypeBuy).Type(gobinance.OrderTypeLimit).
		TimeInForce(gobinance.TimeInForceTypeGTC).Quantity("0.001").Price("30000").Do(ctx)
	if err != nil {
		res.Err = "create order: " + err.Error()
		return res
	}
	res.OrderID = o.OrderID
	cx, err := c.NewCancelOrderService().Symbol("BTCUSDT").OrderID(o.OrderID).Do(ctx)
	if err != nil {
		res.Err = "cancel order: " + err.Error()
		return res
	}
	res.Cancelled = cx.OrderID
	_, err = c.NewCreateOrderService().Symbol("BTCUSDT").Side(gobinance.SideTypeBuy).Type(gobinance.OrderTypeLimit).
		TimeInForce(gobinance.TimeInForceTypeGTC).Quantity("5").Price("30000").Do(ctx)
	var apiErr *common.APIError
	if !errors.As(err, &apiErr) {
		res.Err = "denied order: not an APIError: " + errString(err)
		return res
	}
	res.DeniedCode, res.DeniedMsg = apiErr.Code, apiErr.Message
	return res
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// check asserts what the SDK saw and what reached the venue.
func check(t *testing.T, s *setup, res result) {
	t.Helper()
	if res.Err != "" {
		t.Fatalf("go-binance: %s", res.Err)
	}
	if len(res.Symbols) == 0 || res.Symbols[0] != "BTCUSDT" || res.BTCFree == "" {
		t.Errorf("exchange info / account: %+v", res)
	}
	if res.OrderID == 0 || res.Cancelled != res.OrderID {
		t.Errorf("order %d, cancelled %d", res.OrderID, res.Cancelled)
	}
	if res.DeniedCode != -2010 || !strings.Contains(res.DeniedMsg, "policy.sdk.max_quantity") {
		t.Errorf("denied order: code %d %q", res.DeniedCode, res.DeniedMsg)
	}
	key := s.sb.Info().Venues[sandbox.VenueBinance].Credentials["api_key"]
	signed := 0
	for _, r := range s.received() {
		raw := r.Method + " " + r.RequestURI + "\n" + string(r.Body)
		for k, v := range r.Header {
			raw += "\n" + k + ": " + strings.Join(v, ",")
		}
		if strings.Contains(raw, "placeholder") || strings.Contains(raw, s.token) {
			t.Errorf("the SDK's key or the token reached the venue:\n%s", raw)
		}
		if strings.Count(r.RequestURI+"&"+string(r.Body), "signature=") > 1 {
			t.Errorf("two signatures reached the venue: %s", r.RequestURI)
		}
		if strings.Contains(r.RequestURI+string(r.Body), "signature=") {
			signed++
			if r.Header.Get("X-MBX-APIKEY") != key {
				t.Errorf("%s %s went out without the vault's API key", r.Method, r.RequestURI)
			}
		}
	}
	if signed < 3 {
		t.Errorf("%d signed requests reached the venue, want account, order and cancel", signed)
	}
}

// TestGoBinanceTransport: go-binance with its HTTPClient given a transport
// whose Proxy is keystile's forward proxy (the token as the proxy user)
// and whose roots are the exported CA — the README's constructor setting.
func TestGoBinanceTransport(t *testing.T) {
	s := start(t)
	pem, err := os.ReadFile(s.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("exported CA is not PEM")
	}
	proxy := &url.URL{Scheme: "http", User: url.User(s.token), Host: s.proxyAddr}
	c := gobinance.NewClient("placeholder", "placeholder")
	tr := &http.Transport{Proxy: http.ProxyURL(proxy), TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	t.Cleanup(tr.CloseIdleConnections)
	c.HTTPClient = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	check(t, s, drive(ctx, c))
}

// envChild marks the child process of TestGoBinanceEnvironment.
const envChild = "KEYSTILE_SDKTEST_GO_CHILD"

// TestGoBinanceEnvironment: go-binance exactly as a bot constructs it
// (gobinance.NewClient, http.DefaultClient), configured by nothing but
// HTTPS_PROXY and SSL_CERT_FILE — the README's environment setting. Go
// reads both once per process, so the SDK runs in a child process.
func TestGoBinanceEnvironment(t *testing.T) {
	if os.Getenv(envChild) == "1" {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res := drive(ctx, gobinance.NewClient("placeholder", "placeholder"))
		_ = json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	s := start(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^TestGoBinanceEnvironment$", "-test.count=1") // #nosec G204 -- the test binary itself
	cmd.Env = append(os.Environ(), envChild+"=1",
		"HTTPS_PROXY=http://"+s.token+"@"+s.proxyAddr, "SSL_CERT_FILE="+s.caFile, "NO_PROXY=", "no_proxy=", "https_proxy=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var res result
	line := out
	if i := strings.IndexByte(string(out), '{'); i >= 0 {
		line = out[i:]
	}
	if err := json.NewDecoder(strings.NewReader(string(line))).Decode(&res); err != nil {
		t.Fatalf("child printed %q: %v", out, err)
	}
	check(t, s, res)
}
