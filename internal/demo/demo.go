package demo

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/sandbox"
)

// Options configure Run.
type Options struct {
	Out io.Writer // the readable summary
	// Log receives keystile's own logs; if nil they are discarded.
	Log io.Writer
	// DataDir, if set, is used instead of a temporary directory (it must
	// not exist yet) and kept afterwards.
	DataDir string
}

// Result is what the demo observed, for tests.
type Result struct {
	Steps        []Step
	OrdersByVenu map[string]int64
	// Denied is the scalper's over-limit order (403, PolicyRule);
	// Replayed tells whether its repeated Idempotency-Key was answered
	// from the first order; ScalperOrders is what the venue received
	// from the scalper (1).
	Denied        Step
	PolicyRule    string
	Replayed      bool
	ScalperOrders int64
	// Audit is the verification of the audit log after shutdown.
	Audit        audit.Report
	Refused      Step
	FilesChecked int
	Leaks        []string
	DataDir      string
}

// Step is one request the scripted bot made.
type Step struct {
	Venue     string
	Operation string
	Method    string
	Path      string
	Status    int
	Latency   time.Duration
	RequestID string
}

// venueIDs are the demo's venue ids and types.
var venueIDs = []struct{ id, kind, sandbox string }{
	{"stake", config.TypeStake, sandbox.VenueStake},
	{"dmarket", config.TypeDMarket, sandbox.VenueDMarket},
	{"betfair", config.TypeBetfair, sandbox.VenueBetfair},
	{"stapi", config.TypeSTAPI, sandbox.VenueSTAPI},
	{"betpro", config.TypeGeneric, sandbox.VenueGeneric},
	{"binance", config.TypeBinance, sandbox.VenueBinance},
	{"kraken", config.TypeKraken, sandbox.VenueKraken},
	{"okx", config.TypeOKX, sandbox.VenueOKX},
	{"bybit", config.TypeBybit, sandbox.VenueBybit},
	{"coinbase", config.TypeCoinbase, sandbox.VenueCoinbase},
}

// Run runs the demo and returns what happened. It fails if any step does
// not behave as expected.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	res := &Result{OrdersByVenu: map[string]int64{}}
	say := func(format string, args ...any) { fmt.Fprintf(o.Out, format+"\n", args...) }

	// 1. The venues: emulators on loopback, over TLS with a fresh CA.
	// The emulators outlive the server so that its shutdown (Betfair logout)
	// still reaches them; sb.Close runs last.
	sb, err := sandbox.Start(context.WithoutCancel(ctx), sandbox.Options{TLS: true})
	if err != nil {
		return nil, fmt.Errorf("demo: start sandbox: %w", err)
	}
	defer sb.Close()
	info := sb.Info()
	say("keystile demo — everything below runs on loopback; nothing leaves this machine.")
	say("")
	say("1. Started venue emulators (TLS, throwaway CA): %s", strings.Join(sortedKeys(info.Venues), ", "))

	// 2. A fresh data directory with a vault.
	dir := o.DataDir
	keep := dir != ""
	if dir == "" {
		dir, err = os.MkdirTemp("", "keystile-demo-")
		if err != nil {
			return nil, fmt.Errorf("demo: %w", err)
		}
		dir = filepath.Join(dir, "data")
	}
	res.DataDir = dir
	if !keep {
		defer os.RemoveAll(filepath.Dir(dir))
	}
	if _, err := app.Init(ctx, app.Env{}, app.InitOptions{DataDir: dir, Source: "file"}); err != nil {
		return nil, fmt.Errorf("demo: init: %w", err)
	}
	caFile := filepath.Join(dir, "sandbox-ca.pem")
	if err := os.WriteFile(caFile, sb.CAPEM(), 0o600); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	cfgPath := filepath.Join(dir, "demo.yaml")
	if err := os.WriteFile(cfgPath, []byte(configYAML(info, caFile)), 0o600); err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("demo: config: %w", err)
	}
	say("2. Initialised a vault in %s (master key: file) and a config with %d venues", dir, len(venueIDs))

	// 3. A real keystile server, logging at debug level to a file in the
	// data dir (swept for secrets at the end) and to Options.Log.
	logFile, err := os.OpenFile(filepath.Join(dir, "keystile.log"), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- our data dir
	if err != nil {
		return nil, fmt.Errorf("demo: %w", err)
	}
	defer logFile.Close()
	red := logging.NewRedactor()
	log := logging.New(io.MultiWriter(logFile, logw), logging.Options{Level: slog.LevelDebug, Format: "json", Redactor: red})
	srv, err := app.NewServer(ctx, app.Env{}, app.ServerOptions{DataDir: dir, Config: cfg, Logger: log, Redactor: red})
	if err != nil {
		return nil, fmt.Errorf("demo: server: %w", err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(ctx) }()
	defer func() {
		cancel()
		<-runErr
	}()
	gw := "http://" + srv.GatewayAddr()
	say("3. keystile serve is running: gateway %s, admin API on %s", gw, filepath.Join(dir, app.SocketFile))

	// 4. Credentials into the vault through the admin API, as
	// `keystile secret set` does.
	client, err := admin.NewClient(filepath.Join(dir, app.SocketFile))
	if err != nil {
		return nil, err
	}
	for _, v := range venueIDs {
		fields := map[string][]byte{}
		for k, val := range info.Venues[v.sandbox].Credentials {
			fields[k] = []byte(val)
		}
		if _, err := client.SetSecret(ctx, "demo-"+v.id, admin.SetSecretRequest{Fields: fields}); err != nil {
			return nil, fmt.Errorf("demo: store %s credential: %w", v.id, err)
		}
	}
	say("4. Stored the venues' credentials in the vault (encrypted; `keystile secret list` shows names only)")

	// 5. One scoped, short-lived test token for the bot.
	var venues []string
	for _, v := range venueIDs {
		venues = append(venues, v.id)
	}
	minted, err := client.CreateToken(ctx, admin.CreateTokenRequest{Name: "demo-bot", Venues: venues, Test: true,
		Scopes: []string{"market.read", "account.read", "order.*", "media.*"}, TTL: 15 * time.Minute, CIDRs: []string{"127.0.0.1/32", "::1/128"}})
	if err != nil {
		return nil, fmt.Errorf("demo: mint token: %w", err)
	}
	tok := minted.Token
	say("5. Minted token %s for the bot (kst_test_…, 15 min, loopback only, no withdrawals)", minted.Info.ID)
	say("")
	say("6. The bot, holding only that token, trades through the gateway:")

	// Every answer the bots get is kept for the leak sweep.
	answers := &recorder{next: http.DefaultTransport}
	hc := &http.Client{Timeout: 30 * time.Second, Transport: answers}
	tw := tabwriter.NewWriter(o.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "   VENUE\tREQUEST\tSTATUS\tTIME")
	for _, r := range script() {
		st, err := call(ctx, hc, gw, tok, r)
		if err != nil {
			return nil, fmt.Errorf("demo: %s %s: %w", r.venue, r.path, err)
		}
		res.Steps = append(res.Steps, st)
		shown, _, _ := strings.Cut(r.path, "?")
		fmt.Fprintf(tw, "   %s\t%s %s\t%d\t%s\n", r.venue, r.method, shown, st.Status, st.Latency.Round(10*time.Microsecond))
		if st.Status >= 300 {
			_ = tw.Flush()
			return res, fmt.Errorf("demo: %s %s answered %d (request id %s)", r.venue, r.path, st.Status, st.RequestID)
		}
	}
	_ = tw.Flush()
	for _, v := range venueIDs {
		res.OrdersByVenu[v.id] = sb.Stats(v.sandbox).Orders
	}
	var counts []string
	for _, v := range venueIDs {
		counts = append(counts, fmt.Sprintf("%s %d", v.id, res.OrdersByVenu[v.id]))
	}
	say("   orders the venues received: %s", strings.Join(counts, ", "))
	say("")

	// 7. A second bot under a policy: limits before signing, and an
	// order never placed twice.
	if err := policyStep(ctx, client, hc, gw, sb, res, say); err != nil {
		return res, err
	}

	// 7. Panic button: revoke, and the very next request is refused.
	if _, err := client.TokenAction(ctx, minted.Info.ID, "revoke"); err != nil {
		return nil, fmt.Errorf("demo: revoke: %w", err)
	}
	st, err := call(ctx, hc, gw, tok, script()[0])
	if err != nil {
		return nil, err
	}
	res.Refused = st
	say("8. Revoked the token (`keystile token revoke %s`); the next request: %d (refused before anything was signed)", minted.Info.ID, st.Status)
	if st.Status != http.StatusUnauthorized {
		return res, fmt.Errorf("demo: revoked token answered %d, want 401", st.Status)
	}

	// 8. Leak sweep: no credential value anywhere in the data dir.
	cancel()
	if err := <-runErr; err != nil {
		return res, fmt.Errorf("demo: server: %w", err)
	}
	runErr <- nil
	var needles []string
	for _, v := range venueIDs {
		for _, val := range info.Venues[v.sandbox].Credentials {
			if len(val) >= 8 {
				needles = append(needles, encodings(val)...)
			}
		}
	}
	needles = append(needles, encodings(tok)...)
	res.FilesChecked, res.Leaks, err = sweep(dir, needles, caFile, cfgPath)
	if err != nil {
		return res, err
	}
	for _, nd := range needles {
		if answers.contains(nd) {
			res.Leaks = append(res.Leaks, "an answer to the bot")
			break
		}
	}
	say("9. Searched every file keystile wrote (%d files: database, audit log, key file, debug log) and every answer the bots got (%d) for the credentials and the token, raw, hex, base64 and URL-encoded: %d found",
		res.FilesChecked, answers.count(), len(res.Leaks))
	if len(res.Leaks) > 0 {
		return res, fmt.Errorf("demo: secret values found in %v", res.Leaks)
	}

	// 10. The audit log verifies, as `keystile audit verify` checks it.
	if res.Audit, err = verifyAudit(context.WithoutCancel(ctx), dir, cfg); err != nil {
		return res, err
	}
	say("10. Verified the audit log (`keystile audit verify`): %d hash-chained records, %d signed checkpoint(s), intact", res.Audit.Records, res.Audit.Checkpoints)
	say("")
	say("Done. Try it yourself: see README.md, \"Quick start\".")
	return res, nil
}

type request struct {
	venue, method, path string
	body                string
}

func script() []request {
	return []request{
		{"stake", "POST", "/graphql", `{"operationName":"UserBalances","query":"query UserBalances { user { id balances { available { amount currency } } } }"}`},
		{"stake", "POST", "/graphql", `{"operationName":"SportBet","query":"mutation SportBet($outcomeIds: [String!]!, $amount: Float!, $currency: CurrencyEnum!, $odds: Float!, $identifier: String!) { sportBet(outcomeIds: $outcomeIds, amount: $amount, currency: $currency, odds: $odds, identifier: $identifier) { id status } }","variables":{"outcomeIds":["demo-outcome-1"],"amount":0.0001,"currency":"btc","odds":2.5,"identifier":"demo-1"}}`},
		{"dmarket", "GET", "/account/v1/balance", ""},
		{"dmarket", "POST", "/marketplace-api/v1/user-targets/create", `{"GameID":"a8db","Targets":[{"Amount":"1","Price":{"Currency":"USD","Amount":1.5},"Title":"AK-47 | Redline (Field-Tested)"}]}`},
		{"betfair", "POST", "/exchange/account/rest/v1.0/getAccountFunds/", `{}`},
		{"betfair", "POST", "/exchange/betting/rest/v1.0/placeOrders/", `{"marketId":"1.234567","instructions":[{"selectionId":47972,"handicap":0,"side":"BACK","orderType":"LIMIT","limitOrder":{"size":2,"price":2.1,"persistenceType":"LAPSE"}}],"customerRef":"demo-1"}`},
		{"stapi", "GET", "/v1/account", ""},
		{"stapi", "POST", "/v1/videos", `{"title":"keystile demo","client_ref":"demo-1"}`},
		{"betpro", "GET", "/api/v1/balance", ""},
		{"betpro", "POST", "/api/v1/orders", `{"market_id":"M1","selection_id":"S1","side":"back","price":2.0,"size":5,"client_order_id":"demo-1"}`},
		{"binance", "GET", "/api/v3/account", ""},
		{"binance", "POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=30000&newClientOrderId=demo-1", ""},
		{"kraken", "POST", "/0/private/Balance", "x=1"},
		{"kraken", "POST", "/0/private/AddOrder", "pair=XBTUSD&type=buy&ordertype=limit&price=30000&volume=0.01&cl_ord_id=demo-1"},
		{"okx", "GET", "/api/v5/account/balance", ""},
		{"okx", "POST", "/api/v5/trade/order", `{"instId":"BTC-USDT","tdMode":"cash","clOrdId":"demo1","side":"buy","ordType":"limit","px":"30000","sz":"0.01"}`},
		{"bybit", "GET", "/v5/account/wallet-balance?accountType=UNIFIED", ""},
		{"bybit", "POST", "/v5/order/create", `{"category":"spot","symbol":"BTCUSDT","side":"Buy","orderType":"Limit","qty":"0.01","price":"30000","orderLinkId":"demo-1"}`},
		{"coinbase", "GET", "/api/v3/brokerage/accounts", ""},
		{"coinbase", "POST", "/api/v3/brokerage/orders", `{"client_order_id":"demo-1","product_id":"BTC-USD","side":"BUY","order_configuration":{"limit_limit_gtc":{"base_size":"0.01","limit_price":"30000","post_only":false}}}`},
	}
}

func call(ctx context.Context, hc *http.Client, gw, tok string, r request) (Step, error) {
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(ctx, r.method, gw+"/"+r.venue+r.path, body)
	if err != nil {
		return Step{}, err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if r.body != "" {
		ct := "application/json"
		if !strings.HasPrefix(r.body, "{") {
			ct = "application/x-www-form-urlencoded"
		}
		req.Header.Set("Content-Type", ct)
	}
	start := time.Now()
	resp, err := hc.Do(req)
	if err != nil {
		return Step{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	st := Step{Venue: r.venue, Method: r.method, Path: r.path, Status: resp.StatusCode, Latency: time.Since(start), RequestID: resp.Header.Get("Keystile-Request-Id")}
	if resp.StatusCode < 300 && r.venue == "kraken" && strings.Contains(string(b), `"error":["E`) {
		return st, fmt.Errorf("venue error: %.200s", b)
	}
	if resp.StatusCode < 300 && strings.Contains(string(b), `"errors"`) && r.venue == "stake" {
		var g struct {
			Errors []struct{ Message string } `json:"errors"`
		}
		if json.Unmarshal(b, &g) == nil && len(g.Errors) > 0 {
			return st, fmt.Errorf("venue error: %s", g.Errors[0].Message)
		}
	}
	return st, nil
}

// sweep reads every file under dir (except the listed throwaway inputs,
// given as paths) and reports which contain a needle. It walks through an
// os.Root so symlinks cannot lead it outside dir.
func sweep(dir string, needles []string, skip ...string) (int, []string, error) {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return 0, nil, fmt.Errorf("demo: leak sweep: %w", err)
	}
	defer root.Close()
	skipped := map[string]bool{}
	for _, s := range skip {
		if rel, err := filepath.Rel(dir, s); err == nil {
			skipped[rel] = true
		}
	}
	n := 0
	var leaks []string
	err = fs.WalkDir(root.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || skipped[p] || !d.Type().IsRegular() {
			return err
		}
		b, err := fs.ReadFile(root.FS(), p)
		if err != nil {
			return err
		}
		n++
		for _, nd := range needles {
			if bytes.Contains(b, []byte(nd)) {
				leaks = append(leaks, p)
				break
			}
		}
		return nil
	})
	if err != nil {
		return n, leaks, errors.Join(errors.New("demo: leak sweep"), err)
	}
	return n, leaks, nil
}

func sortedKeys(m map[string]sandbox.VenueInfo) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// encodings are the forms a secret value could leak in: raw, hex, base64
// (standard and URL, padded or not) and URL-escaped.
func encodings(v string) []string {
	b := []byte(v)
	forms := []string{v, hex.EncodeToString(b), strings.ToUpper(hex.EncodeToString(b)),
		base64.StdEncoding.EncodeToString(b), base64.RawStdEncoding.EncodeToString(b),
		base64.URLEncoding.EncodeToString(b), base64.RawURLEncoding.EncodeToString(b),
		url.QueryEscape(v), url.PathEscape(v)}
	seen := map[string]bool{}
	var out []string
	for _, f := range forms {
		if !seen[f] {
			seen[f] = true
			out = append(out, f)
		}
	}
	return out
}

// recorder is an http.RoundTripper that keeps a copy of every answer
// (status line, headers and body) for the leak sweep.
type recorder struct {
	next http.RoundTripper
	mu   sync.Mutex
	buf  bytes.Buffer
	n    int
}

// RoundTrip implements http.RoundTripper.
func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := r.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	_ = resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	r.mu.Lock()
	defer r.mu.Unlock()
	r.n++
	fmt.Fprintf(&r.buf, "%s\n", resp.Status)
	_ = resp.Header.Write(&r.buf)
	r.buf.Write(body)
	r.buf.WriteByte('\n')
	return resp, nil
}

func (r *recorder) contains(s string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return bytes.Contains(r.buf.Bytes(), []byte(s))
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}
