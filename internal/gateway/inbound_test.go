package gateway_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/upstream"
	"github.com/keystile/keystile/internal/venue"
)

// TestQueryTokenNotForwarded: a kst_ token in the query, in the value or
// the key, plain or percent-encoded once or twice, is removed before the
// request is signed and forwarded; every other pair reaches the venue
// byte for byte and in order.
func TestQueryTokenNotForwarded(t *testing.T) {
	h := newHarness(t, config{})
	tok, _ := h.mint(token.CreateRequest{})
	for _, tc := range []struct {
		name, query, want string
	}{
		{"value", "a=1&token=" + tok + "&b=%20x", "a=1&b=%20x"},
		{"encoded value", "apiKey=" + strings.Replace(tok, "_", "%5F", 1) + "&c=3", "c=3"},
		{"double-encoded value", "k=%256Bst%255Flive%255Fzz&d=4", "d=4"},
		{"key", tok + "=1&e=5", "e=5"},
		{"upper case", "x=KST_LIVE_abc&f=6", "f=6"},
		{"only pair", "t=" + tok, ""},
		{"untouched", "symbol=BTCUSDT&side=BUY&kstx=1", "symbol=BTCUSDT&side=BUY&kstx=1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h.up.reset()
			r := h.do(t, http.MethodGet, "/v/echo/q?"+tc.query, tok, nil, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			reqs := h.up.requests()
			if len(reqs) != 1 {
				t.Fatalf("upstream saw %d requests", len(reqs))
			}
			_, q, _ := strings.Cut(reqs[0].RequestURI, "?")
			if q != tc.want {
				t.Fatalf("upstream query %q, want %q", q, tc.want)
			}
			if strings.Contains(strings.ToLower(reqs[0].RequestURI), "kst") && tc.name != "untouched" {
				t.Fatalf("a token reached the venue: %q", reqs[0].RequestURI)
			}
		})
	}
}

// TestRoutingHeadersNotForwarded: headers that would make a server or a
// proxy in front of the venue route, rewrite, upgrade or re-identify the
// request never reach the venue.
func TestRoutingHeadersNotForwarded(t *testing.T) {
	h := newHarness(t, config{})
	tok, _ := h.mint(token.CreateRequest{})
	hostile := http.Header{
		"X-Original-Url":        {"/pfx-w/admin"},
		"X-Rewrite-Url":         {"/pfx-w/admin"},
		"X-Override-Url":        {"/pfx-w/admin"},
		"X-Original-Host":       {"internal"},
		"X-Original-Uri":        {"/pfx-w/admin"},
		"X-Forwarded-Prefix":    {"/pfx-w"},
		"X-Forwarded-Uri":       {"/pfx-w/admin"},
		"X-Forwarded-Port":      {"8443"},
		"X-Forwarded-Server":    {"internal"},
		"X-Envoy-Original-Path": {"/pfx-w/admin"},
		"X-Host":                {"internal"},
		"X-Http-Destinationurl": {"https://internal/"},
		"True-Client-Ip":        {"10.0.0.1"},
		"X-Client-Ip":           {"10.0.0.1"},
		"Via":                   {"1.1 internal"},
		"Upgrade":               {"websocket"},
		"Connection":            {"Upgrade"},
		"Sec-Websocket-Key":     {"dGhlIHNhbXBsZSBub25jZQ=="},
		"X-Bot-Own":             {"kept"},
	}
	r := h.do(t, http.MethodGet, "/v/echo/headers", tok, nil, hostile)
	if r.Status != http.StatusOK {
		t.Fatalf("status %d: %s", r.Status, r.Body)
	}
	reqs := h.up.requests()
	if len(reqs) != 1 {
		t.Fatalf("upstream saw %d requests", len(reqs))
	}
	got := reqs[0].Header
	for k := range hostile {
		switch k {
		case "X-Bot-Own", "Sec-Websocket-Key":
			continue
		}
		if v, ok := got[k]; ok {
			t.Errorf("%s reached the venue: %q", k, v)
		}
	}
	if got.Get("X-Bot-Own") != "kept" {
		t.Errorf("an ordinary header was dropped: %v", got)
	}
	if reqs[0].Path != prefixV+"/echo/headers" {
		t.Errorf("upstream path %q", reqs[0].Path)
	}
}

// TestUpgradeNeverTunnels: a venue answering 101 to an upgrade request
// does not get a tunnel to the bot: the upgrade headers were stripped, so
// the proxy refuses the switch.
func TestUpgradeNeverTunnels(t *testing.T) {
	h := newHarness(t, config{})
	tok, _ := h.mint(token.CreateRequest{})
	h.up.handle(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			w.WriteHeader(http.StatusOK)
			return
		}
		w.Header().Set("Upgrade", "websocket")
		w.Header().Set("Connection", "Upgrade")
		w.WriteHeader(http.StatusSwitchingProtocols)
	})
	// A raw connection with a deadline: a tunnel, if one were opened,
	// would never end on its own (nor would the servers' Close without
	// dropping their connections first).
	t.Cleanup(h.up.srv.CloseClientConnections)
	t.Cleanup(h.front.CloseClientConnections)
	conn, err := net.Dial("tcp", h.front.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	_, err = io.WriteString(conn, "GET /v/echo/ws HTTP/1.1\r\nHost: gateway\r\nAuthorization: Bearer "+tok+
		"\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read answer: %v", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		t.Fatal("the bot got a protocol switch")
	}
	if reqs := h.up.requests(); len(reqs) != 1 || reqs[0].Header.Get("Upgrade") != "" {
		t.Fatalf("upstream requests %+v", reqs)
	}
}

// TestDotSegmentVariants: every spelling of a dot segment a server might
// resolve is refused like ".." (400 request.path), before the token is
// looked at and without reaching the venue; look-alike paths that are not
// dot segments still pass.
func TestDotSegmentVariants(t *testing.T) {
	h := newHarness(t, config{})
	tok, _ := h.mint(token.CreateRequest{})
	hdr := http.Header{"Authorization": {"Bearer " + tok}}
	for _, p := range []string{
		"/v/echo/..;/w/api/ticker",
		"/v/echo/..;jsessionid=1/x",
		"/v/echo/%2e%2e;/x",
		"/v/echo/.;/x",
		"/v/echo/;x/y",
		"/v/echo/%252e%252e/x",
		"/v/echo/%25252e%25252e/x",
		"/v/echo/%252E%252e%253b/x",
		"/v/echo/%252fx",
		"/v/echo/%255cx",
		"/v/echo/%2500x",
		"/v/echo/%c0%ae%c0%ae/x",
		"/v/echo/%e0%80%ae%e0%80%ae/x",
		"/v/echo/%c0%af",
		"/v/echo/%ff/x",
		"/v/echo/%ef%bc%8e%ef%bc%8e/x",
		"/v/echo/%e2%80%a4%e2%80%a4/x",
		"/v/echo/%ef%bc%8fx",
		"/v/echo/.../x",
		"/v/echo/.%20./x",
		"/v/echo/..%20/x",
		"/v/echo/%20../x",
		"/v/echo/%u002e%u002e/x",
	} {
		t.Run(p, func(t *testing.T) {
			h.up.reset()
			r := h.raw(t, http.MethodGet, p, hdr)
			if r.Status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.Status, r.Body)
			}
			// %u escapes do not even pass net/http's request-line
			// parser; everything else is the gateway's refusal.
			if !strings.Contains(p, "%u") {
				if pe := errorOf(t, r); pe.Error.Rule != "request.path" {
					t.Fatalf("rule %q", pe.Error.Rule)
				}
			}
			if n := h.up.count(); n != 0 {
				t.Fatalf("upstream saw %d requests", n)
			}
		})
	}
	for _, p := range []string{"/v/echo/a.b", "/v/echo/.well-known", "/v/echo/..x", "/v/echo/a;b=c", "/v/echo/100%25", "/v/echo/caf%C3%A9"} {
		t.Run("allowed "+p, func(t *testing.T) {
			if r := h.raw(t, http.MethodGet, p, hdr); r.Status != http.StatusOK {
				t.Fatalf("status %d, want 200: %s", r.Status, r.Body)
			}
		})
	}
}

// formVenue is the test venue with an order normalizer that reads a form
// order the way a real exchange adapter does (venue.FormParams).
type formVenue struct{ *testVenue }

func (v formVenue) Normalize(r *venue.Request) (*venue.Order, error) {
	if op, _ := v.Classify(r); op != venue.OpOrderPlace {
		return nil, nil
	}
	p, err := venue.FormParams(r.RawQuery, r.Body, nil)
	if err != nil {
		return nil, err
	}
	return &venue.Order{Instrument: p.Get("symbol"), Side: p.Get("side"), Type: "limit", Quantity: p.Get("qty"), Price: p.Get("price")}, nil
}

func (formVenue) ClientOrderIDField() string { return "cid" }

var _ venue.Normalizer = formVenue{}

// TestDuplicateOrderParamsRefused: an order naming a parameter twice (in
// the query, in the body, across both, in another letter case or
// encoding) is refused with 400 before anything is signed — under a
// policy that reads no order fields, too — while the same order without
// the duplicate goes through.
func TestDuplicateOrderParamsRefused(t *testing.T) {
	ctx := context.Background()
	up := newRecorder(t)
	db, err := sqlite.Open(ctx, t.TempDir()+"/k.db")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	tokens, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := upstream.New(upstream.Options{Hosts: []string{up.host()}, RootCAs: up.pool()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	base, _ := url.Parse("https://" + up.host() + prefixV)
	tv := &testVenue{table: testTable(), key: secret.FromString(canary)}
	events := &sink{}
	gw, err := gateway.New(gateway.Options{Tokens: tokens, Events: events, Policy: policy.New(policy.Options{}),
		Venues: []gateway.Venue{{ID: "v", Impl: formVenue{tv}, Live: &gateway.Endpoint{BaseURL: base, Transport: tr}}}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(gw)
	t.Cleanup(front.Close)
	raw, _, err := tokens.Create(ctx, token.CreateRequest{Name: "bot", Venues: []string{"v"}})
	if err != nil {
		t.Fatal(err)
	}
	send := func(query, body string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, front.URL+"/v/api/order?"+query, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+string(raw.Reveal()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct{ name, query, body string }{
		{"query twice", "symbol=BTCUSDT&symbol=ETHUSDT&side=buy&qty=1&price=1", ""},
		{"body twice", "", "symbol=BTCUSDT&qty=1&qty=100&side=buy&price=1"},
		{"query and body", "symbol=BTCUSDT&qty=1&side=buy", "qty=100&price=1"},
		{"other case", "symbol=BTCUSDT&SYMBOL=ETHUSDT&side=buy&qty=1&price=1", ""},
		{"encoded key", "symbol=BTCUSDT&%73ymbol=ETHUSDT&side=buy&qty=1&price=1", ""},
		{"empty duplicate", "symbol=BTCUSDT&side=buy&side=&qty=1&price=1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up.reset()
			status, body := send(tc.query, tc.body)
			if status != http.StatusBadRequest || !strings.Contains(body, `"rule":"venue.duplicate_parameter"`) {
				t.Fatalf("status %d body %s, want 400 venue.duplicate_parameter", status, body)
			}
			if strings.Contains(body, "symbol") || strings.Contains(body, "qty") {
				t.Fatalf("the answer quotes the request: %s", body)
			}
			if up.count() != 0 || tv.calls.Load() != 0 {
				t.Fatalf("the order was signed or forwarded")
			}
		})
	}
	if status, body := send("symbol=BTCUSDT&side=buy&qty=1&price=1", ""); status != http.StatusOK {
		t.Fatalf("clean order: status %d: %s", status, body)
	}
}
