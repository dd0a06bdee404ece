package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/sandbox"
)

// TestE2EEveryVenue drives every seed venue through a real `keystile serve`
// to the TLS sandbox: reads and one order place succeed, the venue counts
// exactly one order per order sent and never sees a badly authenticated
// request.
func TestE2EEveryVenue(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	tok := h.botToken(t).Token
	for _, v := range e2eVenues() {
		t.Run(v.id, func(t *testing.T) {
			before := h.sb.Stats(v.id)
			for range 2 {
				wantOK(t, v.id, v.read, h.mustCall(t, tok, v.id, v.read))
			}
			if got := h.sb.Stats(v.id).Orders; got != before.Orders {
				t.Fatalf("reads placed orders: %d -> %d", before.Orders, got)
			}
			for i := range 2 {
				wantOK(t, v.id, v.order, h.mustCall(t, tok, v.id, v.order))
				if got, want := h.sb.Stats(v.id).Orders, before.Orders+int64(i+1); got != want {
					t.Fatalf("after order %d: sandbox counted %d orders, want %d", i+1, got, want)
				}
			}
			after := h.sb.Stats(v.id)
			if after.AuthFailures != 0 {
				t.Errorf("sandbox auth failures = %d, want 0", after.AuthFailures)
			}
			if after.Requests <= before.Requests {
				t.Errorf("sandbox saw no requests")
			}
		})
	}
	if v := sandbox.VenueBetfair; h.sb.Stats(v).Logins != 1 {
		t.Errorf("betfair logins = %d, want 1", h.sb.Stats(v).Logins)
	}
}

// TestE2EBetfairSingleLogin: 200 concurrent requests on a cold gateway
// share one login; after the venue expires every session, 50 concurrent
// requests all succeed on exactly one new login.
func TestE2EBetfairSingleLogin(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	tok := h.botToken(t).Token
	v := e2eVenues()[2]
	if v.id != sandbox.VenueBetfair {
		t.Fatalf("venue table changed: %s", v.id)
	}
	burst := func(n int) {
		t.Helper()
		start := time.Now()
		defer func() { t.Logf("%d concurrent requests took %v", n, time.Since(start)) }()
		errs := concurrently(n, func(int) error {
			resp, err := h.call(tok, v.id, v.read)
			if err != nil {
				return err
			}
			if resp.status != http.StatusOK {
				return fmt.Errorf("status %d: %.200s", resp.status, resp.body)
			}
			return nil
		})
		if len(errs) > 0 {
			t.Fatalf("%d of %d requests failed, first: %v", len(errs), n, errs[0])
		}
	}
	if got := h.sb.Stats(v.id).Logins; got != 0 {
		t.Fatalf("gateway not cold: %d logins before the first request", got)
	}
	burst(200)
	if st := h.sb.Stats(v.id); st.Logins != 1 || st.AuthFailures != 0 {
		t.Fatalf("200 concurrent requests on a cold gateway: %d logins and %d auth failures, want 1 and 0", st.Logins, st.AuthFailures)
	}
	if err := h.sb.InjectFault(v.id, sandbox.Fault{Kind: sandbox.FaultExpireSessions}); err != nil {
		t.Fatal(err)
	}
	burst(50)
	st := h.sb.Stats(v.id)
	if st.Logins != 2 {
		t.Fatalf("after expire_sessions: %d logins in all, want 2", st.Logins)
	}
	if got := st.Operations["getAccountFunds"]; got < 250 {
		t.Errorf("sandbox served %d getAccountFunds, want >= 250", got)
	}
}

// TestE2ESTAPIOAuthRefresh: when the venue drops every OAuth token, the
// next request gets a new access token once and succeeds.
func TestE2ESTAPIOAuthRefresh(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	tok := h.botToken(t).Token
	v := e2eVenues()[3]
	if v.id != sandbox.VenueSTAPI {
		t.Fatalf("venue table changed: %s", v.id)
	}
	wantOK(t, v.id, v.read, h.mustCall(t, tok, v.id, v.read))
	wantOK(t, v.id, v.read, h.mustCall(t, tok, v.id, v.read))
	if got := h.sb.Stats(v.id).Logins; got != 1 {
		t.Fatalf("two reads: %d token requests, want 1", got)
	}
	if err := h.sb.InjectFault(v.id, sandbox.Fault{Kind: sandbox.FaultExpireSessions}); err != nil {
		t.Fatal(err)
	}
	before := h.sb.Stats(v.id)
	// The venue answers 401 to the stale bearer token; keystile must get a
	// new access token (the sandbox dropped the refresh token too, so a
	// refresh-token grant is refused and only client credentials work)
	// and replay the read once.
	wantOK(t, v.id, v.read, h.mustCall(t, tok, v.id, v.read))
	after := h.sb.Stats(v.id)
	if n := after.Operations["oauth.token"] - before.Operations["oauth.token"]; n < 1 || n > 2 {
		t.Errorf("after expire_sessions: %d token requests, want 1 (or a refused refresh then 1)", n)
	}
	wantOK(t, v.id, v.read, h.mustCall(t, tok, v.id, v.read))
	if got := h.sb.Stats(v.id).Logins; got != after.Logins {
		t.Errorf("the request after the refresh asked for another token (%d -> %d)", after.Logins, got)
	}
}

// sessionTokenRE matches the STAPI emulator's access and refresh tokens.
var sessionTokenRE = regexp.MustCompile(`st[ar]_[0-9a-f]{48}`)

// secretEchoHeaders are, per venue, the echoed request headers that carry
// a credential or a session token: the bot must see them REDACTED.
var secretEchoHeaders = map[string][]string{
	sandbox.VenueStake:   {"X-Access-Token"},
	sandbox.VenueDMarket: {"X-Api-Key", "X-Request-Sign"},
	sandbox.VenueBetfair: {"X-Application", "X-Authentication"},
	sandbox.VenueSTAPI:   {"Authorization"},
	sandbox.VenueGeneric: {"X-Api-Key", "X-Signature"},
}

// TestE2ECanaryNeverLeaks gives the sandbox canary credentials and makes it
// echo every credential header it receives: the canaries (raw, hex,
// base64), the session tokens the venues issued and the bot's token never
// reach the bot, the server's debug log or any file of the data dir.
func TestE2ECanaryNeverLeaks(t *testing.T) {
	creds := canaryCredentials()
	h := startHarness(t, harnessOptions{Credentials: creds})
	for venueID, fields := range creds {
		for k, v := range fields {
			if got := h.info.Venues[venueID].Credentials[k]; got != v {
				t.Fatalf("sandbox %s.%s is not the canary", venueID, k)
			}
		}
	}
	needles := canaryNeedles(creds)
	minted := h.botToken(t)
	tok := minted.Token

	var seen strings.Builder // everything the bot received
	for _, v := range e2eVenues() {
		t.Run(v.id, func(t *testing.T) {
			if err := h.sb.InjectFault(v.id, sandbox.Fault{Kind: sandbox.FaultEchoCredentials, Count: -1}); err != nil {
				t.Fatal(err)
			}
			for _, r := range []botRequest{v.read, v.order, v.read} {
				resp := h.mustCall(t, tok, v.id, r)
				wantOK(t, v.id, r, resp)
				raw := resp.raw()
				seen.WriteString(raw)
				if f := findNeedles(raw, needles); len(f) > 0 {
					t.Errorf("%s %s: canary reached the bot: %q", r.method, r.path, f)
				}
				if m := sessionTokenRE.FindString(raw); m != "" {
					t.Errorf("%s %s: a venue session token reached the bot", r.method, r.path)
				}
				if strings.Contains(raw, tok) {
					t.Errorf("%s %s: the bot's own token was reflected", r.method, r.path)
				}
				// The echo happened (else this test proves nothing) and
				// every secret header in it is redacted, in the
				// headers and in the body's sandbox_echo member.
				var body struct {
					Echo map[string]string `json:"sandbox_echo"`
				}
				if err := json.Unmarshal(resp.body, &body); err != nil || body.Echo == nil {
					t.Fatalf("%s %s: no sandbox_echo in the answer (%v): %.200s", r.method, r.path, err, resp.body)
				}
				for _, name := range secretEchoHeaders[v.id] {
					got := resp.header.Values("X-Sandbox-Echo-" + name)
					if len(got) != 1 || got[0] != "REDACTED" {
						// The value may be a secret: never print it.
						t.Errorf("%s %s: echoed header %s is not [REDACTED] (%d values)", r.method, r.path, name, len(got))
					}
					var inBody string
					var found bool
					for k, val := range body.Echo {
						if strings.EqualFold(k, name) {
							inBody, found = val, true
						}
					}
					if !found || inBody != "REDACTED" {
						t.Errorf("%s %s: echoed body member %s is not REDACTED (present %v)", r.method, r.path, name, found)
					}
				}
			}
			if st := h.sb.Stats(v.id); st.AuthFailures != 0 || st.Orders != 1 {
				t.Errorf("sandbox stats: %d auth failures, %d orders; want 0 and 1", st.AuthFailures, st.Orders)
			}
		})
	}

	if err := h.stop(); err != nil {
		t.Fatalf("server run: %v", err)
	}
	logs := h.log.String()
	if !strings.Contains(logs, `"level":"DEBUG"`) || !strings.Contains(logs, "gateway: request") {
		t.Fatalf("the server log holds no debug lines or request lines; the log check would prove nothing")
	}
	if f := findNeedles(logs, needles); len(f) > 0 {
		t.Errorf("canary in the server log: %q", f)
	}
	if sessionTokenRE.MatchString(logs) {
		t.Errorf("a venue session token is in the server log")
	}
	if strings.Contains(logs, tok) {
		t.Errorf("the bot's token is in the server log")
	}
	n, leaks := sweepDataDir(t, h.dataDir, append(needles, needle{"bot token", tok}))
	if n < 2 {
		t.Fatalf("swept only %d files of the data dir", n)
	}
	if len(leaks) > 0 {
		t.Errorf("secrets in the data dir: %q", leaks)
	}
	if files := sweepDataDirRE(t, h.dataDir, sessionTokenRE); len(files) > 0 {
		t.Errorf("a venue session token is in %q", files)
	}
	t.Logf("checked %d bytes of answers, %d bytes of log, %d files", seen.Len(), len(logs), n)
}

// TestE2EFaults injects venue faults end to end.
func TestE2EFaults(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	tok := h.botToken(t).Token
	byID := map[string]e2eVenue{}
	for _, v := range e2eVenues() {
		byID[v.id] = v
	}

	// A write whose bytes reached the venue, which then dropped the
	// connection, is never re-sent: the bot is told the outcome is unknown.
	for _, id := range []string{sandbox.VenueGeneric, sandbox.VenueDMarket, sandbox.VenueBetfair} {
		t.Run("reset_after_read order/"+id, func(t *testing.T) {
			v := byID[id]
			// Warm up (Betfair logs in), so only the order is counted.
			wantOK(t, id, v.read, h.mustCall(t, tok, id, v.read))
			before := h.sb.Stats(id)
			if err := h.sb.InjectFault(id, sandbox.Fault{Kind: sandbox.FaultResetAfterRead, PathPrefix: v.order.path}); err != nil {
				t.Fatal(err)
			}
			resp := h.mustCall(t, tok, id, v.order)
			if resp.status != http.StatusGatewayTimeout || resp.errorCode() != "outcome_unknown" {
				t.Fatalf("status %d code %q, want 504 outcome_unknown: %.300s", resp.status, resp.errorCode(), resp.body)
			}
			after := h.sb.Stats(id)
			if got := after.Orders - before.Orders; got != 1 {
				t.Errorf("sandbox counted %d orders, want exactly 1", got)
			}
			if got := after.Requests - before.Requests; got != 1 {
				t.Errorf("the order reached the venue %d times, want 1 (never re-sent)", got)
			}
			// The next order goes through normally.
			wantOK(t, id, v.order, h.mustCall(t, tok, id, v.order))
			if got := h.sb.Stats(id).Orders - before.Orders; got != 2 {
				t.Errorf("after a second order: %d orders, want 2", got)
			}
		})
	}

	t.Run("503 on a read is retried", func(t *testing.T) {
		v := byID[sandbox.VenueGeneric]
		before := h.sb.Stats(v.id)
		if err := h.sb.InjectFault(v.id, sandbox.Fault{Kind: sandbox.FaultStatus, Status: http.StatusServiceUnavailable, PathPrefix: v.read.path}); err != nil {
			t.Fatal(err)
		}
		wantOK(t, v.id, v.read, h.mustCall(t, tok, v.id, v.read))
		after := h.sb.Stats(v.id)
		if got := after.FaultsInjected - before.FaultsInjected; got != 1 {
			t.Errorf("faults injected: %d, want 1", got)
		}
		if got := after.Requests - before.Requests; got != 2 {
			t.Errorf("venue saw %d requests, want 2 (the 503 and the retry)", got)
		}
	})

	t.Run("429 Retry-After on a read is honoured", func(t *testing.T) {
		v := byID[sandbox.VenueDMarket]
		before := h.sb.Stats(v.id)
		if err := h.sb.InjectFault(v.id, sandbox.Fault{Kind: sandbox.FaultRateLimit, RetryAfter: 1, PathPrefix: v.read.path}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		resp := h.mustCall(t, tok, v.id, v.read)
		elapsed := time.Since(start)
		wantOK(t, v.id, v.read, resp)
		if elapsed < time.Second {
			t.Errorf("answered after %v, want >= 1s (Retry-After: 1)", elapsed)
		}
		after := h.sb.Stats(v.id)
		if got := after.Requests - before.Requests; got != 2 {
			t.Errorf("venue saw %d requests, want 2", got)
		}
		if after.AuthFailures != 0 {
			t.Errorf("auth failures: %d", after.AuthFailures)
		}
	})
}

// TestE2ETokenLifecycle drives revoke, rotate with grace, freeze and
// unfreeze through the admin API and checks the very next bot request.
func TestE2ETokenLifecycle(t *testing.T) {
	h := startHarness(t, harnessOptions{})
	ctx := context.Background()
	v := e2eVenues()[4] // generic: no session, cheapest
	okCall := func(t *testing.T, tok, what string) {
		t.Helper()
		resp := h.mustCall(t, tok, v.id, v.read)
		if resp.status != http.StatusOK {
			t.Fatalf("%s: status %d, want 200: %.200s", what, resp.status, resp.body)
		}
	}
	// refused checks status and that the venue saw nothing.
	refused := func(t *testing.T, tok, what string, status int) {
		t.Helper()
		before := h.sb.Stats(v.id).Requests
		resp := h.mustCall(t, tok, v.id, v.read)
		if resp.status != status {
			t.Fatalf("%s: status %d, want %d: %.200s", what, resp.status, status, resp.body)
		}
		if got := h.sb.Stats(v.id).Requests; got != before {
			t.Errorf("%s: a refused request reached the venue", what)
		}
	}

	t.Run("revoke", func(t *testing.T) {
		m := h.botToken(t)
		okCall(t, m.Token, "before revoke")
		if _, err := h.admin.TokenAction(ctx, m.Info.ID, "revoke"); err != nil {
			t.Fatal(err)
		}
		refused(t, m.Token, "right after revoke", http.StatusUnauthorized)
	})

	t.Run("rotate with grace", func(t *testing.T) {
		m := h.botToken(t)
		okCall(t, m.Token, "before rotate")
		const grace = 1500 * time.Millisecond
		succ, err := h.admin.RotateToken(ctx, m.Info.ID, grace)
		if err != nil {
			t.Fatal(err)
		}
		if succ.Token == m.Token || succ.Info.ID == m.Info.ID {
			t.Fatal("rotate returned the same token")
		}
		okCall(t, m.Token, "old token during grace")
		okCall(t, succ.Token, "new token during grace")
		info, err := h.admin.ShowToken(ctx, m.Info.ID)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(info.GraceUntil) + 100*time.Millisecond)
		refused(t, m.Token, "old token after grace", http.StatusUnauthorized)
		okCall(t, succ.Token, "new token after grace")
	})

	t.Run("freeze and unfreeze", func(t *testing.T) {
		m := h.botToken(t)
		okCall(t, m.Token, "before freeze")
		if _, err := h.admin.TokenAction(ctx, m.Info.ID, "freeze"); err != nil {
			t.Fatal(err)
		}
		refused(t, m.Token, "frozen", http.StatusForbidden)
		if _, err := h.admin.TokenAction(ctx, m.Info.ID, "unfreeze"); err != nil {
			t.Fatal(err)
		}
		okCall(t, m.Token, "after unfreeze")
	})

	// The sandbox venues are test endpoints: a kst_live_ token is refused
	// at every one of them before anything is signed.
	t.Run("live token on test venues", func(t *testing.T) {
		live := h.mint(t, admin.CreateTokenRequest{Name: "live-bot", Test: false})
		if !strings.HasPrefix(live.Token, "kst_live_") {
			t.Fatalf("minted %.9s..., want kst_live_", live.Token)
		}
		for _, v := range e2eVenues() {
			before := h.sb.Stats(v.id).Requests
			for _, r := range []botRequest{v.read, v.order} {
				resp := h.mustCall(t, live.Token, v.id, r)
				if resp.status != http.StatusForbidden {
					t.Errorf("%s %s %s: status %d, want 403", v.id, r.method, r.path, resp.status)
				}
			}
			if got := h.sb.Stats(v.id).Requests; got != before {
				t.Errorf("%s: a live token's request reached the sandbox", v.id)
			}
		}
	})
}
