package app_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/sandbox"
)

// e2eVenue is one seed venue as the end-to-end tests drive it: the id it
// has in keystile's config (the sandbox's venue name), its config type,
// one read and one order placement a bot would make.
type e2eVenue struct {
	id, kind    string
	read, order botRequest
}

// botRequest is one request of a scripted bot, relative to the venue.
type botRequest struct {
	method, path, body string
}

// e2eVenues are the seed venues, each with a read and an order that the
// sandbox accepts (bodies follow the sandbox's emulators).
func e2eVenues() []e2eVenue {
	return []e2eVenue{
		{id: sandbox.VenueStake, kind: config.TypeStake,
			read:  botRequest{"POST", "/graphql", `{"operationName":"UserBalances","query":"query UserBalances { user { id balances { available { amount currency } } } }"}`},
			order: botRequest{"POST", "/graphql", `{"operationName":"SportBet","query":"mutation SportBet($outcomeIds: [String!]!, $amount: Float!, $currency: CurrencyEnum!, $odds: Float!, $identifier: String!) { sportBet(outcomeIds: $outcomeIds, amount: $amount, currency: $currency, odds: $odds, identifier: $identifier) { id status } }","variables":{"outcomeIds":["e2e-outcome-1"],"amount":0.0001,"currency":"btc","odds":2.5,"identifier":"e2e-1"}}`}},
		{id: sandbox.VenueDMarket, kind: config.TypeDMarket,
			read:  botRequest{"GET", "/account/v1/balance", ""},
			order: botRequest{"POST", "/marketplace-api/v1/user-targets/create", `{"GameID":"a8db","Targets":[{"Amount":"1","Price":{"Currency":"USD","Amount":1.5},"Title":"AK-47 | Redline (Field-Tested)"}]}`}},
		{id: sandbox.VenueBetfair, kind: config.TypeBetfair,
			read:  botRequest{"POST", "/exchange/account/rest/v1.0/getAccountFunds/", `{}`},
			order: botRequest{"POST", "/exchange/betting/rest/v1.0/placeOrders/", `{"marketId":"1.234567","instructions":[{"selectionId":47972,"handicap":0,"side":"BACK","orderType":"LIMIT","limitOrder":{"size":2,"price":2.1,"persistenceType":"LAPSE"}}],"customerRef":"e2e-1"}`}},
		{id: sandbox.VenueSTAPI, kind: config.TypeSTAPI,
			read:  botRequest{"GET", "/v1/account", ""},
			order: botRequest{"POST", "/v1/videos", `{"title":"keystile e2e","client_ref":"e2e-1"}`}},
		{id: sandbox.VenueGeneric, kind: config.TypeGeneric,
			read:  botRequest{"GET", "/api/v1/balance", ""},
			order: botRequest{"POST", "/api/v1/orders", `{"market_id":"M1","selection_id":"S1","side":"back","price":2.0,"size":5,"client_order_id":"e2e-1"}`}},
	}
}

// botScopes let a bot token do everything the tests need (no withdrawals).
var botScopes = []string{"market.read", "account.read", "order.*", "media.*"}

// syncBuffer is a bytes.Buffer safe for the server's concurrent logging.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harnessOptions configure startHarness.
type harnessOptions struct {
	// Credentials fix sandbox credentials (sandbox.Options.Credentials).
	Credentials map[string]map[string]string
	// Venues served; nil means e2eVenues().
	Venues []e2eVenue
	// ExtraYAML is appended to the generated config (top-level keys such
	// as policies:, audit:, idempotency:).
	ExtraYAML string
	// Configure, if set, edits the parsed config before the server
	// starts (it sees the sandbox's addresses).
	Configure func(info sandbox.Info, cfg *config.Config)
	// Received, if set, sees every request the sandbox's venues receive.
	Received func(sandbox.Received)
	// Now is the admin second factor's clock (ServerOptions.Now); nil:
	// time.Now.
	Now func() time.Time
}

// harness is a running bot -> gateway -> sandbox setup: a TLS sandbox with
// a throwaway CA, an initialised data dir, a real `keystile serve` (app.Server)
// logging at debug level into a buffer, and an admin client on its socket
// with every venue's credential stored in the vault.
type harness struct {
	sb      *sandbox.Server
	info    sandbox.Info
	srv     *app.Server
	dataDir string
	gw      string // http://127.0.0.1:port
	admin   *admin.Client
	log     *syncBuffer
	hc      *http.Client

	venues []e2eVenue
	cfg    *config.Config

	cancel   context.CancelFunc
	runErr   chan error // nil until Run started
	stopOnce sync.Once
	stopErr  error
}

// startHarness builds and starts everything; t.Cleanup stops it.
func startHarness(t *testing.T, o harnessOptions) *harness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{cancel: cancel, log: &syncBuffer{}, venues: o.Venues}
	if h.venues == nil {
		h.venues = e2eVenues()
	}
	// The sandbox outlives the server (cleanups run last-in first-out),
	// so that shutdown can log venue sessions out.
	sb, err := sandbox.Start(context.Background(), sandbox.Options{TLS: true, Credentials: o.Credentials, Received: o.Received})
	if err != nil {
		cancel()
		t.Fatalf("start sandbox: %v", err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("server run: %v", err)
		}
		if t.Failed() {
			t.Logf("server log (tail):\n%s", tail(h.log.String(), 6000))
		}
	})

	h.sb, h.info = sb, sb.Info()

	// Inputs (CA, config) live outside the data dir, so the leak sweep
	// covers every file of the data dir with no exceptions.
	tmp := t.TempDir()
	h.dataDir = filepath.Join(tmp, "data")
	if _, err := app.Init(ctx, app.Env{}, app.InitOptions{DataDir: h.dataDir, Source: "file"}); err != nil {
		t.Fatalf("init: %v", err)
	}
	caFile := filepath.Join(tmp, "sandbox-ca.pem")
	if err := os.WriteFile(caFile, sb.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("e2e.yaml", []byte(e2eConfigYAML(h.info, caFile, h.venues)+o.ExtraYAML))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	if o.Configure != nil {
		o.Configure(h.info, cfg)
	}

	red := logging.NewRedactor()
	log := logging.New(h.log, logging.Options{Level: slog.LevelDebug, Format: "json", Redactor: red})
	srv, err := app.NewServer(ctx, app.Env{}, app.ServerOptions{DataDir: h.dataDir, Config: cfg, Logger: log, Redactor: red, Now: o.Now})
	if err != nil {
		t.Fatalf("new server: %v", err)
	}
	h.srv, h.cfg = srv, cfg
	h.runErr = make(chan error, 1)
	go func() { h.runErr <- srv.Run(ctx) }()
	h.gw = "http://" + srv.GatewayAddr()

	h.admin, err = admin.NewClient(filepath.Join(h.dataDir, app.SocketFile))
	if err != nil {
		t.Fatalf("admin client: %v", err)
	}
	for _, v := range h.venues {
		fields := map[string][]byte{}
		for k, val := range h.info.Venues[v.id].Credentials {
			fields[k] = []byte(val)
		}
		if _, err := h.admin.SetSecret(ctx, "e2e-"+v.id, admin.SetSecretRequest{Fields: fields}); err != nil {
			t.Fatalf("store %s credential: %v", v.id, err)
		}
	}

	tr := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: 30 * time.Second}
	t.Cleanup(tr.CloseIdleConnections)
	h.hc = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	return h
}

// stop shuts the server down (once) and returns Run's error.
func (h *harness) stop() error {
	h.stopOnce.Do(func() {
		h.cancel()
		if h.runErr == nil { // never started
			return
		}
		select {
		case h.stopErr = <-h.runErr:
		case <-time.After(20 * time.Second):
			h.stopErr = errors.New("server did not stop within 20s")
		}
	})
	return h.stopErr
}

// e2eConfigYAML renders keystile's config for a running sandbox: every
// seed venue under its sandbox name, over TLS with the sandbox's CA, with
// short retry backoffs so that fault tests stay fast.
func e2eConfigYAML(info sandbox.Info, caFile string, venues []e2eVenue) string {
	var b strings.Builder
	b.WriteString("log:\n  level: debug\ngateway:\n  listen: 127.0.0.1:0\ntokens:\n  default_ttl: 1h\n  max_ttl: 24h\nvenues:\n")
	for _, v := range venues {
		fmt.Fprintf(&b, "  %s:\n    type: %s\n    credential: e2e-%s\n    base_url: %s\n    sandbox: true\n    tls:\n      ca_file: %q\n"+
			"    retry:\n      max_attempts: 3\n      initial_backoff: 20ms\n      max_backoff: 200ms\n      max_retry_after: 5s\n",
			v.id, v.kind, v.id, info.Venues[v.id].BaseURL, caFile)
		switch v.id {
		case sandbox.VenueBetfair:
			fmt.Fprintf(&b, "    identity_url: %s\n    login: certlogin\n", info.Venues[v.id].IdentityURL)
		case sandbox.VenueKraken:
			b.WriteString("    tier: none\n")
		case sandbox.VenueSTAPI:
			fmt.Fprintf(&b, "    auth:\n      scheme: oauth2\n      oauth2:\n        token_url: %s/oauth/token\n", info.Venues[v.id].BaseURL)
		case sandbox.VenueGeneric:
			b.WriteString(`    auth:
      scheme: hmac
      key_field: api_key
      secret_field: secret
      hmac:
        template: "{timestamp}{method}{path}{query}{body}"
        algorithm: sha256
        encoding: hex
        timestamp_format: unix_ms
        key_header: X-API-KEY
        timestamp_header: X-TIMESTAMP
        signature_header: X-SIGNATURE
    operations:
      - {method: GET, path: /api/v1/balance, op: account.read}
      - {method: GET, path: /api/v1/markets, op: market.read}
      - {method: GET, path: /api/v1/orders, op: order.read}
      - {method: POST, path: /api/v1/orders, op: order.place}
      - {method: DELETE, path: "/api/v1/orders/{id}", op: order.cancel}
`)
		}
	}
	return b.String()
}

// mint creates a token through the admin API.
func (h *harness) mint(t *testing.T, req admin.CreateTokenRequest) admin.MintedToken {
	t.Helper()
	if req.Name == "" {
		req.Name = "e2e-bot"
	}
	if req.Venues == nil {
		for _, v := range h.venues {
			req.Venues = append(req.Venues, v.id)
		}
	}
	if req.Scopes == nil {
		req.Scopes = botScopes
	}
	if req.TTL == 0 {
		req.TTL = 15 * time.Minute
	}
	m, err := h.admin.CreateToken(context.Background(), req)
	if err != nil {
		t.Fatalf("mint token: %v", err)
	}
	return m
}

// botToken mints a kst_test_ token for every venue, loopback only.
func (h *harness) botToken(t *testing.T) admin.MintedToken {
	t.Helper()
	return h.mint(t, admin.CreateTokenRequest{Test: true, CIDRs: []string{"127.0.0.1/32", "::1/128"}})
}

// botResponse is what the bot received.
type botResponse struct {
	status int
	header http.Header
	body   []byte
}

// raw renders headers and body, for leak checks.
func (r botResponse) raw() string {
	var b strings.Builder
	_ = r.header.Write(&b)
	b.Write(r.body)
	return b.String()
}

// errorCode is the gateway's error code in the body, if any.
func (r botResponse) errorCode() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(r.body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

// errorRule is the rule id in an error answer, if any.
func (r botResponse) errorRule() string {
	var e struct {
		Error struct {
			Rule string `json:"rule"`
		} `json:"error"`
	}
	if json.Unmarshal(r.body, &e) != nil {
		return ""
	}
	return e.Error.Rule
}

// call sends one bot request through the gateway; a transport error is
// returned, not fatal, so it can be used from goroutines.
func (h *harness) call(tok, venueID string, r botRequest) (botResponse, error) {
	return h.callHeader(tok, venueID, r, nil)
}

// callHeader is call with extra request headers.
func (h *harness) callHeader(tok, venueID string, r botRequest, hdr http.Header) (botResponse, error) {
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, h.gw+"/"+venueID+r.path, body)
	if err != nil {
		return botResponse{}, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if r.body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		return botResponse{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return botResponse{}, err
	}
	return botResponse{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// mustCall is call that fails the test on a transport error.
func (h *harness) mustCall(t *testing.T, tok, venueID string, r botRequest) botResponse {
	t.Helper()
	resp, err := h.call(tok, venueID, r)
	if err != nil {
		t.Fatalf("%s %s %s: %v", venueID, r.method, r.path, err)
	}
	return resp
}

// wantOK fails unless the venue accepted the request: 2xx and, for
// Stake's GraphQL (which answers errors with 200), no "errors" member.
func wantOK(t *testing.T, venueID string, r botRequest, resp botResponse) {
	t.Helper()
	if resp.status/100 != 2 || (venueID == sandbox.VenueStake && bytes.Contains(resp.body, []byte(`"errors"`))) {
		t.Fatalf("%s %s %s: status %d, body %.300s", venueID, r.method, r.path, resp.status, resp.body)
	}
	if resp.header.Get("Keystile-Request-Id") == "" {
		t.Errorf("%s %s %s: no Keystile-Request-Id", venueID, r.method, r.path)
	}
}

// canaryCredentials are fixed sandbox credentials in the formats the
// emulators accept, each value recognisable (a "canary"); dmarket's key is
// an Ed25519 key derived from a fixed seed.
func canaryCredentials() map[string]map[string]string {
	seed := sha256.Sum256([]byte("keystile e2e canary dmarket seed"))
	priv := ed25519.NewKeyFromSeed(seed[:])
	pub, _ := priv.Public().(ed25519.PublicKey)
	return map[string]map[string]string{
		sandbox.VenueStake:   {"api_token": hex.EncodeToString([]byte("CANARY-stake-api-token-e2e-0001!"))},
		sandbox.VenueDMarket: {"secret_key": hex.EncodeToString(priv), "public_key": hex.EncodeToString(pub)},
		sandbox.VenueBetfair: {"app_key": "CANARYbfAppKey0001", "username": "canary_bf_user_0001", "password": "CANARY-bf-password-0001"},                       // #nosec G101 -- throwaway test canary
		sandbox.VenueSTAPI:   {"api_key": "stk_CANARYstapiApiKey0001", "client_id": "stc_CANARYclient0001", "client_secret": "CANARY-stapi-client-secret-0001"}, // #nosec G101 -- throwaway test canary
		sandbox.VenueGeneric: {"api_key": "bp_CANARYgenericKey0001", "secret": "CANARY-generic-hmac-secret-0001"},                                               // #nosec G101 -- throwaway test canary
	}
}

// needle is a secret value to look for, with a name that failure
// messages print instead of the value.
type needle struct {
	name, value string
}

// canaryNeedles lists every secret canary value and the forms it could
// leak in: raw, hex (both cases), base64 (std/url, padded or not). For
// dmarket the private seed's hex is added too. Public identifiers that a
// venue needs on the wire (dmarket's public_key) are left out: they are
// not secrets (the echo test checks separately that they are scrubbed).
func canaryNeedles(creds map[string]map[string]string) []needle {
	var out []needle
	for venueID, fields := range creds {
		for name, v := range fields {
			if venueID == sandbox.VenueDMarket && name == "public_key" {
				continue
			}
			out = append(out, encodedForms(venueID+"."+name, v)...)
			if venueID == sandbox.VenueDMarket && name == "secret_key" {
				out = append(out, needle{venueID + ".seed (hex)", v[:64]}, needle{venueID + ".seed (HEX)", strings.ToUpper(v[:64])})
			}
		}
	}
	return out
}

// encodedForms returns v raw, hex and base64-encoded.
func encodedForms(name, v string) []needle {
	h := hex.EncodeToString([]byte(v))
	return []needle{{name, v}, {name + " (hex)", h}, {name + " (HEX)", strings.ToUpper(h)},
		{name + " (base64)", base64.StdEncoding.EncodeToString([]byte(v))},
		{name + " (raw base64)", base64.RawStdEncoding.EncodeToString([]byte(v))},
		{name + " (base64url)", base64.URLEncoding.EncodeToString([]byte(v))},
		{name + " (raw base64url)", base64.RawURLEncoding.EncodeToString([]byte(v))}}
}

// findNeedles returns the names of the needles found in s.
func findNeedles(s string, needles []needle) []string {
	var found []string
	for _, n := range needles {
		if strings.Contains(s, n.value) {
			found = append(found, n.name)
		}
	}
	return found
}

// sweepDataDir reads every regular file under dir (through an os.Root, so
// symlinks cannot lead outside) and returns "file: needle" for each leak
// and the number of files read.
func sweepDataDir(t *testing.T, dir string, needles []needle) (int, []string) {
	t.Helper()
	return walkDataDir(t, dir, func(b []byte) []string { return findNeedles(string(b), needles) })
}

// sweepDataDirRE returns the files under dir that match re.
func sweepDataDirRE(t *testing.T, dir string, re *regexp.Regexp) []string {
	t.Helper()
	_, files := walkDataDir(t, dir, func(b []byte) []string {
		if re.Match(b) {
			return []string{re.String()}
		}
		return nil
	})
	return files
}

// walkDataDir calls match on every regular file under dir and returns the
// number of files read and "file: finding" for each finding.
func walkDataDir(t *testing.T, dir string, match func([]byte) []string) (int, []string) {
	t.Helper()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	defer root.Close()
	n := 0
	var leaks []string
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !d.Type().IsRegular() {
			return err
		}
		b, err := fs.ReadFile(root.FS(), p)
		if err != nil {
			return err
		}
		n++
		for _, f := range match(b) {
			leaks = append(leaks, p+": "+f)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("sweep: %v", err)
	}
	return n, leaks
}

// concurrently runs n copies of fn at once and returns their errors.
func concurrently(n int, fn func(i int) error) []error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			errs[i] = fn(i)
		}()
	}
	close(start)
	wg.Wait()
	var out []error
	for _, e := range errs {
		if e != nil {
			out = append(out, e)
		}
	}
	return out
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
