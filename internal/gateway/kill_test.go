package gateway_test

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/upstream"
	"github.com/keystile/keystile/internal/venue"
)

// killHarness is a gateway behind a real kill switch (SQLite store): the
// switch guards token verification and the venue's transport, and serves
// POST /-/kill.
type killHarness struct {
	front  *httptest.Server
	tokens *token.Service
	sw     *killswitch.Switch
	up     *recorder
	sink   *sink
}

func newKillHarness(t *testing.T, withKill bool) *killHarness {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keystile.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	tokens, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		t.Fatal(err)
	}
	sw, err := killswitch.New(ctx, killswitch.Options{Store: db.Trips(), DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	up := newRecorder(t)
	tr, err := upstream.New(upstream.Options{Hosts: []string{up.host()}, RootCAs: up.pool()})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse("https://" + up.host() + prefixV)
	snk := &sink{}
	o := gateway.Options{Tokens: sw.Guard(tokens), Events: snk, Venues: []gateway.Venue{{ID: "v", Impl: &testVenue{table: testTable(), key: secret.FromString(canary)},
		Live: &gateway.Endpoint{BaseURL: base, Transport: sw.Transport("v", tr)}}}}
	if withKill {
		o.Kill = sw
	}
	gw, err := gateway.New(o)
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewUnstartedServer(gw)
	front.Config.ErrorLog = log.New(io.Discard, "", 0)
	front.Start()
	t.Cleanup(front.Close)
	return &killHarness{front: front, tokens: tokens, sw: sw, up: up, sink: snk}
}

func (h *killHarness) mint(t *testing.T) (string, *token.Token) {
	t.Helper()
	raw, tok, err := h.tokens.Create(context.Background(), token.CreateRequest{Name: "bot", Venues: []string{"v"}})
	if err != nil {
		t.Fatal(err)
	}
	return string(raw.Reveal()), tok
}

func (h *killHarness) do(t *testing.T, method, path, tok, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, h.front.URL+path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := h.front.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestBotKill: a bot's POST /-/kill freezes its own token at once (its
// next request is refused before anything is signed; another bot goes on),
// repeating it is harmless, and the request is audited with the rule.
func TestBotKill(t *testing.T) {
	h := newKillHarness(t, true)
	raw, tok := h.mint(t)
	other, _ := h.mint(t)
	if st, b := h.do(t, "GET", "/v/api/account", raw, ""); st != 200 {
		t.Fatalf("before: %d %s", st, b)
	}
	st, b := h.do(t, "POST", gateway.PathKill, raw, `{"reason":"drawdown"}`)
	var ans killswitch.BotKillAnswer
	if st != 200 || json.Unmarshal(b, &ans) != nil || !ans.Killed || ans.Scope != killswitch.BotToken || len(ans.Trips) != 1 {
		t.Fatalf("kill: %d %s", st, b)
	}
	n := h.up.count()
	st, b = h.do(t, "GET", "/v/api/account", raw, "")
	if st != 403 || !strings.Contains(string(b), `"rule":"token.killed"`) || !strings.Contains(string(b), msgForbidden) {
		t.Fatalf("after kill: %d %s", st, b)
	}
	if h.up.count() != n {
		t.Fatal("a killed token's request reached the venue")
	}
	if st, _ := h.do(t, "GET", "/v/api/account", other, ""); st != 200 {
		t.Fatalf("another bot: %d", st)
	}
	st, b = h.do(t, "POST", gateway.PathKill, raw, "")
	if st != 200 || !strings.Contains(string(b), `"already":true`) {
		t.Fatalf("second kill: %d %s", st, b)
	}
	var killEvents int
	for _, e := range h.sink.all() {
		if e.Path == gateway.PathKill {
			killEvents++
			if e.TokenID != string(tok.ID) || e.Operation != "killswitch.bot" || e.Decision != "allow" {
				t.Errorf("event %+v", e)
			}
		}
	}
	if killEvents != 2 {
		t.Fatalf("kill events: %d", killEvents)
	}
}

// TestBotKillRefusals: every malformed or unauthenticated kill request
// gets a fixed public message and engages nothing.
func TestBotKillRefusals(t *testing.T) {
	h := newKillHarness(t, true)
	raw, _ := h.mint(t)
	tests := []struct {
		name, method, tok, body string
		status                  int
		code                    string
	}{
		{"GET", "GET", raw, "", 405, "method_not_allowed"},
		{"no token", "POST", "", "", 401, "unauthorized"},
		{"unknown token", "POST", "kst_live_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA000000", "", 401, "unauthorized"},
		{"malformed body", "POST", raw, `{"scope":"off"}`, 400, "bad_request"},
		{"not JSON", "POST", raw, `kill me`, 400, "bad_request"},
		{"body too large", "POST", raw, `{"reason":"` + strings.Repeat("x", 8<<10) + `"}`, 413, "too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, b := h.do(t, tt.method, gateway.PathKill, tt.tok, tt.body)
			var e struct {
				Error struct{ Code, Message string }
			}
			if st != tt.status || json.Unmarshal(b, &e) != nil || e.Error.Code != tt.code {
				t.Fatalf("%d %s", st, b)
			}
			if strings.Contains(string(b), "killswitch:") || strings.Contains(string(b), "invalid character") {
				t.Fatalf("internal error text reached the bot: %s", b)
			}
			if h.sw.Engaged() {
				t.Fatal("engaged")
			}
		})
	}
	// Look-alike paths are not the kill endpoint (and engage nothing).
	for _, p := range []string{"/-/kill/", "/-/%6Bill", "/-/KILL", "//-/kill", "/-/kill/../kill"} {
		if st, _ := h.do(t, "POST", p, raw, ""); st == 200 || h.sw.Engaged() {
			t.Fatalf("%s: %d, engaged %v", p, st, h.sw.Engaged())
		}
	}
	// Without a Killer the path does not exist.
	h2 := newKillHarness(t, false)
	raw2, _ := h2.mint(t)
	if st, _ := h2.do(t, "POST", gateway.PathKill, raw2, ""); st != 404 {
		t.Fatalf("without Kill: %d", st)
	}
}

// blockingVenue is the test venue whose Authenticate waits for release
// once it has been entered: a request held between the token check and
// the network.
type blockingVenue struct {
	*testVenue
	entered chan struct{}
	release chan struct{}
}

func (v *blockingVenue) Authenticate(ctx context.Context, out *http.Request, body []byte) error {
	close(v.entered)
	<-v.release
	return v.testVenue.Authenticate(ctx, out, body)
}

// TestPanicRefusesInFlight: a request that passed the token check before
// the panic, and is being signed when it engages, is refused at the
// transport (403, never sent); health stays up.
func TestPanicRefusesInFlight(t *testing.T) {
	h := newKillHarness(t, true)
	raw, _ := h.mint(t)
	bv := &blockingVenue{testVenue: &testVenue{table: testTable(), key: secret.FromString(canary)}, entered: make(chan struct{}), release: make(chan struct{})}
	tr, err := upstream.New(upstream.Options{Hosts: []string{h.up.host()}, RootCAs: h.up.pool()})
	if err != nil {
		t.Fatal(err)
	}
	base, _ := url.Parse("https://" + h.up.host() + prefixV)
	gw, err := gateway.New(gateway.Options{Tokens: h.sw.Guard(h.tokens), Kill: h.sw,
		Venues: []gateway.Venue{{ID: "v", Impl: bv, Live: &gateway.Endpoint{BaseURL: base, Transport: h.sw.Transport("v", tr)}}}})
	if err != nil {
		t.Fatal(err)
	}
	front := httptest.NewServer(gw)
	defer front.Close()
	type result struct {
		status int
		body   string
	}
	done := make(chan result)
	go func() {
		req, _ := http.NewRequest("POST", front.URL+"/v/api/order", strings.NewReader("qty=1"))
		req.Header.Set("Authorization", "Bearer "+raw)
		resp, err := front.Client().Do(req)
		if err != nil {
			done <- result{0, err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		done <- result{resp.StatusCode, string(b)}
	}()
	<-bv.entered
	res, err := h.sw.Engage(context.Background(), killswitch.Engagement{Scope: killswitch.ScopeAll, Rule: "r", Actor: "a"})
	if err != nil {
		t.Fatal(err)
	}
	close(bv.release)
	r := <-done
	if r.status != 403 || !strings.Contains(r.body, msgForbidden) || h.up.count() != 0 {
		t.Fatalf("held request: %d %s, upstream %d (engage %+v)", r.status, r.body, h.up.count(), res)
	}
	if st, _ := h.do(t, "GET", "/-/healthz", "", ""); st != 200 {
		t.Fatalf("health under panic: %d", st)
	}
}

// TestDirect: keystile's own requests (cancel-all) go to every served
// endpoint signed like a bot's, and their answers are scrubbed too.
func TestDirect(t *testing.T) {
	h := newHarness(t, config{})
	h.up.handle(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"echo":"`+r.Header.Get(hdrKey)+`"}`)
	})
	eps := h.gw.Direct()
	var got []string
	for _, ep := range eps {
		got = append(got, ep.Venue+map[bool]string{false: "/live", true: "/test"}[ep.Test])
	}
	if strings.Join(got, ",") != "t/test,v/live,w/live" {
		t.Fatalf("endpoints %v", got)
	}
	status, body, err := eps[1].Send(context.Background(), &venue.Request{Method: "GET", Path: "/api/account", Header: http.Header{}})
	if err != nil || status != 200 {
		t.Fatalf("send: %d %v", status, err)
	}
	if strings.Contains(string(body), canary) {
		t.Fatalf("answer not scrubbed: %s", body)
	}
	reqs := h.up.requests()
	if len(reqs) != 1 || reqs[0].Header.Get(hdrKey) != canary || reqs[0].Path != prefixV+"/api/account" {
		t.Fatalf("upstream saw %+v", reqs)
	}
}
