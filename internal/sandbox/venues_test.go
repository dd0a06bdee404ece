package sandbox

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const canaryToken = "c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00c0ffee00"

func TestStakeEndToEnd(t *testing.T) {
	token := strings.Repeat("5a", 32)
	s := startSandbox(t, Options{Venues: []string{VenueStake}, Credentials: map[string]map[string]string{"stake": {"api_token": token}}})
	vi := s.Info().Venues[VenueStake]
	if vi.Credentials["api_token"] != token {
		t.Fatalf("given token not used")
	}
	gql := func(tok, query string, vars any) resp {
		b := mustJSON(t, map[string]any{"query": query, "variables": vars})
		return do(t, nil, "POST", vi.BaseURL+"/graphql", b, map[string]string{"x-access-token": tok, "Content-Type": "application/json"})
	}
	r := gql(token, "query UserBalances { user { balances { available { amount currency } } } }", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"currency":"btc"`) {
		t.Fatalf("balances: %d %s", r.status, r.body)
	}
	r = gql(token, `mutation SportBet($amount: Float!, $outcomeIds: [String!]!, $currency: CurrencyEnum!, $identifier: String!) {
		sportBet(amount: $amount, outcomeIds: $outcomeIds, currency: $currency, identifier: $identifier) { id status } }`,
		map[string]any{"amount": 1.5, "currency": "usdt", "outcomeIds": []string{"o-1"}, "identifier": "cid-1"})
	bet := r.json(t)["data"].(map[string]any)["sportBet"].(map[string]any)
	if bet["identifier"] != "cid-1" || bet["status"] != "pending" {
		t.Fatalf("bet: %s", r.body)
	}
	r = gql(token, "{ user { activeSportBets { id } } }", nil)
	if !strings.Contains(string(r.body), bet["id"].(string)) {
		t.Fatalf("bet not listed: %s", r.body)
	}
	r = gql(token, "mutation CancelSportBet($betId: String!) { cancelSportBet(betId: $betId) { id } }", map[string]any{"betId": bet["id"]})
	if !strings.Contains(string(r.body), `"status":"cancelled"`) {
		t.Fatalf("cancel: %s", r.body)
	}

	// Wrong token: GraphQL error shape with HTTP 200, not counted as an order.
	r = gql(canaryToken, `mutation { sportBet(amount: 1) { id } }`, map[string]any{"amount": 1})
	want := `{"data":null,"errors":[{"errorType":"unauthorized","message":"You must be logged in to do that."}]}`
	if r.status != 200 || string(r.body) != want {
		t.Fatalf("unauthorized answer: %d %s", r.status, r.body)
	}
	if strings.Contains(string(r.body), canaryToken) || strings.Contains(fmt.Sprint(r.header), canaryToken) {
		t.Fatal("canary token echoed")
	}
	st := s.Stats(VenueStake)
	if st.Orders != 1 || st.Cancels != 1 || st.AuthFailures != 1 || st.Requests != 5 {
		t.Fatalf("stats: %+v", st)
	}
	if st.Operations["UserBalances"] != 1 || st.Operations["SportBet"] != 1 || st.Operations["sportBet"] != 1 || st.Operations["user"] != 1 {
		t.Fatalf("operations: %v", st.Operations)
	}
	// Unparsable body: 400 with parseFailed.
	r = do(t, nil, "POST", vi.BaseURL+"/graphql", []byte("{"), map[string]string{"x-access-token": token})
	if r.status != 400 || !strings.Contains(string(r.body), "parseFailed") {
		t.Fatalf("bad json: %d %s", r.status, r.body)
	}
}

func TestDMarketEndToEnd(t *testing.T) {
	s := startSandbox(t, Options{Venues: []string{VenueDMarket}})
	vi := s.Info().Venues[VenueDMarket]
	pub, sec := vi.Credentials["public_key"], vi.Credentials["secret_key"]
	if !isHex(pub, 64) || !isHex(sec, 128) || !strings.HasSuffix(sec, pub) {
		t.Fatalf("credential formats: %q %q", pub, sec)
	}
	now := time.Now()
	r := do(t, nil, "GET", vi.BaseURL+"/account/v1/balance", nil, dmarketHeaders(t, pub, sec, "GET", "/account/v1/balance", "", nil, now))
	if r.status != 200 || r.json(t)["usd"] == nil {
		t.Fatalf("balance: %d %s", r.status, r.body)
	}
	q := "gameId=a8db&title=AK-47%20%7C%20Redline&limit=10"
	r = do(t, nil, "GET", vi.BaseURL+"/exchange/v1/market/items?"+q, nil, dmarketHeaders(t, pub, sec, "GET", "/exchange/v1/market/items", q, nil, now))
	if r.status != 200 {
		t.Fatalf("items: %d %s", r.status, r.body)
	}
	body := []byte(`{"GameID":"a8db","Targets":[{"Amount":"1","Price":{"Currency":"USD","Amount":1.5},"Title":"AK-47 | Redline"}]}`)
	p := "/marketplace-api/v1/user-targets/create"
	r = do(t, nil, "POST", vi.BaseURL+p, body, dmarketHeaders(t, pub, sec, "POST", p, "", body, now))
	if r.status != 200 || !strings.Contains(string(r.body), `"Successful":true`) {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	var created struct {
		Result []struct{ CreateTarget struct{ TargetID string } }
	}
	_ = json.Unmarshal(r.body, &created)
	id := created.Result[0].CreateTarget.TargetID
	p = "/marketplace-api/v1/user-targets"
	r = do(t, nil, "GET", vi.BaseURL+p+"?GameID=a8db", nil, dmarketHeaders(t, pub, sec, "GET", p, "GameID=a8db", nil, now))
	if !strings.Contains(string(r.body), id) || !strings.Contains(string(r.body), `"Amount":"1.5"`) {
		t.Fatalf("list: %s", r.body)
	}
	del := mustJSON(t, map[string]any{"Targets": []any{map[string]string{"TargetID": id}}})
	p = "/marketplace-api/v1/user-targets/delete"
	r = do(t, nil, "POST", vi.BaseURL+p, del, dmarketHeaders(t, pub, sec, "POST", p, "", del, now))
	if !strings.Contains(string(r.body), `"Successful":true`) {
		t.Fatalf("delete: %s", r.body)
	}

	tests := []struct {
		name     string
		headers  map[string]string
		wantBody string
	}{
		{"tampered body signature", dmarketHeaders(t, pub, sec, "POST", "/marketplace-api/v1/user-targets/create", "", []byte("{}"), now),
			`{"code":"InvalidSignature","message":"request signature is invalid"}`},
		{"old date", dmarketHeaders(t, pub, sec, "POST", "/marketplace-api/v1/user-targets/create", "", body, now.Add(-3*time.Minute)),
			`{"code":"RequestExpired","message":"request signature date is expired or invalid"}`},
		{"no headers", map[string]string{}, `{"code":"Unauthorized","message":"invalid api key or missing authentication headers"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := do(t, nil, "POST", vi.BaseURL+"/marketplace-api/v1/user-targets/create", body, tc.headers)
			if r.status != 401 || string(r.body) != tc.wantBody {
				t.Fatalf("got %d %s", r.status, r.body)
			}
		})
	}
	st := s.Stats(VenueDMarket)
	if st.Orders != 1 || st.Cancels != 1 || st.AuthFailures != 3 || st.Operations["targets.create"] != 4 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestGenericEndToEnd(t *testing.T) {
	s := startSandbox(t, Options{Venues: []string{VenueGeneric}})
	vi := s.Info().Venues[VenueGeneric]
	key, sec := vi.Credentials["api_key"], vi.Credentials["secret"]
	send := func(method, target string, body []byte) resp {
		return do(t, nil, method, vi.BaseURL+target, body, genericHeaders(key, sec, method, target, body, time.Now()))
	}
	body := []byte(`{"market_id":"MKT-1001","selection_id":"SEL-1","side":"BACK","price":"2.10","size":"5","client_order_id":"c-42"}`)
	r := send("POST", "/api/v1/orders", body)
	if r.status != 201 || r.json(t)["client_order_id"] != "c-42" {
		t.Fatalf("place: %d %s", r.status, r.body)
	}
	id := r.json(t)["order_id"].(string)
	// The escaped path and raw query as sent are signed.
	r = send("GET", "/api/v1/markets?q=Home%20v%20Away&x=%2F", nil)
	if r.status != 200 {
		t.Fatalf("markets: %d %s", r.status, r.body)
	}
	r = send("GET", "/api/v1/orders", nil)
	if !strings.Contains(string(r.body), id) {
		t.Fatalf("list: %s", r.body)
	}
	if r = send("DELETE", "/api/v1/orders/"+id, nil); r.status != 200 || r.json(t)["status"] != "CANCELLED" {
		t.Fatalf("cancel: %d %s", r.status, r.body)
	}
	if r = send("DELETE", "/api/v1/orders/"+id, nil); r.status != 404 {
		t.Fatalf("second cancel: %d %s", r.status, r.body)
	}
	h := genericHeaders(key, "wrong-secret", "POST", "/api/v1/orders", body, time.Now())
	r = do(t, nil, "POST", vi.BaseURL+"/api/v1/orders", body, h)
	if r.status != 401 || string(r.body) != `{"error":{"code":"INVALID_SIGNATURE","message":"authentication failed"}}` {
		t.Fatalf("bad signature: %d %s", r.status, r.body)
	}
	st := s.Stats(VenueGeneric)
	if st.Orders != 1 || st.Cancels != 1 || st.AuthFailures != 1 {
		t.Fatalf("stats: %+v", st)
	}
	if orders := s.Orders(VenueGeneric); len(orders) != 1 || orders[0].ClientOrderID != "c-42" || orders[0].Status != OrderCancelled {
		t.Fatalf("orders: %+v", orders)
	}
}

func getSTAPIToken(t *testing.T, base, id, sec string, form url.Values) resp {
	t.Helper()
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	if id != "" {
		h["Authorization"] = "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(sec)))
	}
	return do(t, nil, "POST", base+"/oauth/token", []byte(form.Encode()), h)
}

func TestSTAPIEndToEnd(t *testing.T) {
	clk := newTestClock()
	s := startSandbox(t, Options{Venues: []string{VenueSTAPI}, Clock: clk.Now, StapiTokenTTL: 10 * time.Minute})
	vi := s.Info().Venues[VenueSTAPI]
	c := vi.Credentials
	r := do(t, nil, "GET", vi.BaseURL+"/v1/account", nil, map[string]string{"X-STAPI-API-Key": c["api_key"]})
	if r.status != 200 {
		t.Fatalf("api key: %d %s", r.status, r.body)
	}
	r = getSTAPIToken(t, vi.BaseURL, c["client_id"], c["client_secret"], url.Values{"grant_type": {"client_credentials"}})
	tok := r.json(t)
	if r.status != 200 || tok["token_type"] != "Bearer" || tok["expires_in"] != 600.0 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	bearer := map[string]string{"Authorization": "Bearer " + tok["access_token"].(string), "Content-Type": "application/json"}
	r = do(t, nil, "POST", vi.BaseURL+"/v1/videos", []byte(`{"title":"Launch","client_ref":"v-1"}`), bearer)
	if r.status != 201 {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	vid := r.json(t)["id"].(string)
	if r = do(t, nil, "GET", vi.BaseURL+"/v1/videos", nil, bearer); !strings.Contains(string(r.body), vid) {
		t.Fatalf("list: %s", r.body)
	}
	if r = do(t, nil, "DELETE", vi.BaseURL+"/v1/videos/"+vid, nil, bearer); r.status != 204 {
		t.Fatalf("delete: %d %s", r.status, r.body)
	}

	unauthorized := func(t *testing.T, h map[string]string) {
		t.Helper()
		r := do(t, nil, "POST", vi.BaseURL+"/v1/videos", []byte(`{"title":"x"}`), h)
		if r.status != 401 || string(r.body) != `{"error":"unauthorized"}` || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), `Bearer realm="stapi"`) {
			t.Fatalf("got %d %s %v", r.status, r.body, r.header)
		}
	}
	t.Run("wrong api key", func(t *testing.T) { unauthorized(t, map[string]string{"X-STAPI-API-Key": canaryToken}) })
	t.Run("no credential", func(t *testing.T) { unauthorized(t, nil) })
	t.Run("expired token", func(t *testing.T) {
		clk.Advance(11 * time.Minute)
		unauthorized(t, bearer)
	})
	t.Run("refresh", func(t *testing.T) {
		r := getSTAPIToken(t, vi.BaseURL, c["client_id"], c["client_secret"], url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}})
		if r.status != 200 {
			t.Fatalf("refresh: %d %s", r.status, r.body)
		}
		h := map[string]string{"Authorization": "Bearer " + r.json(t)["access_token"].(string)}
		if r := do(t, nil, "GET", vi.BaseURL+"/v1/account", nil, h); r.status != 200 {
			t.Fatalf("refreshed token refused: %d", r.status)
		}
		// Refresh tokens rotate: the old one is spent.
		r = getSTAPIToken(t, vi.BaseURL, c["client_id"], c["client_secret"], url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok["refresh_token"].(string)}})
		if r.status != 400 || r.json(t)["error"] != "invalid_grant" {
			t.Fatalf("reused refresh token: %d %s", r.status, r.body)
		}
		if err := s.InjectFault(VenueSTAPI, Fault{Kind: FaultExpireSessions}); err != nil {
			t.Fatal(err)
		}
		unauthorized(t, h)
	})
	oauthCases := []struct {
		name       string
		id, secret string
		form       url.Values
		status     int
		err        string
	}{
		{"bad client secret", c["client_id"], canaryToken, url.Values{"grant_type": {"client_credentials"}}, 401, "invalid_client"},
		{"no client auth", "", "", url.Values{"grant_type": {"client_credentials"}}, 401, "invalid_client"},
		{"unsupported grant", c["client_id"], c["client_secret"], url.Values{"grant_type": {"password"}}, 400, "unsupported_grant_type"},
		{"missing grant", c["client_id"], c["client_secret"], url.Values{}, 400, "invalid_request"},
	}
	for _, tc := range oauthCases {
		t.Run(tc.name, func(t *testing.T) {
			r := getSTAPIToken(t, vi.BaseURL, tc.id, tc.secret, tc.form)
			if r.status != tc.status || r.json(t)["error"] != tc.err || strings.Contains(string(r.body), canaryToken) {
				t.Fatalf("got %d %s", r.status, r.body)
			}
			if tc.status == 401 && r.header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without WWW-Authenticate")
			}
		})
	}
	st := s.Stats(VenueSTAPI)
	if st.Orders != 1 || st.Cancels != 1 || st.Logins != 7 {
		t.Fatalf("stats: %+v", st)
	}
}

type betfairClient struct {
	t      *testing.T
	c      *http.Client
	base   string
	appKey string
}

func (b betfairClient) login(user, pass string) map[string]any {
	b.t.Helper()
	form := url.Values{"username": {user}, "password": {pass}}
	r := do(b.t, b.c, "POST", b.base+"/api/login", []byte(form.Encode()), map[string]string{
		"X-Application": b.appKey, "Accept": "application/json", "Content-Type": "application/x-www-form-urlencoded",
	})
	return r.json(b.t)
}

func (b betfairClient) call(path, session string, body string) resp {
	b.t.Helper()
	return do(b.t, b.c, "POST", b.base+path, []byte(body), map[string]string{
		"X-Application": b.appKey, "X-Authentication": session, "Content-Type": "application/json", "Accept": "application/json",
	})
}

func TestBetfairEndToEnd(t *testing.T) {
	clk := newTestClock()
	s := startSandbox(t, Options{Venues: []string{VenueBetfair}, Clock: clk.Now, BetfairSessionTTL: 20 * time.Minute})
	vi := s.Info().Venues[VenueBetfair]
	c := vi.Credentials
	if vi.IdentityURL != vi.BaseURL {
		t.Fatalf("identity url %q", vi.IdentityURL)
	}
	bf := betfairClient{t: t, base: vi.BaseURL, appKey: c["app_key"]}
	login := bf.login(c["username"], c["password"])
	if login["status"] != "SUCCESS" || login["product"] != c["app_key"] || login["error"] != "" {
		t.Fatalf("login: %v", login)
	}
	sess := login["token"].(string)
	place := `{"marketId":"1.234567890","instructions":[{"selectionId":47972,"handicap":0,"side":"BACK","orderType":"LIMIT",
		"limitOrder":{"size":2,"price":3.5,"persistenceType":"LAPSE"},"customerOrderRef":"ord-1"}],"customerRef":"ref-1"}`
	r := bf.call("/exchange/betting/rest/v1.0/placeOrders/", sess, place)
	if r.status != 200 || r.json(t)["status"] != "SUCCESS" {
		t.Fatalf("placeOrders: %d %s", r.status, r.body)
	}
	batch := `[{"jsonrpc":"2.0","method":"SportsAPING/v1.0/placeOrders","params":` + place + `,"id":1},
		{"jsonrpc":"2.0","method":"SportsAPING/v1.0/listCurrentOrders","params":{},"id":2}]`
	r = bf.call("/exchange/betting/json-rpc/v1", sess, batch)
	var out []struct {
		ID     int
		Result map[string]any
		Error  any
	}
	if err := json.Unmarshal(r.body, &out); err != nil || len(out) != 2 || out[1].ID != 2 {
		t.Fatalf("batch: %s", r.body)
	}
	if cur := out[1].Result["currentOrders"].([]any); len(cur) != 2 {
		t.Fatalf("currentOrders: %s", r.body)
	}
	for _, op := range []string{"listEventTypes", "listMarketCatalogue", "listMarketBook", "listCurrentOrders"} {
		if r := bf.call("/exchange/betting/rest/v1.0/"+op+"/", sess, `{"filter":{}}`); r.status != 200 {
			t.Fatalf("%s: %d %s", op, r.status, r.body)
		}
	}
	if r := bf.call("/exchange/account/rest/v1.0/getAccountFunds/", sess, `{}`); r.status != 200 || r.json(t)["availableToBetBalance"] != 1000.0 {
		t.Fatalf("getAccountFunds: %d %s", r.status, r.body)
	}
	r = bf.call("/exchange/betting/rest/v1.0/cancelOrders/", sess, `{"marketId":"1.234567890"}`)
	if r.json(t)["status"] != "SUCCESS" || len(s.Orders(VenueBetfair)) != 2 || s.Stats(VenueBetfair).Cancels != 2 {
		t.Fatalf("cancelOrders: %s", r.body)
	}

	restInvalid := func(t *testing.T, session, appKey, code, fault string) {
		t.Helper()
		b := betfairClient{t: t, base: vi.BaseURL, appKey: appKey}
		r := b.call("/exchange/betting/rest/v1.0/placeOrders/", session, place)
		m := r.json(t)
		ex := m["detail"].(map[string]any)["APINGException"].(map[string]any)
		if r.status != 400 || ex["errorCode"] != code || m["faultcode"] != "Client" || m["faultstring"] != fault || ex["requestUUID"] == "" {
			t.Fatalf("got %d %s", r.status, r.body)
		}
		r = b.call("/exchange/betting/json-rpc/v1", session, `{"jsonrpc":"2.0","method":"SportsAPING/v1.0/placeOrders","params":`+place+`,"id":1}`)
		want := `{"jsonrpc":"2.0","error":{"code":-32099,"data":{"APINGException":{"errorCode":"` + code + `"},"exceptionname":"APINGException"},"message":"` + fault + `"},"id":1}`
		if r.status != 200 || string(r.body) != want {
			t.Fatalf("json-rpc got %d %s\nwant %s", r.status, r.body, want)
		}
	}
	before := s.Stats(VenueBetfair).Orders
	t.Run("unknown session", func(t *testing.T) {
		restInvalid(t, canaryToken, c["app_key"], "INVALID_SESSION_INFORMATION", "ANGX-0003")
	})
	t.Run("wrong app key", func(t *testing.T) { restInvalid(t, sess, "nope", "INVALID_APP_KEY", "ANGX-0004") })
	t.Run("keepAlive extends, expiry ends", func(t *testing.T) {
		clk.Advance(15 * time.Minute)
		if r := bf.call("/api/keepAlive", sess, ""); r.json(t)["status"] != "SUCCESS" {
			t.Fatalf("keepAlive: %s", r.body)
		}
		clk.Advance(15 * time.Minute)
		if r := bf.call("/exchange/account/rest/v1.0/getAccountFunds/", sess, `{}`); r.status != 200 {
			t.Fatalf("session should live after keepAlive: %d %s", r.status, r.body)
		}
		clk.Advance(6 * time.Minute)
		restInvalid(t, sess, c["app_key"], "INVALID_SESSION_INFORMATION", "ANGX-0003")
	})
	t.Run("expire_sessions fault and logout", func(t *testing.T) {
		sess := bf.login(c["username"], c["password"])["token"].(string)
		if err := s.InjectFault(VenueBetfair, Fault{Kind: FaultExpireSessions}); err != nil {
			t.Fatal(err)
		}
		restInvalid(t, sess, c["app_key"], "INVALID_SESSION_INFORMATION", "ANGX-0003")
		sess = bf.login(c["username"], c["password"])["token"].(string)
		if r := bf.call("/api/logout", sess, ""); r.json(t)["status"] != "SUCCESS" {
			t.Fatalf("logout: %s", r.body)
		}
		if r := bf.call("/api/keepAlive", sess, ""); r.json(t)["error"] != "NO_SESSION" {
			t.Fatalf("keepAlive after logout: %s", r.body)
		}
	})
	t.Run("bad password", func(t *testing.T) {
		m := bf.login(c["username"], canaryToken)
		if m["status"] != "FAIL" || m["error"] != "INVALID_USERNAME_OR_PASSWORD" || m["token"] != "" {
			t.Fatalf("login: %v", m)
		}
	})
	if got := s.Stats(VenueBetfair).Orders; got != before {
		t.Fatalf("refused requests placed orders: %d -> %d", before, got)
	}
}

func TestBetfairOneLoginManyRequests(t *testing.T) {
	s := startSandbox(t, Options{Venues: []string{VenueBetfair}})
	vi := s.Info().Venues[VenueBetfair]
	c := vi.Credentials
	bf := betfairClient{t: t, base: vi.BaseURL, appKey: c["app_key"], c: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	sess := bf.login(c["username"], c["password"])["token"].(string)
	var wg sync.WaitGroup
	errs := make(chan string, 200)
	for range 200 {
		wg.Go(func() {
			r, err := doErr(bf.c, "POST", vi.BaseURL+"/exchange/betting/rest/v1.0/listMarketBook/", []byte(`{"marketIds":["1.234567890"]}`),
				map[string]string{"X-Application": c["app_key"], "X-Authentication": sess, "Content-Type": "application/json"})
			if err != nil || r.status != 200 {
				errs <- fmt.Sprint(r.status, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	st := s.Stats(VenueBetfair)
	if st.Logins != 1 || st.Operations["listMarketBook"] != 200 || st.Requests != 201 {
		t.Fatalf("stats: %+v", st)
	}
}

func TestBetfairLoginRateLimit(t *testing.T) {
	clk := newTestClock()
	s := startSandbox(t, Options{Venues: []string{VenueBetfair}, Clock: clk.Now})
	vi := s.Info().Venues[VenueBetfair]
	c := vi.Credentials
	bf := betfairClient{t: t, base: vi.BaseURL, appKey: c["app_key"]}
	for i := range BetfairLoginLimit {
		if m := bf.login(c["username"], c["password"]); m["status"] != "SUCCESS" {
			t.Fatalf("login %d: %v", i, m)
		}
	}
	if m := bf.login(c["username"], c["password"]); m["error"] != "TEMPORARY_BAN_TOO_MANY_REQUESTS" {
		t.Fatalf("login over the limit: %v", m)
	}
	clk.Advance(time.Minute)
	if m := bf.login(c["username"], c["password"]); m["status"] != "SUCCESS" {
		t.Fatalf("login after a minute: %v", m)
	}
	if st := s.Stats(VenueBetfair); st.Logins != BetfairLoginLimit+2 {
		t.Fatalf("logins: %d", st.Logins)
	}
}
