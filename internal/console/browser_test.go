package console_test

import (
	"bytes"
	"context"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/keystile/keystile/internal/admin"
)

// screenshotsEnv, when "1", makes the browser test write its screenshot of
// every page to docs/console/; otherwise they go to the test's temporary
// directory (so that runs leave the tree clean). Either way each one is
// taken and checked to be a PNG of a rendered page.
const screenshotsEnv = "KEYSTILE_CONSOLE_SCREENSHOTS"

// browser starts one headless Debian chromium for the test (the package
// has one browser test, so one browser). Without chromium the test is
// skipped, except in CI (CI=true), where that is a failure.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("chromium is not installed: CI installs it (apt-get install -y chromium); the browser tests cannot run")
		}
		t.Skip("chromium is not installed (apt-get install -y chromium): skipping the browser tests")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1360, 900),
		chromedp.Flag("headless", true), chromedp.Flag("no-sandbox", true), chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true), chromedp.Flag("no-first-run", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelC(); cancelA() })
	// The first Run starts the browser; it must not carry a timeout.
	if _, err := chromedp.Run(ctx, chromedp.Title()); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return ctx
}

// page is one browser step with a bound.
func step(t *testing.T, ctx context.Context, what string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, actions...); err != nil {
		html, _ := chromedp.Run(ctx, chromedp.OuterHTML(chromedp.CSS("main")))
		t.Fatalf("%s: %v\npage: %s", what, err, tail(html, 3000))
	}
}

func get[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		t.Fatalf("browser: %v", err)
	}
	return v
}

// TestConsoleBrowser drives the console in a real browser against a real
// server and gateway: log in with TOTP, create a token and see it once,
// freeze it and see the gateway refuse it, explain an order, trip the kill
// switch and see every token refused, clear it, search the audit log for
// the actions and verify the chain; a CSRF-less POST and a request without
// a session are refused; and no page, fragment or asset holds a canary
// credential, the admin token or a minted token.
func TestConsoleBrowser(t *testing.T) {
	ctx := browser(t)
	r := startRig(t, rigOptions{})
	shotDir := t.TempDir()
	if os.Getenv(screenshotsEnv) == "1" {
		shotDir = filepath.Join("..", "..", "docs", "console")
	}
	var seen []string // every page's HTML, for the sweep
	snap := func(name string) {
		t.Helper()
		html := get(t, ctx, chromedp.OuterHTML(chromedp.CSS("html")))
		seen = append(seen, name+"\n"+html)
		shot := get(t, ctx, chromedp.FullScreenshot(100))
		cfg, err := png.DecodeConfig(bytes.NewReader(shot))
		if err != nil || cfg.Width < 200 || cfg.Height < 100 {
			t.Fatalf("screenshot of %s: %v, %dx%d", name, err, cfg.Width, cfg.Height)
		}
		if err := os.WriteFile(filepath.Join(shotDir, name+".png"), shot, 0o600); err != nil {
			t.Fatalf("screenshot: %v", err)
		}
	}

	// Without a session every page sends the browser to the log-in page.
	step(t, ctx, "anonymous", chromedp.Navigate(r.url+"/tokens"), chromedp.WaitVisible(chromedp.CSS("#login")))
	if loc := get(t, ctx, chromedp.Location()); !strings.HasSuffix(loc, "/login") {
		t.Fatalf("anonymous /tokens ended at %s", loc)
	}
	snap("login")
	step(t, ctx, "log in",
		chromedp.SendKeys(chromedp.CSS("#token"), r.adminTok),
		chromedp.SendKeys(chromedp.CSS("#totp"), r.code()),
		chromedp.Click(chromedp.CSS("#login")),
		chromedp.WaitVisible(chromedp.CSS("#live")))

	// A bot that exists before: it will be stopped by the kill switch.
	other, err := r.admin.CreateToken(t.Context(), admin.CreateTokenRequest{Name: "other-bot", Venues: []string{"binance"}, Test: true,
		Scopes: []string{"market.read", "account.read"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if st := r.bot(other.Token); st != 200 {
		t.Fatalf("other bot before: %d", st)
	}

	// Create a token: it is shown once.
	step(t, ctx, "create a token",
		chromedp.Navigate(r.url+"/tokens"), chromedp.Click(chromedp.CSS("#create-open")), chromedp.WaitVisible(chromedp.CSS("#create-token")),
		chromedp.SendKeys(chromedp.CSS("#name"), "grid-bot"),
		chromedp.Click(chromedp.CSS(`input[name=venues][value=binance]`)),
		chromedp.SetValue(chromedp.CSS("#policy"), "scalper"),
		chromedp.Click(chromedp.CSS("#test")),
		chromedp.Click(chromedp.CSS("#create")),
		chromedp.WaitVisible(chromedp.CSS("#minted-token")))
	minted := get(t, ctx, chromedp.Value(chromedp.CSS("#minted-token")))
	if !strings.HasPrefix(minted, "kst_test_") {
		t.Fatalf("minted %q", minted)
	}
	id := regexp.MustCompile(`tok_[a-z0-9]+`).FindString(get(t, ctx, chromedp.Text(chromedp.CSS("#minted h2"))))
	secrets := []string{canaryKey, canarySecret, r.adminTok, digestHex(r.adminTok), minted, other.Token, string(r.totp.Reveal())}
	step(t, ctx, "reload the tokens page", chromedp.Navigate(r.url+"/tokens"), chromedp.WaitVisible(chromedp.CSS("#row-"+id)))
	if html := get(t, ctx, chromedp.OuterHTML(chromedp.CSS("html"))); strings.Contains(html, minted) {
		t.Fatal("the minted token is shown again")
	}

	// The bot uses it: one order under the policy, one read.
	if st := r.bot(minted); st != 200 {
		t.Fatalf("bot with the new token: %d", st)
	}
	order, _ := http.NewRequest("POST", r.gw+"/binance/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.002&price=30000", nil)
	order.Header.Set("Keystile-Token", minted)
	if resp, err := http.DefaultClient.Do(order); err != nil || resp.StatusCode != 200 {
		t.Fatalf("order: %v %v", resp, err)
	} else {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	snap("tokens")

	// Freeze it in the browser: the gateway refuses it.
	step(t, ctx, "freeze", chromedp.Click(chromedp.CSS("#freeze-"+id)), chromedp.WaitVisible(chromedp.CSS("#unfreeze-"+id)))
	if st := r.bot(minted); st != http.StatusForbidden {
		t.Fatalf("frozen token: gateway answered %d", st)
	}

	// The overview updates by itself (no reload): a bot that starts after
	// the page was loaded appears in it.
	step(t, ctx, "overview", chromedp.Navigate(r.url+"/"), chromedp.WaitVisible(chromedp.CSS("#live")))
	get(t, ctx, chromedp.Evaluate[int](`window.keystileMarker = 42`))
	late, err := r.admin.CreateToken(t.Context(), admin.CreateTokenRequest{Name: "late-bot", Venues: []string{"binance"}, Test: true,
		Scopes: []string{"market.read", "account.read"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, late.Token)
	for range 5 {
		r.bot(late.Token)
	}
	if !get(t, ctx, chromedp.Poll[bool](`document.querySelector("#live").innerText.includes("`+late.Info.ID+`")`, chromedp.WithPollingTimeout(20*time.Second))) {
		t.Fatal("the overview did not show the new bot's requests")
	}
	if m := get(t, ctx, chromedp.Evaluate[int](`window.keystileMarker || 0`)); m != 42 {
		t.Fatal("the overview was reloaded instead of updated")
	}
	if txt := get(t, ctx, chromedp.Text(chromedp.CSS("#live"))); !strings.Contains(txt, "binance") {
		t.Fatalf("no venue row: %q", txt)
	}
	live := get(t, ctx, chromedp.Evaluate[string](`fetch("/live/overview", {headers: {"Keystile-Live": "1"}}).then(r => r.text())`, chromedp.EvalAwaitPromise))
	seen = append(seen, "live fragment\n"+live)
	snap("overview")

	// Pages that only read.
	for _, p := range []struct{ name, path, sel string }{
		{"credentials", "/credentials", "#credentials"},
		{"budgets", "/budgets", "#budgets"},
		{"alerts", "/alerts", "#alerts"},
	} {
		step(t, ctx, p.name, chromedp.Navigate(r.url+p.path), chromedp.WaitVisible(chromedp.CSS(p.sel)))
		snap(p.name)
	}
	step(t, ctx, "budgets again", chromedp.Navigate(r.url+"/budgets"), chromedp.WaitVisible(chromedp.CSS("#budgets svg.bar")))
	if txt := get(t, ctx, chromedp.Text(chromedp.CSS("#budgets"))); !strings.Contains(txt, "60 / 1000 USDT") {
		t.Fatalf("budget use: %q", txt)
	}

	// Explain an order that the policy refuses, in the browser.
	step(t, ctx, "explain",
		chromedp.Navigate(r.url+"/policies"), chromedp.WaitVisible(chromedp.CSS("#explain")),
		chromedp.SetValue(chromedp.CSS("#explain-token"), id),
		chromedp.SetValue(chromedp.CSS("#explain-method"), "POST"),
		chromedp.SendKeys(chromedp.CSS("#explain-path"), "/binance/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=30000"),
		chromedp.Click(chromedp.CSS("#explain-go")),
		chromedp.WaitVisible(chromedp.CSS("#explain-result")))
	if res := get(t, ctx, chromedp.TextContent(chromedp.CSS("#explain-result"))); !strings.Contains(res, "policy.scalper.max_notional") || !strings.Contains(res, "deny") || !strings.Contains(res, "300 USDT") {
		t.Fatalf("explain: %q", res)
	}
	snap("policies")

	// Trip the kill switch: confirmation and a code; every token refused.
	step(t, ctx, "trip",
		chromedp.Navigate(r.url+"/killswitch"), chromedp.WaitVisible(chromedp.CSS("#kill-trip")),
		chromedp.SendKeys(chromedp.CSS("#trip-reason"), "browser test"),
		chromedp.Click(chromedp.CSS("#trip")),
		chromedp.WaitVisible(chromedp.CSS(".msg.error")))
	if st := r.bot(other.Token); st != 200 {
		t.Fatalf("an unconfirmed trip stopped a bot: %d", st)
	}
	step(t, ctx, "trip confirmed",
		chromedp.Click(chromedp.CSS("#trip-confirm")),
		chromedp.SendKeys(chromedp.CSS("#trip-word"), "STOP"),
		chromedp.SendKeys(chromedp.CSS("input[name=totp]"), r.code()),
		chromedp.Click(chromedp.CSS("#trip")),
		chromedp.WaitVisible(chromedp.CSS("#kill-clear")))
	for _, tok := range []string{other.Token, minted} {
		if st := r.bot(tok); st != http.StatusForbidden {
			t.Fatalf("a bot still runs with the kill switch tripped: %d", st)
		}
	}
	snap("killswitch")
	step(t, ctx, "clear",
		chromedp.Click(chromedp.CSS("#clear-confirm")),
		chromedp.SendKeys(chromedp.CSS("#clear-word"), "RESUME"),
		chromedp.SendKeys(chromedp.CSS("input[name=totp]"), r.code()),
		chromedp.Click(chromedp.CSS("#clear")),
		chromedp.WaitVisible(chromedp.CSS("#kill-trip")))
	if st := r.bot(other.Token); st != 200 {
		t.Fatalf("after clearing: %d", st)
	}
	if st := r.bot(minted); st != http.StatusForbidden {
		t.Fatalf("clearing lifted a freeze the switch did not make: %d", st)
	}

	// The audit log has the freeze, found by token id; then the trip.
	step(t, ctx, "audit search",
		chromedp.Navigate(r.url+"/audit"), chromedp.WaitVisible(chromedp.CSS("#audit-search")),
		chromedp.SendKeys(chromedp.CSS("#q-token"), id),
		chromedp.SendKeys(chromedp.CSS("#q-op"), "admin.*"),
		chromedp.Click(chromedp.CSS("#search")),
		chromedp.WaitVisible(chromedp.CSS("#audit-results")))
	res := get(t, ctx, chromedp.Text(chromedp.CSS("#audit-results")))
	if !strings.Contains(res, "admin.token.freeze") || !strings.Contains(res, "admin.token.create") {
		t.Fatalf("audit search by token: %q", res)
	}
	snap("audit")
	step(t, ctx, "record", chromedp.Click(chromedp.CSS("#audit-results tbody a")), chromedp.WaitVisible(chromedp.CSS("#record")))
	if rec := get(t, ctx, chromedp.Text(chromedp.CSS("#record"))); !strings.Contains(rec, "principal console:ops") {
		t.Fatalf("record detail lacks the session's identity: %q", rec)
	}
	snap("record")
	step(t, ctx, "audit: the trip",
		chromedp.Navigate(r.url+"/audit?op=admin.panic.*"), chromedp.WaitVisible(chromedp.CSS("#audit-results")))
	if res := get(t, ctx, chromedp.Text(chromedp.CSS("#audit-results"))); !strings.Contains(res, "admin.panic.trip") || !strings.Contains(res, "admin.panic.clear") {
		t.Fatalf("kill switch not audited: %q", res)
	}
	step(t, ctx, "verify", chromedp.Navigate(r.url+"/audit"), chromedp.Click(chromedp.CSS("#verify-go")), chromedp.WaitVisible(chromedp.CSS("#verify-result")))
	if v := get(t, ctx, chromedp.Text(chromedp.CSS("#verify-result"))); !strings.HasPrefix(v, "OK:") {
		t.Fatalf("verification: %q", v)
	}

	// From the page itself: a POST without the CSRF token, and one without
	// the session cookie, are refused.
	for _, tc := range []struct {
		name, js string
		want     int
	}{
		{"no CSRF token", `fetch("/tokens/` + other.Info.ID + `/freeze", {method: "POST", body: new URLSearchParams({})}).then(r => r.status)`, 403},
		{"no session", `fetch("/tokens/` + other.Info.ID + `/freeze", {method: "POST", credentials: "omit", body: new URLSearchParams({csrf: document.querySelector("input[name=csrf]").value})}).then(r => r.status)`, 401},
	} {
		if st := get(t, ctx, chromedp.Evaluate[int](tc.js, chromedp.EvalAwaitPromise)); st != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, st, tc.want)
		}
	}
	if st := r.bot(other.Token); st != 200 {
		t.Fatalf("a refused POST froze the token: %d", st)
	}

	// Sweep: every page, fragment, script and stylesheet.
	for _, asset := range []string{"/static/console.js", "/static/console.css"} {
		seen = append(seen, asset+"\n"+get(t, ctx, chromedp.Evaluate[string](`fetch("`+asset+`").then(r => r.text())`, chromedp.EvalAwaitPromise)))
	}
	for _, page := range seen {
		name, _, _ := strings.Cut(page, "\n")
		for i, s := range secrets {
			if s != "" && strings.Contains(page, s) {
				t.Errorf("page %s holds secret #%d", name, i)
			}
		}
		if m := regexp.MustCompile(`kst_(live|test)_[0-9A-Za-z]{20,}`).FindString(page); m != "" {
			t.Errorf("page %s holds a token %s", name, m[:12])
		}
	}
	if l := r.log.String(); strings.Contains(l, minted) || strings.Contains(l, canarySecret) || strings.Contains(l, r.adminTok) {
		t.Error("the server log holds a secret")
	}

	step(t, ctx, "log out", chromedp.Navigate(r.url+"/"), chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login")))
	step(t, ctx, "after log-out", chromedp.Navigate(r.url+"/tokens"), chromedp.WaitVisible(chromedp.CSS("#login")))
}
