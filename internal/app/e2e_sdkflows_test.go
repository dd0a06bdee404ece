package app_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/sandbox"
)

// flowPolicy lets the flows' reads, bets and uploads through (Betfair
// orders have no order-rule reader: a policy with order limits refuses
// them as unreadable).
const flowPolicy = `proxy:
  listen: 127.0.0.1:0
policies:
  flows:
    operations: ["market.read", "account.read", "order.*", "media.*"]
`

// flowStep is one request of an SDK's documented HTTP flow, sent to the
// venue's real URL through the forward proxy with the SDK's own headers.
type flowStep struct {
	name, method, url, body string
	header                  http.Header
	want                    int
	contains                string // in the answer
}

// TestE2ESDKFlowsBetfairSTAPI: the HTTP flows of betfairlightweight and of
// a STAPI client (neither installable here), through the forward proxy
// with HTTPS_PROXY-style settings. betfairlightweight is given a
// placeholder session (set_session_token) instead of logging in: keystile
// holds the session, and the bot's login host is refused at CONNECT.
// Whatever app key, session or API key the SDK sends is replaced.
func TestE2ESDKFlowsBetfairSTAPI(t *testing.T) {
	rec := &received{}
	venues := []e2eVenue{}
	for _, v := range e2eVenues() {
		if v.id == sandbox.VenueBetfair || v.id == sandbox.VenueSTAPI {
			venues = append(venues, v)
		}
	}
	h := startHarness(t, harnessOptions{Venues: venues, ExtraYAML: flowPolicy, Received: rec.add,
		Configure: func(_ sandbox.Info, cfg *config.Config) {
			for id, hosts := range map[string][]string{sandbox.VenueBetfair: {"api.betfair.com"}, sandbox.VenueSTAPI: {"api.stapi.example"}} {
				vc := cfg.Venues[id]
				vc.ProxyHosts = hosts
				cfg.Venues[id] = vc
			}
		}})
	tok := h.mint(t, admin.CreateTokenRequest{Test: true, Policy: "flows"}).Token
	c := h.proxyClient(t, tok)
	bf := http.Header{"X-Application": {"placeholder-app-key"}, "X-Authentication": {"placeholder-session"},
		"Content-Type": {"application/json"}, "Accept": {"application/json"}}
	st := http.Header{"X-Stapi-Api-Key": {"placeholder-api-key"}, "Content-Type": {"application/json"}}
	steps := []flowStep{
		{"betfair json-rpc listEventTypes", "POST", "https://api.betfair.com/exchange/betting/json-rpc/v1",
			`{"jsonrpc":"2.0","method":"SportsAPING/v1.0/listEventTypes","params":{"filter":{}},"id":1}`, bf, 200, `"result"`},
		{"betfair rest listMarketCatalogue", "POST", "https://api.betfair.com/exchange/betting/rest/v1.0/listMarketCatalogue/",
			`{"filter":{},"maxResults":"1"}`, bf, 200, ""},
		{"betfair account funds", "POST", "https://api.betfair.com/exchange/account/rest/v1.0/getAccountFunds/", `{}`, bf, 200, "availableToBetBalance"},
		{"betfair placeOrders", "POST", "https://api.betfair.com/exchange/betting/json-rpc/v1",
			`{"jsonrpc":"2.0","method":"SportsAPING/v1.0/placeOrders","params":{"marketId":"1.234567","instructions":[{"selectionId":47972,"handicap":0,"side":"BACK","orderType":"LIMIT","limitOrder":{"size":1,"price":2.1,"persistenceType":"LAPSE"}}],"customerRef":"flow-1"},"id":2}`,
			bf, 200, `"SUCCESS"`},
		{"stapi account", "GET", "https://api.stapi.example/v1/account", "", st, 200, ""},
		{"stapi create", "POST", "https://api.stapi.example/v1/videos", `{"title":"keystile flow","client_ref":"flow-1"}`, st, 200, ""},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			venueID := sandbox.VenueBetfair
			if strings.Contains(s.url, "stapi") {
				venueID = sandbox.VenueSTAPI
			}
			mark := rec.len()
			req, err := http.NewRequest(s.method, s.url, strings.NewReader(s.body))
			if err != nil {
				t.Fatal(err)
			}
			req.Header = s.header.Clone()
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode/100 != s.want/100 || !strings.Contains(string(body), s.contains) {
				t.Fatalf("%d %.300s", resp.StatusCode, body)
			}
			got := rec.since(venueID, mark)
			if len(got) == 0 {
				t.Fatal("nothing reached the venue")
			}
			for _, x := range got {
				raw := rawReceived(x)
				if strings.Contains(raw, "placeholder") || strings.Contains(raw, tok) {
					t.Errorf("an SDK placeholder or the token reached the venue:\n%s", raw)
				}
			}
			last := got[len(got)-1]
			creds := h.info.Venues[venueID].Credentials
			if venueID == sandbox.VenueBetfair && (last.Header.Get("X-Application") != creds["app_key"] || last.Header.Get("X-Authentication") == "") {
				t.Errorf("betfair got app key %q and session %q", last.Header.Get("X-Application"), last.Header.Get("X-Authentication"))
			}
		})
	}
	// The bot's own login (betfairlightweight's login()/login_interactive())
	// is refused: the identity hosts are no route.
	for _, u := range []string{"https://identitysso-cert.betfair.com/api/certlogin", "https://identitysso.betfair.com/api/login"} {
		if resp, err := c.Post(u, "application/x-www-form-urlencoded", strings.NewReader("username=u&password=p")); err == nil {
			resp.Body.Close()
			t.Errorf("%s: %d, want the CONNECT refused", u, resp.StatusCode)
		} else if !strings.Contains(err.Error(), "Forbidden") {
			t.Errorf("%s: %v, want 403 at CONNECT", u, err)
		}
	}
}

// TestE2EBaseURLRewrite: the reverse proxy's base-URL setting works for
// SDKs that send their API key on every request (binance-connector-python
// and python-binance put X-MBX-APIKEY on their session), public market data
// included; an SDK that sends public calls with no key at all (ccxt,
// pybit, krakenex) gets 401 token.missing there — the README sends those
// to the forward proxy.
func TestE2EBaseURLRewrite(t *testing.T) {
	rec := &received{}
	h := startHarness(t, harnessOptions{Venues: exchangeVenues(), Received: rec.add})
	tok := h.mint(t, admin.CreateTokenRequest{Test: true}).Token
	send := func(venueID, path string, hdr http.Header) (int, string) {
		req, err := http.NewRequest("GET", h.gw+"/"+venueID+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header = hdr
		resp, err := h.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	mark := rec.len()
	if st, body := send(sandbox.VenueBinance, "/api/v3/exchangeInfo", http.Header{"X-Mbx-Apikey": {tok}}); st != 200 {
		t.Fatalf("binance exchangeInfo with the token as X-MBX-APIKEY: %d %s", st, body)
	}
	if got := rec.since(sandbox.VenueBinance, mark); len(got) != 1 || got[0].Header.Get("X-Mbx-Apikey") != "" {
		t.Errorf("public read: %d requests, key %q", len(got), got[0].Header.Get("X-Mbx-Apikey"))
	}
	for _, c := range []struct{ venue, path string }{
		{sandbox.VenueBinance, "/api/v3/exchangeInfo"}, {sandbox.VenueKraken, "/0/public/AssetPairs"},
		{sandbox.VenueBybit, "/v5/market/instruments-info?category=spot"}, {sandbox.VenueOKX, "/api/v5/public/instruments?instType=SPOT"},
	} {
		st, body := send(c.venue, c.path, http.Header{})
		if st != http.StatusUnauthorized || !strings.Contains(body, "token.missing") {
			t.Errorf("%s %s without a key: %d %s", c.venue, c.path, st, body)
		}
	}
}
