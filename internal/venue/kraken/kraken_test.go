package kraken_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/kraken"
)

type cred map[string]string

func (c cred) Field(n string) (secret.Value, error) {
	if v, ok := c[n]; ok {
		return secret.FromString(v), nil
	}
	return secret.Value{}, errors.New("no field " + n)
}

func creds(c cred) venue.Credentials {
	return func(_ context.Context, fn func(venue.Credential) error) error { return fn(c) }
}

type vectorFile struct {
	V struct {
		Secret, Nonce, Postdata string
		URIPath                 string `json:"uri_path"`
		APISign                 string `json:"api_sign"`
	} `json:"kraken_api_sign"`
}

func loadVector(t *testing.T) vectorFile {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectorFile
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSignVector is the known-answer test from Kraken's authentication guide.
func TestSignVector(t *testing.T) {
	v := loadVector(t).V
	sec, _ := base64.StdEncoding.DecodeString(v.Secret)
	if got := kraken.Sign(sec, v.URIPath, v.Nonce, []byte(v.Postdata)); got != v.APISign {
		t.Fatalf("Sign = %s, want %s", got, v.APISign)
	}
	// WithNonce keeps the vector's body when the bot sent the same fields.
	body := strings.TrimPrefix(v.Postdata, "nonce="+v.Nonce+"&")
	if got := string(kraken.WithNonce([]byte("nonce=1&"+body), v.Nonce)); got != v.Postdata {
		t.Fatalf("WithNonce = %s", got)
	}
}

// TestAuthenticateVector signs the vector's request through Authenticate
// with a clock at the vector's nonce (no store: nonce = unix microseconds).
func TestAuthenticateVector(t *testing.T) {
	v := loadVector(t).V
	n, _ := strconv.ParseInt(v.Nonce, 10, 64)
	ven, err := kraken.New(kraken.Options{Credentials: creds(cred{"api_key": "k", "secret": v.Secret}),
		Now: func() time.Time { return time.UnixMicro(n) }})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25&nonce=42")
	req, _ := http.NewRequest("POST", "https://api.kraken.com"+v.URIPath, bytes.NewReader(body))
	req.Header.Set("API-Sign", "bot-signature")
	if err := ven.Authenticate(context.Background(), req, body); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(req.Body)
	gb, _ := req.GetBody()
	again, _ := io.ReadAll(gb)
	if string(got) != v.Postdata || string(again) != v.Postdata || req.ContentLength != int64(len(v.Postdata)) {
		t.Fatalf("body %q / %q / %d", got, again, req.ContentLength)
	}
	if req.Header.Get("API-Sign") != v.APISign || req.Header.Get("API-Key") != "k" {
		t.Fatalf("headers %v", req.Header)
	}
}

func startKraken(t *testing.T) (*sandbox.Server, sandbox.VenueInfo) {
	t.Helper()
	s, err := sandbox.Start(context.Background(), sandbox.Options{Venues: []string{sandbox.VenueKraken}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, s.Info().Venues[sandbox.VenueKraken]
}

// send authenticates a request with v and sends it.
func send(t *testing.T, v *kraken.Venue, method, url string, body []byte, h http.Header) map[string]any {
	t.Helper()
	req := prepare(t, v, method, url, body, h)
	return roundTrip(t, req)
}

func prepare(t *testing.T, v *kraken.Venue, method, url string, body []byte, h http.Header) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return nil
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	if err := v.Authenticate(context.Background(), req, body); err != nil {
		t.Error(err)
		return nil
	}
	return req
}

func roundTrip(t *testing.T, req *http.Request) map[string]any {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

func errs(m map[string]any) []any { e, _ := m["error"].([]any); return e }

// TestAcceptedBySandbox: keystile's signatures pass the sandbox's
// independent verifier, including an SDK-style request (kst_ token as
// API-Key, a bogus API-Sign and the bot's own nonce in the body).
func TestAcceptedBySandbox(t *testing.T) {
	s, vi := startKraken(t)
	v, err := kraken.New(kraken.Options{Credentials: creds(cred(vi.Credentials))})
	if err != nil {
		t.Fatal(err)
	}
	if m := send(t, v, "POST", vi.BaseURL+"/0/private/Balance", nil, nil); len(errs(m)) != 0 {
		t.Fatalf("balance: %v", m)
	}
	const tok = "kst_test_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000"
	sdk := http.Header{"Api-Key": {tok}, "Api-Sign": {"cGxhY2Vob2xkZXI="}, "Content-Type": {"application/x-www-form-urlencoded"}}
	if got, ok := v.BotToken(sdk, ""); !ok || got != tok {
		t.Fatalf("BotToken = %q, %v", got, ok)
	}
	body := []byte("nonce=1&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25&cl_ord_id=cid-1&nonce=2")
	m := send(t, v, "POST", vi.BaseURL+"/0/private/AddOrder", body, sdk)
	if len(errs(m)) != 0 {
		t.Fatalf("sdk-style order: %v", m)
	}
	if m := send(t, v, "GET", vi.BaseURL+"/0/public/Ticker?pair=XBTUSD", nil, sdk); len(errs(m)) != 0 {
		t.Fatalf("public: %v", m)
	}
	o := s.Orders(sandbox.VenueKraken)
	if len(o) != 1 || o[0].ClientOrderID != "cid-1" || s.Stats(sandbox.VenueKraken).AuthFailures != 0 {
		t.Fatalf("orders %+v stats %+v", o, s.Stats(sandbox.VenueKraken))
	}
	// A wrong secret is refused with Kraken's own error.
	bad := cred{"api_key": vi.Credentials["api_key"], "secret": base64.StdEncoding.EncodeToString([]byte("wrong"))}
	v2, _ := kraken.New(kraken.Options{Credentials: creds(bad)})
	if m := send(t, v2, "POST", vi.BaseURL+"/0/private/Balance", nil, nil); len(errs(m)) != 1 || errs(m)[0] != "EAPI:Invalid signature" {
		t.Fatalf("wrong secret: %v", m)
	}
}

// TestNoncesConcurrentAndRestart: 500 concurrent Authenticate calls, with a
// restart (a new Venue on the same database, its clock an hour behind) in
// the middle. All nonces are distinct, the second process's are above the
// first's, and the emulator accepts every request in nonce order.
func TestNoncesConcurrentAndRestart(t *testing.T) {
	s, vi := startKraken(t)
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	now := time.Now()
	batch := func(v *kraken.Venue) []*http.Request {
		reqs := make([]*http.Request, 250)
		var wg sync.WaitGroup
		for i := range reqs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				reqs[i] = prepare(t, v, "POST", vi.BaseURL+"/0/private/Balance", []byte("nonce=7"), nil)
			}()
		}
		wg.Wait()
		return reqs
	}
	nonceOf := func(r *http.Request) uint64 {
		b, _ := r.GetBody()
		raw, _ := io.ReadAll(b)
		f, _ := url.ParseQuery(string(raw))
		n, err := strconv.ParseUint(f.Get("nonce"), 10, 64)
		if err != nil {
			t.Fatalf("nonce in %q", raw)
		}
		return n
	}
	var all []*http.Request
	for i, clock := range []time.Time{now, now.Add(-time.Hour)} {
		v, err := kraken.New(kraken.Options{Credentials: creds(cred(vi.Credentials)), Nonces: db.Nonces(), NonceBlock: 100,
			Now: func() time.Time { return clock }})
		if err != nil {
			t.Fatal(err)
		}
		reqs := batch(v)
		if t.Failed() {
			t.FailNow()
		}
		slices.SortFunc(reqs, func(a, b *http.Request) int { return cmp.Compare(nonceOf(a), nonceOf(b)) })
		if i == 1 && nonceOf(reqs[0]) <= nonceOf(all[len(all)-1]) {
			t.Fatalf("after restart nonce %d <= %d", nonceOf(reqs[0]), nonceOf(all[len(all)-1]))
		}
		all = append(all, reqs...)
	}
	for i, r := range all {
		if i > 0 && nonceOf(r) <= nonceOf(all[i-1]) {
			t.Fatalf("nonce %d repeated", nonceOf(r))
		}
		if m := roundTrip(t, r); len(errs(m)) != 0 {
			t.Fatalf("request %d refused: %v", i, m)
		}
	}
	got := s.KrakenNonces()
	if len(got) != 500 || s.Stats(sandbox.VenueKraken).AuthFailures != 0 {
		t.Fatalf("emulator accepted %d, failures %d", len(got), s.Stats(sandbox.VenueKraken).AuthFailures)
	}
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("emulator saw %d after %d", got[i], got[i-1])
		}
	}
	// The persisted mark is at or above every nonce handed out.
	var hwm uint64
	if err := db.SQL().QueryRow(`SELECT MAX(hwm) FROM nonces`).Scan(&hwm); err != nil || hwm < got[len(got)-1] {
		t.Fatalf("persisted mark %d below last nonce %d (%v)", hwm, got[len(got)-1], err)
	}
}

// TestNoncesWithoutStore: without a store nonces follow the clock and
// still strictly increase when the clock stands still.
func TestNoncesWithoutStore(t *testing.T) {
	_, vi := startKraken(t)
	at := time.Now()
	v, _ := kraken.New(kraken.Options{Credentials: creds(cred(vi.Credentials)), Now: func() time.Time { return at }})
	for i := range 5 {
		if m := send(t, v, "POST", vi.BaseURL+"/0/private/Balance", nil, nil); len(errs(m)) != 0 {
			t.Fatalf("call %d: %v", i, m)
		}
	}
}

func TestAuthenticateErrors(t *testing.T) {
	tests := []struct {
		name string
		c    cred
		body string
		want error
	}{
		{"secret not base64", cred{"api_key": "k", "secret": "***"}, "", kraken.ErrSecretEncoding},
		{"json body", cred{"api_key": "k", "secret": "AAAA"}, `{"pair":"XBTUSD"}`, kraken.ErrBody},
		{"missing secret", cred{"api_key": "k"}, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, _ := kraken.New(kraken.Options{Credentials: creds(tt.c)})
			req, _ := http.NewRequest("POST", "https://api.kraken.com/0/private/Balance", strings.NewReader(tt.body))
			err := v.Authenticate(context.Background(), req, []byte(tt.body))
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if strings.Contains(err.Error(), "AAAA") || strings.Contains(err.Error(), "***") {
				t.Fatal("secret in error")
			}
		})
	}
	if _, err := kraken.New(kraken.Options{}); err == nil {
		t.Fatal("New without credentials")
	}
	if _, err := kraken.New(kraken.Options{Credentials: creds(nil), Tier: "gold"}); err == nil {
		t.Fatal("New with unknown tier")
	}
}

func TestClassify(t *testing.T) {
	v, _ := kraken.New(kraken.Options{Credentials: creds(nil)})
	tests := []struct{ method, path, want string }{
		{"GET", "/0/public/Ticker", venue.OpMarketRead},
		{"POST", "/0/public/AssetPairs", venue.OpMarketRead},
		{"POST", "/0/private/Balance", venue.OpAccountRead},
		{"POST", "/0/private/OpenOrders", venue.OpOrderRead},
		{"POST", "/0/private/AddOrder", venue.OpOrderPlace},
		{"POST", "/0/private/AddOrderBatch", venue.OpOrderPlace},
		{"POST", "/0/private/CancelOrder", venue.OpOrderCancel},
		{"POST", "/0/private/CancelAll", venue.OpOrderCancelAll},
		{"POST", "/0/private/Withdraw", venue.OpWalletWithdraw},
		{"POST", "/0/private/WalletTransfer", venue.OpWalletTransfer},
		{"POST", "/0/private/GetWebSocketsToken", venue.OpAPIKeyManage},
		{"GET", "/0/private/Balance", ""},
		{"POST", "/0/private/Unknown", ""},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			if op, _ := v.Classify(&venue.Request{Method: tt.method, Path: tt.path}); op != tt.want {
				t.Errorf("= %q, want %q", op, tt.want)
			}
		})
	}
}

// TestNormalize: orders are read as Kraken executes them — a market
// order's price is not read, stop orders carry their trigger and their
// limit (price2), an edit is judged at the market too.
func TestNormalize(t *testing.T) {
	v, _ := kraken.New(kraken.Options{Credentials: creds(nil)})
	tests := []struct {
		name, path, query, body string
		want                    *venue.Order
		err                     bool
	}{
		{"limit", "/0/private/AddOrder", "", "nonce=1&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25&cl_ord_id=c-1",
			&venue.Order{Instrument: "XBTUSD", Side: "buy", Type: "limit", Quantity: "1.25", Price: "37500", ClientOrderID: "c-1"}, false},
		{"userref as client id", "/0/private/AddOrder", "", "ordertype=market&pair=ETHUSD&type=SELL&volume=2&userref=77",
			&venue.Order{Instrument: "ETHUSD", Side: "sell", Type: "market", Quantity: "2", ClientOrderID: "77", Market: true}, false},
		{"market with a price of its own", "/0/private/AddOrder", "", "ordertype=market&pair=XBTUSD&type=buy&volume=10&price=1",
			&venue.Order{Instrument: "XBTUSD", Side: "buy", Type: "market", Quantity: "10", Market: true}, false},
		{"quote volume", "/0/private/AddOrder", "", "ordertype=market&pair=XBTUSD&type=buy&volume=100&oflags=fciq,viqc",
			&venue.Order{Instrument: "XBTUSD", Side: "buy", Type: "market", Notional: "100", Market: true}, false},
		{"stop loss", "/0/private/AddOrder", "", "ordertype=stop-loss&pair=XBTUSD&type=sell&volume=1&price=30000",
			&venue.Order{Instrument: "XBTUSD", Side: "sell", Type: "stop-loss", Quantity: "1", TriggerPrice: "30000", Market: true}, false},
		{"take profit limit", "/0/private/AddOrder", "", "ordertype=take-profit-limit&pair=XBTUSD&type=buy&volume=1&price=30000&price2=30100",
			&venue.Order{Instrument: "XBTUSD", Side: "buy", Type: "take-profit-limit", Quantity: "1", Price: "30100", TriggerPrice: "30000"}, false},
		{"trailing stop, relative offset", "/0/private/AddOrder", "", "ordertype=trailing-stop&pair=XBTUSD&type=buy&volume=1&price=%2B50",
			&venue.Order{Instrument: "XBTUSD", Side: "buy", Type: "trailing-stop", Quantity: "1", TriggerPrice: "+50", Market: true}, false},
		{"unknown type", "/0/private/AddOrder", "", "ordertype=new-kind&pair=XBTUSD&type=buy&volume=0&price=1&price2=2",
			&venue.Order{Instrument: "XBTUSD", Side: "buy", Type: "new-kind", Quantity: "0", Price: "1", LegPrices: []string{"2"}, Market: true}, false},
		{"settle position", "/0/private/AddOrder", "", "ordertype=settle-position&pair=XBTUSD&type=buy&volume=1", nil, true},
		{"fields in query", "/0/private/AddOrder", "pair=XBTUSD&type=buy&ordertype=limit&volume=1&price=2", "",
			&venue.Order{Instrument: "XBTUSD", Side: "buy", Type: "limit", Quantity: "1", Price: "2"}, false},
		{"not an order", "/0/private/Balance", "", "nonce=1", nil, false},
		{"edit", "/0/private/EditOrder", "", "txid=O1&pair=XBTUSD&volume=2&price=3&price2=4",
			&venue.Order{Instrument: "XBTUSD", Type: "edit", Quantity: "2", Price: "3", LegPrices: []string{"4"}, Market: true}, false},
		{"edit without pair", "/0/private/EditOrder", "", "txid=O1&volume=2", nil, true},
		{"batch is refused", "/0/private/AddOrderBatch", "", `{"orders":[]}`, nil, true},
		{"no side", "/0/private/AddOrder", "", "pair=XBTUSD&volume=1", nil, true},
		{"bad form", "/0/private/AddOrder", "", "pair=%zz", nil, true},
		{"json", "/0/private/AddOrder", "", `{"pair":"XBTUSD"}`, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := v.Normalize(&venue.Request{Method: "POST", Path: tt.path, RawQuery: tt.query, Body: []byte(tt.body)})
			if (err != nil) != tt.err {
				t.Fatalf("err = %v", err)
			}
			if !reflect.DeepEqual(o, tt.want) {
				t.Fatalf("= %+v, want %+v", o, tt.want)
			}
		})
	}
	for _, body := range []string{`{"orders":[{"a":1,"a":2}]}`, "orders=1&orders=2"} {
		if _, err := v.Normalize(&venue.Request{Method: "POST", Path: "/0/private/AddOrderBatch", Body: []byte(body)}); !errors.Is(err, venue.ErrDuplicateParam) {
			t.Fatalf("batch %s: %v, want a duplicate refusal", body, err)
		}
	}
	if v.ClientOrderIDField() != "cl_ord_id" {
		t.Fatal("ClientOrderIDField")
	}
}

func FuzzParseOrder(f *testing.F) {
	f.Add("XBTUSD", "buy", "limit", "1.25", "37500", "cid", "")
	f.Add("", "", "", "", "", "", "pair=%zz&&")
	f.Fuzz(func(t *testing.T, pair, side, typ, vol, price, cid, raw string) {
		if raw != "" {
			_, _ = kraken.ParseOrder(raw, []byte(raw)) // never panics
		}
		form := url.Values{"pair": {pair}, "type": {side}, "ordertype": {typ}, "volume": {vol}, "price": {price}, "cl_ord_id": {cid}}
		o, err := kraken.ParseOrder("", []byte(form.Encode()))
		if err != nil {
			return
		}
		if o.Instrument != pair || o.Side != strings.ToLower(side) || o.Type != strings.ToLower(typ) || o.Quantity != vol || o.Price != price {
			t.Fatalf("round trip: %+v from %v", o, form)
		}
		if cid != "" && o.ClientOrderID != cid {
			t.Fatalf("client id %q", o.ClientOrderID)
		}
	})
}

func TestRateLimiter(t *testing.T) {
	v, _ := kraken.New(kraken.Options{Credentials: creds(nil)})
	t0 := time.Unix(1700000000, 0)
	// Starter: REST counter 15, 5% headroom → 14 calls, then refuse.
	for i := range 14 {
		if _, ok := v.Allow(venue.OpAccountRead, t0); !ok {
			t.Fatalf("call %d refused", i)
		}
	}
	d, ok := v.Allow(venue.OpAccountRead, t0)
	if ok || d < time.Second {
		t.Fatalf("15th call: %v %v", d, ok)
	}
	if _, ok := v.Allow(venue.OpMarketRead, t0); !ok {
		t.Fatal("public call refused")
	}
	if _, ok := v.Allow(venue.OpOrderPlace, t0); !ok {
		t.Fatal("orders use their own counter")
	}
	if _, ok := v.Allow(venue.OpAccountRead, t0.Add(d)); !ok {
		t.Fatalf("still refused after %v", d)
	}
	// A 429 with Retry-After stops everything but public reads... and those too.
	v.Observe(&http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {"30"}}}, t0)
	if d, ok := v.Allow(venue.OpOrderPlace, t0.Add(10*time.Second)); ok || d != 20*time.Second {
		t.Fatalf("during back-off: %v %v", d, ok)
	}
	if _, ok := v.Allow(venue.OpOrderPlace, t0.Add(31*time.Second)); !ok {
		t.Fatal("after back-off")
	}
}

// TestShareLimits: with two replicas on one key, each allows half of each
// counter (starter: REST 15 → 7.5, trading 60 → 30, less 5%).
func TestShareLimits(t *testing.T) {
	v, _ := kraken.New(kraken.Options{Credentials: creds(nil)})
	v.ShareLimits(2)
	t0 := time.Unix(1700000000, 0)
	count := func(op string) int {
		n := 0
		for range 1000 {
			if _, ok := v.Allow(op, t0); !ok {
				return n
			}
			n++
		}
		return n
	}
	if n := count(venue.OpAccountRead); n != 7 {
		t.Errorf("REST calls allowed: %d, want 7", n)
	}
	if n := count(venue.OpOrderPlace); n != 28 {
		t.Errorf("orders allowed: %d, want 28", n)
	}
	// Half the decay too (0.165 per s): one REST call comes back after
	// 5.3 s, not after 2.7 s as alone.
	if _, ok := v.Allow(venue.OpAccountRead, t0.Add(3100*time.Millisecond)); ok {
		t.Error("a REST call allowed after 3.1 s: the decay is not shared")
	}
	if _, ok := v.Allow(venue.OpAccountRead, t0.Add(6200*time.Millisecond)); !ok {
		t.Error("no REST call allowed after 6.2 s")
	}
	u := v.RateUsage(t0)
	if len(u) != 2 || u[0].Limit != 7.5 || u[1].Limit != 30 {
		t.Errorf("usage limits: %+v", u)
	}
}

// TestObserveAnswer: Kraken's rate-limit errors arrive in an HTTP 200's
// error list. EAPI:Rate limit exceeded fills the REST counter (calls wait
// for its decay, and the wait is shared with other replicas);
// EOrder:Rate limit exceeded fills the trading counter only;
// EService:Throttled waits for the time it names (capped); a lockout backs
// off a minute; other answers change nothing.
func TestObserveAnswer(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	ok200 := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}}
	tests := []struct {
		name   string
		tier   string
		body   string
		shared time.Duration
		read   time.Duration // wait of an account read (0: allowed)
		order  time.Duration // wait of an order
	}{
		// Starter: (15+1-14.25)/0.33 s = 5.30 s, rounded up to 100 ms.
		{"REST counter", "", `{"error":["EAPI:Rate limit exceeded"],"result":{}}`, 5400 * time.Millisecond, 5400 * time.Millisecond, 0},
		{"REST counter, escaped", "", `{"error":["EAPI:Rate limit exceed\u0065d"],"result":{}}`, 5400 * time.Millisecond, 5400 * time.Millisecond, 0},
		{"REST counter, pro", "pro", `{"error":["EAPI:Rate limit exceeded"]}`, 2 * time.Second, 2 * time.Second, 0},
		{"trading counter", "", `{"error":["EOrder:Rate limit exceeded"]}`, 0, 0, 4 * time.Second},
		{"throttled until", "", `{"error":["EService: Throttled: 1700000042"]}`, 42 * time.Second, 42 * time.Second, 42 * time.Second},
		{"throttled, no time", "", `{"error":["EService:Throttled"]}`, 5 * time.Second, 5 * time.Second, 5 * time.Second},
		{"throttled past the cap", "", `{"error":["EService:Throttled: 1800000000"]}`, 10 * time.Minute, 10 * time.Minute, 10 * time.Minute},
		{"lockout", "", `{"error":["EGeneral:Temporary lockout"]}`, time.Minute, time.Minute, time.Minute},
		{"no model: REST", "none", `{"error":["EAPI:Rate limit exceeded"]}`, 5 * time.Second, 5 * time.Second, 5 * time.Second},
		{"no model: trading", "none", `{"error":["EOrder:Rate limit exceeded"]}`, 0, 5 * time.Second, 5 * time.Second},
		{"success", "", `{"error":[],"result":{"descr":"Rate limit exceeded"}}`, 0, 0, 0},
		{"another error", "", `{"error":["EOrder:Insufficient funds"]}`, 0, 0, 0},
		{"not JSON", "", `EAPI:Rate limit exceeded`, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := kraken.New(kraken.Options{Credentials: creds(nil), Tier: tt.tier})
			if err != nil {
				t.Fatal(err)
			}
			if d := v.ObserveAnswer(ok200, []byte(tt.body), t0); d != tt.shared {
				t.Errorf("shared back-off %v, want %v", d, tt.shared)
			}
			for _, c := range []struct {
				op   string
				wait time.Duration
			}{{venue.OpAccountRead, tt.read}, {venue.OpOrderPlace, tt.order}} {
				if d, ok := v.Allow(c.op, t0); ok != (c.wait == 0) || (c.wait > 0 && d != c.wait) {
					t.Errorf("%s: Allow = %v, %v; want a wait of %v", c.op, d, ok, c.wait)
				}
			}
			if _, ok := v.Allow(venue.OpOrderPlace, t0.Add(max(tt.read, tt.order))); !ok {
				t.Errorf("orders still refused after %v", max(tt.read, tt.order))
			}
		})
	}
}

// FuzzObserveAnswer: any answer body is read without panicking, and no
// back-off it causes is longer than the 10-minute cap (a lockout's minute
// and the REST counter's decay are below it).
func FuzzObserveAnswer(f *testing.F) {
	for _, s := range []string{`{"error":["EAPI:Rate limit exceeded"]}`, `{"error":["EService: Throttled: 1700000042"]}`,
		`{"error":["EOrder:Rate limit exceeded","EGeneral:Temporary lockout"]}`, `{"error":[],"result":{}}`, `Throttled`, `{"error":"x"}`} {
		f.Add(s, "")
		f.Add(s, "none")
	}
	t0 := time.Unix(1700000000, 0)
	f.Fuzz(func(t *testing.T, body, tier string) {
		if tier != "none" {
			tier = ""
		}
		v, err := kraken.New(kraken.Options{Credentials: creds(nil), Tier: tier})
		if err != nil {
			t.Fatal(err)
		}
		d := v.ObserveAnswer(&http.Response{StatusCode: http.StatusOK, Header: http.Header{}}, []byte(body), t0)
		if d < 0 || d > 10*time.Minute {
			t.Fatalf("shared back-off %v", d)
		}
		for _, op := range []string{venue.OpAccountRead, venue.OpOrderPlace} {
			if wait, ok := v.Allow(op, t0); !ok && (wait <= 0 || wait > 10*time.Minute) {
				t.Fatalf("%s: wait %v", op, wait)
			}
		}
	})
}
