package app_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/localca"
	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/vault"
)

// fwdPolicy caps order size so that one order of each venue is denied.
const fwdPolicy = `proxy:
  listen: 127.0.0.1:0
policies:
  fwd:
    operations: ["market.read", "account.read", "order.*"]
    max_quantity: "1"
`

// received collects what the sandbox's venues received.
type received struct {
	mu  sync.Mutex
	all []sandbox.Received
}

func (r *received) add(x sandbox.Received) {
	r.mu.Lock()
	r.all = append(r.all, x)
	r.mu.Unlock()
}

// since returns what venue received after mark (a count from len()),
// leaving out keystile's own clock reads (Binance's GET /api/v3/time).
func (r *received) since(venue string, mark int) []sandbox.Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []sandbox.Received
	for _, x := range r.all[mark:] {
		if x.Venue == venue && x.RequestURI != "/api/v3/time" {
			out = append(out, x)
		}
	}
	return out
}

func (r *received) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.all)
}

// rawReceived renders a received request for searching.
func rawReceived(x sandbox.Received) string {
	var b strings.Builder
	b.WriteString(x.Method + " " + x.RequestURI + "\n")
	_ = x.Header.Write(&b)
	b.Write(x.Body)
	return b.String()
}

// fwdCase is one exchange as an unmodified SDK drives it through the
// forward proxy.
type fwdCase struct {
	id                    string
	public, read          botRequest
	order, denied         botRequest
	credHeaders           []string
	deniedShape           func(body []byte) bool // the venue's error for a policy denial
	authShape             func(body []byte) bool // the venue's error for a refused token
	publicForbiddenParams []string
}

func jsonField(body []byte, key string) string {
	var m map[string]any
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	if v, ok := m[key]; ok {
		b, _ := json.Marshal(v)
		return strings.Trim(string(b), `"`)
	}
	return ""
}

func krakenFirstError(body []byte) string {
	var m struct{ Error []string }
	if json.Unmarshal(body, &m) != nil || len(m.Error) == 0 {
		return ""
	}
	return m.Error[0]
}

// fwdCases are the five exchanges; pass makes the client order ids unique.
func fwdCases(pass string) []fwdCase {
	cases := []fwdCase{
		{id: sandbox.VenueBinance,
			public:      botRequest{"GET", "/api/v3/ticker/price?symbol=BTCUSDT", ""},
			read:        botRequest{"GET", "/api/v3/account", ""},
			order:       botRequest{"POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000&newClientOrderId=fwd-1", ""},
			denied:      botRequest{"POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=5&price=30000&newClientOrderId=fwd-2", ""},
			credHeaders: []string{"X-Mbx-Apikey"},
			deniedShape: func(b []byte) bool { return jsonField(b, "code") == "-2010" },
			authShape:   func(b []byte) bool { return jsonField(b, "code") == "-2015" },
			// A public read carries no timestamp or signature at all.
			publicForbiddenParams: []string{"signature", "timestamp", "recvWindow"}},
		{id: sandbox.VenueKraken,
			public:      botRequest{"GET", "/0/public/Ticker?pair=XBTUSD", ""},
			read:        botRequest{"POST", "/0/private/Balance", "x=1"},
			order:       botRequest{"POST", "/0/private/AddOrder", "pair=XBTUSD&type=buy&ordertype=limit&price=30000&volume=0.01&cl_ord_id=fwd-1"},
			denied:      botRequest{"POST", "/0/private/AddOrder", "pair=XBTUSD&type=buy&ordertype=limit&price=30000&volume=5&cl_ord_id=fwd-2"},
			credHeaders: []string{"Api-Key", "Api-Sign"},
			deniedShape: func(b []byte) bool { return krakenFirstError(b) == "EGeneral:Permission denied" },
			authShape:   func(b []byte) bool { return krakenFirstError(b) == "EAPI:Invalid key" }},
		{id: sandbox.VenueOKX,
			public:      botRequest{"GET", "/api/v5/market/ticker?instId=BTC-USDT", ""},
			read:        botRequest{"GET", "/api/v5/account/balance", ""},
			order:       botRequest{"POST", "/api/v5/trade/order", `{"instId":"BTC-USDT","tdMode":"cash","clOrdId":"fwd1","side":"buy","ordType":"limit","px":"1","sz":"0.1"}`},
			denied:      botRequest{"POST", "/api/v5/trade/order", `{"instId":"BTC-USDT","tdMode":"cash","clOrdId":"fwd2","side":"buy","ordType":"limit","px":"1","sz":"5"}`},
			credHeaders: []string{"Ok-Access-Key", "Ok-Access-Sign", "Ok-Access-Timestamp", "Ok-Access-Passphrase"},
			deniedShape: func(b []byte) bool { return jsonField(b, "code") == "51009" },
			authShape:   func(b []byte) bool { return jsonField(b, "code") == "50114" }},
		{id: sandbox.VenueBybit,
			public:      botRequest{"GET", "/v5/market/tickers?category=spot&symbol=BTCUSDT", ""},
			read:        botRequest{"GET", "/v5/account/wallet-balance?accountType=UNIFIED", ""},
			order:       botRequest{"POST", "/v5/order/create", `{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.1","price":"1","orderLinkId":"fwd-1"}`},
			denied:      botRequest{"POST", "/v5/order/create", `{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"5","price":"1","orderLinkId":"fwd-2"}`},
			credHeaders: []string{"X-Bapi-Api-Key", "X-Bapi-Sign", "X-Bapi-Timestamp"},
			deniedShape: func(b []byte) bool { return jsonField(b, "retCode") == "10005" },
			authShape:   func(b []byte) bool { return jsonField(b, "retCode") == "10003" }},
		{id: sandbox.VenueCoinbase,
			public:      botRequest{"GET", "/api/v3/brokerage/time", ""},
			read:        botRequest{"GET", "/api/v3/brokerage/accounts", ""},
			order:       botRequest{"POST", "/api/v3/brokerage/orders", `{"client_order_id":"fwd-1","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.01","limit_price":"100","post_only":false}}}`},
			denied:      botRequest{"POST", "/api/v3/brokerage/orders", `{"client_order_id":"fwd-2","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"5","limit_price":"100","post_only":false}}}`},
			credHeaders: []string{"Authorization"},
			deniedShape: func(b []byte) bool { return jsonField(b, "error") == "PERMISSION_DENIED" },
			authShape:   func(b []byte) bool { return jsonField(b, "error") == "UNAUTHENTICATED" }},
	}
	for i := range cases {
		for _, r := range []*botRequest{&cases[i].order, &cases[i].denied} {
			r.path = strings.ReplaceAll(r.path, "fwd-", "fwd"+pass+"-")
			r.body = strings.ReplaceAll(strings.ReplaceAll(r.body, "fwd-", "fwd"+pass+"-"), `"fwd1"`, `"fwd`+pass+`1"`)
		}
	}
	return cases
}

// caPool asks the running server for its CA (the admin API behind `ca
// export`) and returns it as a root pool and PEM.
func (h *harness) caPool(t *testing.T) (*x509.CertPool, []byte) {
	t.Helper()
	info, err := h.admin.CA(context.Background())
	if err != nil {
		t.Fatalf("ca export: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(info.PEM)) {
		t.Fatalf("the exported CA is not PEM: %q", info.PEM)
	}
	return pool, []byte(info.PEM)
}

// proxyClient is a Go client configured the way HTTPS_PROXY and
// SSL_CERT_FILE configure one: the token as proxy user, the exported CA as
// its only root. It keeps its tunnels alive.
func (h *harness) proxyClient(t *testing.T, tok string) *http.Client {
	t.Helper()
	pool, _ := h.caPool(t)
	u := &url.URL{Scheme: "http", Host: h.srv.ProxyAddr(), User: url.User(tok)}
	tr := &http.Transport{Proxy: http.ProxyURL(u), TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		MaxIdleConnsPerHost: 4, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// sdkVia sends r to the venue's real URL through the proxy, shaped as an
// unmodified SDK with sdkKey as its API key sends it.
func (h *harness) sdkVia(t *testing.T, c *http.Client, sdkKey, venueID string, r botRequest) botResponse {
	t.Helper()
	path, body, hdr := sdkShape(sdkKey, venueID, r)
	req, err := http.NewRequest(r.method, h.info.Venues[venueID].BaseURL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header = hdr
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s %s via the proxy: %v", venueID, r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return botResponse{status: resp.StatusCode, header: resp.Header, body: b}
}

// TestE2EForwardProxy drives five exchanges through the forward proxy the
// way an unmodified SDK does (real URLs, HTTPS_PROXY, the exported CA) and
// checks, at the emulators, what keystile forwarded.
func TestE2EForwardProxy(t *testing.T) {
	rec := &received{}
	h := startHarness(t, harnessOptions{Venues: exchangeVenues(), ExtraYAML: fwdPolicy, Received: rec.add})
	if h.srv.ProxyAddr() == "" {
		t.Fatal("proxy.listen set but no proxy address")
	}
	m := h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "fwd", CIDRs: []string{"127.0.0.1/32", "::1/128"}})
	tok := m.Token
	c := h.proxyClient(t, tok)
	// The SDK's own API key setting: some users leave a placeholder,
	// others put the token there too. Neither may reach the venue.
	for pass, sdkKey := range []string{"placeholder-key", tok} {
		for _, fc := range fwdCases(strconv.Itoa(pass)) {
			t.Run(fc.id+"/"+map[bool]string{true: "token as api key", false: "placeholder api key"}[sdkKey == tok], func(t *testing.T) {
				creds := h.info.Venues[fc.id].Credentials
				// A public read: forwarded without any credential.
				mark := rec.len()
				resp := h.sdkVia(t, c, sdkKey, fc.id, fc.public)
				wantOK(t, fc.id, fc.public, resp)
				got := rec.since(fc.id, mark)
				if len(got) != 1 {
					t.Fatalf("public read: the venue received %d requests", len(got))
				}
				for _, hd := range fc.credHeaders {
					if v := got[0].Header.Get(hd); v != "" {
						t.Errorf("public read went out with %s: %q", hd, v)
					}
				}
				q, _ := url.ParseQuery(strings.SplitN(got[0].RequestURI+"?", "?", 2)[1])
				for _, p := range fc.publicForbiddenParams {
					if q.Has(p) {
						t.Errorf("public read went out with %s=", p)
					}
				}

				// A signed read and an order: the emulator verified
				// keystile's signatures (200), and none of the SDK's
				// bytes (its key, signature, timestamp) reached it.
				for _, r := range []botRequest{fc.read, fc.order} {
					mark := rec.len()
					_, _, sdkHdr := sdkShape(sdkKey, fc.id, r)
					resp := h.sdkVia(t, c, sdkKey, fc.id, r)
					wantOK(t, fc.id, r, resp)
					got := rec.since(fc.id, mark)
					if len(got) != 1 {
						t.Fatalf("%s %s: the venue received %d requests", r.method, r.path, len(got))
					}
					raw := rawReceived(got[0])
					if strings.Contains(raw, tok) {
						t.Errorf("%s %s: the kst_ token reached the venue", r.method, r.path)
					}
					for _, hd := range fc.credHeaders {
						sent := got[0].Header.Get(hd)
						if sent == "" {
							t.Errorf("%s %s: no %s reached the venue", r.method, r.path, hd)
						}
						if sdkV := sdkHdr.Get(hd); sdkV != "" && sent == sdkV {
							t.Errorf("%s %s: the SDK's own %s reached the venue", r.method, r.path, hd)
						}
					}
					if fc.id == sandbox.VenueBinance {
						if strings.Contains(got[0].RequestURI, strings.Repeat("ab", 32)) || strings.Contains(got[0].RequestURI, "1499827319559") {
							t.Errorf("the SDK's signature or timestamp reached Binance: %s", got[0].RequestURI)
						}
						if got[0].Header.Get("X-Mbx-Apikey") != creds["api_key"] {
							t.Error("Binance did not receive the vault's API key")
						}
					}
					if strings.Contains(raw, "placeholder") || strings.Contains(raw, "cGxhY2Vob2xkZXI=") {
						t.Errorf("%s %s: an SDK placeholder reached the venue:\n%s", r.method, r.path, raw)
					}
				}

				// A denied order: never forwarded, answered in the
				// venue's own error format with keystile's rule.
				mark = rec.len()
				orders := len(h.sb.Orders(fc.id))
				resp = h.sdkVia(t, c, sdkKey, fc.id, fc.denied)
				if resp.status != http.StatusForbidden || !fc.deniedShape(resp.body) {
					t.Fatalf("denied order: %d %s", resp.status, resp.body)
				}
				if !strings.Contains(string(resp.body), "policy.fwd.max_quantity") || resp.header.Get("Keystile-Request-Id") == "" {
					t.Errorf("denied order: no rule or request id: %s %v", resp.body, resp.header)
				}
				if n := len(rec.since(fc.id, mark)); n != 0 || len(h.sb.Orders(fc.id)) != orders {
					t.Errorf("a denied order reached the venue (%d requests)", n)
				}
			})
		}
	}
	// The audit log has the tunnels (CONNECT events) next to the requests.
	if !strings.Contains(h.log.String(), `"rule":"proxy.tunnel"`) {
		t.Error("no proxy.tunnel event was logged")
	}

	// After the run, the CA's key is not in the data dir in clear (nor are
	// the venue credentials), and the audit chain verifies.
	if err := h.stop(); err != nil {
		t.Fatal(err)
	}
	needles := caKeyNeedles(t, h)
	for venueID, fields := range map[string]map[string]string{
		sandbox.VenueBinance: h.info.Venues[sandbox.VenueBinance].Credentials, sandbox.VenueOKX: h.info.Venues[sandbox.VenueOKX].Credentials,
	} {
		for name, v := range fields {
			if name != "api_key" {
				needles = append(needles, encodedForms(venueID+"."+name, v)...)
			}
		}
	}
	needles = append(needles, needle{"bot token", tok})
	if n, leaks := sweepDataDir(t, h.dataDir, needles); len(leaks) > 0 || n < 3 {
		t.Fatalf("swept %d files; leaks: %v", n, leaks)
	}
}

// caKeyNeedles opens the (stopped) server's vault and returns the local
// CA's private key in every form it could leak in.
func caKeyNeedles(t *testing.T, h *harness) []needle {
	t.Helper()
	ctx := context.Background()
	db, v, err := app.OpenVault(ctx, app.Env{}, h.dataDir, h.cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	defer v.Close(ctx)
	var out []needle
	err = v.WithCredential(ctx, localca.CredentialName, func(c *vault.Credential) error {
		raw, err := c.Field(localca.FieldPrivateKey)
		if err != nil {
			return err
		}
		b := raw.Reveal()
		key, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), b)
		if err != nil {
			return err
		}
		p8, _ := x509.MarshalPKCS8PrivateKey(key)
		ec, _ := x509.MarshalECPrivateKey(key)
		for name, v := range map[string][]byte{"ca key": b, "ca key pkcs8": p8, "ca key sec1": ec} {
			out = append(out, needle{name, string(v)}, needle{name + " (hex)", hex.EncodeToString(v)},
				needle{name + " (base64)", base64.StdEncoding.EncodeToString(v)})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestE2EForwardProxyRechecksToken: a tunnel opened with a valid token
// serves the next request refused after the token is frozen or revoked —
// on the same connection.
func TestE2EForwardProxyRechecksToken(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: binanceOnly(), ExtraYAML: fwdPolicy})
	for _, action := range []string{"freeze", "revoke"} {
		t.Run(action, func(t *testing.T) {
			m := h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "fwd"})
			c := h.proxyClient(t, m.Token)
			var reused []bool
			var mu sync.Mutex
			do := func() botResponse {
				path, body, hdr := sdkShape(m.Token, sandbox.VenueBinance, botRequest{"GET", "/api/v3/account", ""})
				req, _ := http.NewRequest("GET", h.info.Venues[sandbox.VenueBinance].BaseURL+path, strings.NewReader(body))
				req.Header = hdr
				req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
					mu.Lock()
					reused = append(reused, i.Reused)
					mu.Unlock()
				}}))
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				return botResponse{status: resp.StatusCode, header: resp.Header, body: b}
			}
			if r := do(); r.status != 200 {
				t.Fatalf("before %s: %d %s", action, r.status, r.body)
			}
			if _, err := h.admin.TokenAction(context.Background(), string(m.Info.ID), action); err != nil {
				t.Fatal(err)
			}
			r := do()
			want := map[string]int{"freeze": http.StatusForbidden, "revoke": http.StatusUnauthorized}[action]
			if r.status != want || jsonField(r.body, "code") != "-2015" {
				t.Fatalf("after %s, same tunnel: %d %s", action, r.status, r.body)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(reused) != 2 || !reused[1] {
				t.Fatalf("the second request did not reuse the tunnel: %v", reused)
			}
		})
	}
}

// TestE2EForwardProxyRefusals: CONNECT to anything but a venue is 403 with
// no connection made; without a valid token 407; plain HTTP_PROXY requests
// are refused and reach no venue.
func TestE2EForwardProxyRefusals(t *testing.T) {
	rec := &received{}
	h := startHarness(t, harnessOptions{Venues: binanceOnly(), ExtraYAML: fwdPolicy, Received: rec.add})
	tok := h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "fwd"}).Token
	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	var accepts atomic.Int64
	go func() {
		for {
			c, err := target.Accept()
			if err != nil {
				return
			}
			accepts.Add(1)
			_ = c.Close()
		}
	}()
	venueAddr := strings.TrimPrefix(h.info.Venues[sandbox.VenueBinance].BaseURL, "https://")
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(tok+":"))
	for _, tc := range []struct {
		name, target, auth string
		want               int
	}{
		{"not a venue", target.Addr().String(), auth, http.StatusForbidden},
		{"not a venue, public host", "github.com:443", auth, http.StatusForbidden},
		{"venue, no token", venueAddr, "", http.StatusProxyAuthRequired},
		{"venue, invalid token", venueAddr, "Basic " + base64.StdEncoding.EncodeToString([]byte("kst_test_nope:")), http.StatusProxyAuthRequired},
		{"venue, valid token", venueAddr, auth, http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", h.srv.ProxyAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			req := "CONNECT " + tc.target + " HTTP/1.1\r\nHost: " + tc.target + "\r\n"
			if tc.auth != "" {
				req += "Proxy-Authorization: " + tc.auth + "\r\n"
			}
			_, _ = io.WriteString(c, req+"\r\n")
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			buf := make([]byte, 12)
			if _, err := io.ReadFull(c, buf); err != nil {
				t.Fatal(err)
			}
			if got := string(buf); got != fmt.Sprintf("HTTP/1.1 %d", tc.want) {
				t.Fatalf("answer %q, want %d", got, tc.want)
			}
		})
	}
	time.Sleep(100 * time.Millisecond)
	if n := accepts.Load(); n != 0 {
		t.Fatalf("the refused CONNECT target saw %d connections", n)
	}
	// HTTP_PROXY: absolute-form requests to the venue are refused.
	mark := rec.len()
	pu := &url.URL{Scheme: "http", Host: h.srv.ProxyAddr(), User: url.User(tok)}
	plain := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}, Timeout: 10 * time.Second}
	resp, err := plain.Get("http://" + venueAddr + "/api/v3/account")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "plain_http_refused") {
		t.Fatalf("HTTP_PROXY request: %d %s", resp.StatusCode, body)
	}
	if n := len(rec.since(sandbox.VenueBinance, mark)); n != 0 {
		t.Fatalf("a plain HTTP proxy request reached the venue (%d)", n)
	}
	// A token refused at CONNECT is an audit event like any refusal.
	if !strings.Contains(h.log.String(), `"rule":"proxy.host_not_allowed"`) || !strings.Contains(h.log.String(), `"rule":"token.missing"`) {
		t.Error("CONNECT refusals were not recorded")
	}
	// A token the kill switch covers opens no tunnel (403, token.killed).
	kreq, _ := http.NewRequest("POST", h.gw+"/-/kill", strings.NewReader(`{"reason":"fwd test"}`))
	kreq.Header.Set("Keystile-Token", tok)
	if kresp, err := h.hc.Do(kreq); err != nil || kresp.StatusCode != 200 || kresp.Body.Close() != nil {
		t.Fatalf("kill: %v", err)
	}
	c, err := net.Dial("tcp", h.srv.ProxyAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "CONNECT "+venueAddr+" HTTP/1.1\r\nHost: "+venueAddr+"\r\nProxy-Authorization: "+auth+"\r\n\r\n")
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 12)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "HTTP/1.1 403" {
		t.Fatalf("CONNECT with a killed token: %q %v", buf, err)
	}
	if !strings.Contains(h.log.String(), `"rule":"token.killed"`) {
		t.Error("the killed token's CONNECT was not recorded as token.killed")
	}
}

// TestE2EGatewayTLS serves the reverse proxy over HTTPS with a certificate
// from the local CA: a client trusting the exported CA gets through over
// TLS 1.2+, a TLS 1.1 client and a plain-HTTP client do not.
func TestE2EGatewayTLS(t *testing.T) {
	h := startHarness(t, harnessOptions{Venues: binanceOnly(), Configure: func(_ sandbox.Info, cfg *config.Config) {
		cfg.Gateway.TLS.LocalCA = true
	}})
	pool, _ := h.caPool(t)
	gw := "https://" + h.srv.GatewayAddr()
	tok := h.botToken(t).Token
	for _, tc := range []struct {
		name   string
		tls    *tls.Config
		url    string
		wantOK bool
	}{
		{"tls 1.3", &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}, gw, true},
		{"tls 1.2", &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}, gw, true},
		{"localhost name", &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, strings.Replace(gw, "127.0.0.1", "localhost", 1), true},
		{"tls 1.1", &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}, gw, false}, // #nosec G402 -- checks that the server refuses it
		{"untrusted", &tls.Config{MinVersion: tls.VersionTLS12}, gw, false},
		{"plain http", &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, strings.Replace(gw, "https", "http", 1), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: tc.tls}, Timeout: 10 * time.Second}
			req, _ := http.NewRequest("GET", tc.url+"/binance/api/v3/account", nil)
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := c.Do(req)
			ok := err == nil && resp.StatusCode == 200
			if resp != nil {
				resp.Body.Close()
			}
			if ok != tc.wantOK {
				t.Fatalf("ok=%v (err %v, resp %v), want %v", ok, err, resp, tc.wantOK)
			}
		})
	}
}

// TestE2EGatewayTLSOwnCertificate serves the operator's certificate with
// its key read through a secret reference; a key file others can read is
// refused at start.
func TestE2EGatewayTLSOwnCertificate(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM, pool := selfSigned(t, "127.0.0.1")
	certFile, keyFile := dir+"/gw.pem", dir+"/gw.key"
	if err := os.WriteFile(certFile, certPEM, 0o644); err != nil { // #nosec G306 -- a public certificate
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, keyPEM, 0o644); err != nil { // #nosec G306 -- the refused mode under test
		t.Fatal(err)
	}
	configure := func(_ sandbox.Info, cfg *config.Config) {
		cfg.Gateway.TLS.CertFile, cfg.Gateway.TLS.Key = certFile, "file:"+keyFile
	}
	if err := newServerErr(t, configure); !errors.Is(err, app.ErrKeyFileMode) {
		t.Fatalf("a 0644 key file: %v, want ErrKeyFileMode", err)
	}
	if err := os.Chmod(keyFile, 0o600); err != nil {
		t.Fatal(err)
	}
	h := startHarness(t, harnessOptions{Venues: binanceOnly(), Configure: configure})
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}, Timeout: 10 * time.Second}
	req, _ := http.NewRequest("GET", "https://"+h.srv.GatewayAddr()+"/binance/api/v3/account", nil)
	req.Header.Set("Authorization", "Bearer "+h.botToken(t).Token)
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if bytes.Contains([]byte(h.log.String()), keyPEM[30:60]) {
		t.Fatal("the TLS key reached the log")
	}
}

// newServerErr builds a server on a fresh data dir with configure applied
// and returns NewServer's error (closing the server if there is none).
func newServerErr(t *testing.T, configure func(sandbox.Info, *config.Config)) error {
	t.Helper()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	if _, err := app.Init(ctx, app.Env{}, app.InitOptions{DataDir: dir, Source: "file"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("t.yaml", []byte("gateway:\n  listen: 127.0.0.1:0\n"))
	if err != nil {
		t.Fatal(err)
	}
	configure(sandbox.Info{}, cfg)
	srv, err := app.NewServer(ctx, app.Env{}, app.ServerOptions{DataDir: dir, Config: cfg, Logger: slog.New(slog.DiscardHandler)})
	if err == nil {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_ = srv.Run(cctx)
	}
	return err
}

// selfSigned makes a self-signed P-256 server certificate for host and
// returns it, its key (PKCS#8 PEM) and a pool trusting it.
func selfSigned(t *testing.T, host string) ([]byte, []byte, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: host},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP(host)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), pool
}

// nodeResult is one line of testdata/node_proxy.js's output.
type nodeResult struct {
	URL    string `json:"url"`
	Status int    `json:"status"`
	Body   string `json:"body"`
	Error  string `json:"error"`
}

// runNode runs testdata/node_proxy.js with HTTPS_PROXY and
// NODE_EXTRA_CA_CERTS set as a user would, and returns its results.
func runNode(t *testing.T, node, proxyURL, caFile string, urls ...string) []nodeResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, append([]string{filepath.Join("testdata", "node_proxy.js")}, urls...)...) // #nosec G204 -- the test's own script
	cmd.Env = append(os.Environ(), "HTTPS_PROXY="+proxyURL, "NODE_EXTRA_CA_CERTS="+caFile)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, stderr.String())
	}
	var res []nodeResult
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var r nodeResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("node printed %q: %v (stderr %s)", line, err, stderr.String())
		}
		res = append(res, r)
	}
	if len(res) != len(urls) {
		t.Fatalf("node answered %d of %d URLs: %s", len(res), len(urls), out)
	}
	return res
}

// TestE2EForwardProxyNode checks that Node accepts keystile's CA and
// leaves (plain and name-constrained; for an IP address and for a DNS name
// with SNI), with only NODE_EXTRA_CA_CERTS and a CONNECT agent from its
// standard library. Skipped without node.
func TestE2EForwardProxyNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node is not installed: the Node client check needs it")
	}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		t.Run(host, func(t *testing.T) {
			h := startHarness(t, harnessOptions{Venues: binanceOnly(), ExtraYAML: fwdPolicy, Configure: func(info sandbox.Info, cfg *config.Config) {
				v := cfg.Venues[sandbox.VenueBinance]
				v.BaseURL = strings.Replace(info.Venues[sandbox.VenueBinance].BaseURL, "127.0.0.1", host, 1)
				cfg.Venues[sandbox.VenueBinance] = v
			}})
			tok := h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "fwd"}).Token
			base := strings.Replace(h.info.Venues[sandbox.VenueBinance].BaseURL, "127.0.0.1", host, 1)
			urls := []string{base + "/api/v3/ticker/price?symbol=BTCUSDT", base + "/api/v3/account"}
			proxyURL := "http://" + tok + "@" + h.srv.ProxyAddr()
			dir := t.TempDir()
			_, pemBytes := h.caPool(t)
			plainCA := filepath.Join(dir, "ca.pem")
			if err := os.WriteFile(plainCA, pemBytes, 0o600); err != nil {
				t.Fatal(err)
			}
			check := func(name string, res []nodeResult) {
				t.Helper()
				for _, r := range res {
					if r.Error != "" || r.Status != 200 {
						t.Fatalf("%s: node %s: %+v", name, r.URL, r)
					}
				}
				if !strings.Contains(res[0].Body, "37500") || !strings.Contains(res[1].Body, "balances") {
					t.Fatalf("%s: unexpected bodies %+v", name, res)
				}
			}
			check("plain CA", runNode(t, node, proxyURL, plainCA, urls...))

			// A name-constrained CA (the venue's host only): Node accepts it.
			info, err := h.admin.RotateCA(context.Background(), admin.CARequest{Constrain: true})
			if err != nil {
				t.Fatal(err)
			}
			if len(info.Constraints) != 1 || info.Constraints[0] != host {
				t.Fatalf("rotate --constrain: constraints %v, want [%s]", info.Constraints, host)
			}
			constrainedCA := filepath.Join(dir, "ca-constrained.pem")
			if err := os.WriteFile(constrainedCA, []byte(info.PEM), 0o600); err != nil {
				t.Fatal(err)
			}
			check("name-constrained CA", runNode(t, node, proxyURL, constrainedCA, urls...))

			// Negative control: after the rotation the old CA no longer verifies.
			res := runNode(t, node, proxyURL, plainCA, urls[0])
			if res[0].Error == "" {
				t.Fatalf("node trusted the rotated-out CA: %+v", res[0])
			}
		})
	}
}
