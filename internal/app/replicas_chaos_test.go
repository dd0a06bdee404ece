package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/policy"
	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/store/postgres"
)

// meteredPolicy is a policy with a shared rate rule (two requests a
// minute per token, bursts of two): while Redis is down it fails closed,
// with Redis it is one limit across the replicas.
const meteredPolicy = `  metered:
    venues: [binance]
    operations: ["market.read", "account.read", "order.*"]
    instruments:
      allow: ["BTCUSDT"]
    rate:
      - {scope: token, limit: "2/m", burst: 2}
`

// TestE2EReplicasChaos runs three `keystile serve` processes on one
// PostgreSQL schema, reached through a loopback proxy the test controls,
// and a private redis-server the test stops and starts again:
//  1. with Redis up, a revocation on A is refused on B and C and a
//     policy rate limit is shared by the three;
//  2. with Redis stopped, revocations still reach B and C by polling
//     PostgreSQL (p99 < 5 s over 100 trials), readyz stays 200 and says
//     Redis is down and revocations go by polling, and the rate rule
//     fails closed (rule rate.unavailable; nothing reaches the venue);
//  3. with Redis restarted (empty: its fan-out counters are gone), every
//     replica subscribes again, revocations go by Redis again and the
//     rate limit is shared again;
//  4. across a PostgreSQL "restart", orders fail with a 5xx and reach no
//     venue while it is down, readyz is not ready; afterwards every
//     replica places orders again without being restarted, the budget is
//     exact across replicas, an Idempotency-Key that was at the venue
//     during the cut gives one order, and the audit chain verifies.
//
// The PostgreSQL restart is emulated: the machine's server is shared with
// other test packages running at the same time, so the test does not stop
// it. The proxy closes every connection it carries and refuses new ones
// for three seconds, then accepts again; from the replicas' side this is
// what a server restart looks like (sessions and open transactions gone,
// connections refused until it is back).
func TestE2EReplicasChaos(t *testing.T) {
	base := os.Getenv("KEYSTILE_TEST_POSTGRES")
	if base == "" {
		t.Skip("KEYSTILE_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	if os.Getenv("KEYSTILE_TEST_REDIS") == "" {
		t.Skip("KEYSTILE_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379/0)")
	}
	redisBin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server is not installed: the chaos test stops and restarts a private one")
	}
	ctx := context.Background()
	dsn, drop, err := postgres.TestSchema(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	pg := startCutProxy(t, u.Host)
	u.Host = pg.addr
	t.Setenv("KST_E2E_PG_DSN", u.String()) // the children inherit it: never in argv

	rds := startPrivateRedis(t, redisBin)

	sb, err := sandbox.Start(ctx, sandbox.Options{TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	info := sb.Info()
	tmp := t.TempDir()
	caFile := filepath.Join(tmp, "ca.pem")
	if err := os.WriteFile(caFile, sb.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(tmp, "keystile.yaml")
	yaml := strings.Replace(e2eConfigYAML(info, caFile, binanceOnly()), "log:\n  level: debug\n", "log:\n  level: info\n  format: json\n", 1) +
		strings.Replace(budgetPolicy, `limit: "1000 USDT"`, `limit: "600 USDT"`, 1) + meteredPolicy +
		fmt.Sprintf("store:\n  postgres:\n    dsn: env:KST_E2E_PG_DSN\n  redis:\n    addr: %s\n    rate_limit_fallback: fail_closed\n  poll_interval: 1s\n", rds.addr)
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	dirs := []string{filepath.Join(tmp, "a"), filepath.Join(tmp, "b"), filepath.Join(tmp, "c")}
	if _, err := app.Init(ctx, app.Env{}, app.InitOptions{DataDir: dirs[0], Config: cfg}); err != nil {
		t.Fatal(err)
	}
	for _, d := range dirs[1:] {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{app.KeyFile, app.LocalCAFile} {
			b, err := os.ReadFile(filepath.Join(dirs[0], f))
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(d, f), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	reps := make([]*child, 3)
	adms := make([]*admin.Client, 3)
	for i, d := range dirs {
		reps[i] = startChild(t, "serve", "--config", cfgFile, "--data-dir", d)
		if adms[i], err = admin.NewClient(filepath.Join(d, app.SocketFile)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for i, r := range reps {
				t.Logf("replica %c log (tail):\n%s", 'A'+i, tail(r.log.String(), 6000))
			}
		}
	})
	fields := map[string][]byte{}
	for k, v := range info.Venues[sandbox.VenueBinance].Credentials {
		fields[k] = []byte(v)
	}
	if _, err := adms[0].SetSecret(ctx, "e2e-binance", admin.SetSecretRequest{Fields: fields}); err != nil {
		t.Fatal(err)
	}
	mint := func(t *testing.T, name, pol string) admin.MintedToken {
		t.Helper()
		m, err := adms[0].CreateToken(ctx, admin.CreateTokenRequest{Name: name, Test: true, Policy: pol,
			Venues: []string{sandbox.VenueBinance}, Scopes: []string{"market.read", "account.read", "order.*"}, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	hc := &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	t.Cleanup(hc.CloseIdleConnections)
	call := func(addr, tok string, r botRequest, key string) chaosAnswer {
		req, _ := http.NewRequest(r.method, "http://"+addr+"/binance"+r.path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if key != "" {
			req.Header.Set(gateway.HeaderIdempotencyKey, key)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return chaosAnswer{err: err}
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		a := chaosAnswer{status: resp.StatusCode, header: resp.Header}
		var eb struct {
			Error struct {
				Code string `json:"code"`
				Rule string `json:"rule"`
			} `json:"error"`
		}
		if json.Unmarshal(b, &eb) == nil {
			a.code, a.rule = eb.Error.Code, eb.Error.Rule
		}
		return a
	}
	// probe is refused by the scalper policy (an instrument it does not
	// allow) with 403 while the token is valid and with 401 once it is
	// revoked; it never reaches the venue.
	probe := botRequest{"POST", "/api/v3/order?symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=3000", ""}
	// propagation revokes m on A and returns when B and C refuse it.
	// (admin.Client is not for concurrent writes: each worker has its own.)
	propagation := func(t *testing.T, adm *admin.Client, m admin.MintedToken) time.Duration {
		t.Helper()
		start := time.Now()
		if _, err := adm.TokenAction(ctx, m.Info.ID, "revoke"); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var worst atomic.Int64
		for _, r := range reps[1:] {
			wg.Go(func() {
				var last int
				waitUntil(t, "the revoked token to be refused", func() bool {
					last = call(r.addr, m.Token, probe, "").status
					if last != http.StatusUnauthorized {
						time.Sleep(4 * time.Millisecond)
						return false
					}
					return true
				}, &last)
				d := int64(time.Since(start))
				for w := worst.Load(); d > w && !worst.CompareAndSwap(w, d); w = worst.Load() {
				}
			})
		}
		wg.Wait()
		return time.Duration(worst.Load())
	}
	known := func(t *testing.T, m admin.MintedToken) {
		t.Helper()
		for _, r := range reps[1:] {
			var last int
			waitUntil(t, "a new token to be known to B and C", func() bool {
				last = call(r.addr, m.Token, probe, "").status
				return last == http.StatusForbidden
			}, &last)
		}
	}
	// sharedRate sends order60 with a fresh metered token to A, B, C in
	// turn: a limit of two shared by the replicas allows the first two
	// and refuses the third (per replica, all three would pass).
	sharedRate := func(t *testing.T) {
		t.Helper()
		m := mint(t, fmt.Sprintf("metered-%d", rand.Int64()), "metered") // #nosec G404 -- a name
		known(t, m)
		before := len(sb.Orders(sandbox.VenueBinance))
		var got []chaosAnswer
		for _, r := range reps {
			got = append(got, call(r.addr, m.Token, order60, ""))
		}
		if got[0].status != http.StatusOK || got[1].status != http.StatusOK || got[2].status != http.StatusTooManyRequests || got[2].rule != "policy.metered.rate" {
			t.Fatalf("a limit of 2 shared by three replicas: answers %v", got)
		}
		if n := len(sb.Orders(sandbox.VenueBinance)) - before; n != 2 {
			t.Fatalf("%d orders at the venue, want 2", n)
		}
	}
	readyAll := func(t *testing.T, want func(code int, h chaosHealth) bool, what string) {
		t.Helper()
		for i, r := range reps {
			var code int
			var h chaosHealth
			deadline := time.Now().Add(20 * time.Second)
			for {
				code, h = chaosReadyz(r.addr)
				if want(code, h) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("replica %c: readyz %d %+v: never %s", 'A'+i, code, h, what)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}

	t.Run("redis up", func(t *testing.T) {
		readyAll(t, func(c int, h chaosHealth) bool {
			return c == http.StatusOK && h.Redis == "ok" && h.FanOut == "redis" && h.Postgres == "reachable"
		}, "ready with Redis ok")
		m := mint(t, "sanity", "scalper")
		known(t, m)
		t.Logf("with Redis up: revoked on A, refused on B and C after %s", propagation(t, adms[0], m))
		sharedRate(t)
	})
	if t.Failed() {
		return
	}

	t.Run("redis stopped", func(t *testing.T) {
		// The tokens are made and known everywhere first: the trials
		// time revocations only.
		const trials = 100
		toks := make([]admin.MintedToken, trials)
		for i := range toks {
			toks[i] = mint(t, fmt.Sprintf("down-%d", i), "scalper")
		}
		for _, m := range toks {
			known(t, m)
		}
		metered := mint(t, "metered-down", "metered")
		known(t, metered)
		killed := mint(t, "killed-down", "scalper")
		known(t, killed)
		rds.stop(t)
		readyAll(t, func(c int, h chaosHealth) bool {
			return c == http.StatusOK && h.Redis == "down" && h.FanOut == "polling" && h.RateLimitFallback == "fail_closed" && h.Postgres == "reachable"
		}, "ready, saying Redis is down and revocations go by polling")

		// Four workers, 25 trials each, each revocation at a random
		// point of the poll interval; every figure is from its own
		// revoke call on A to the refusal on both B and C.
		lat := make([]time.Duration, trials)
		var wg sync.WaitGroup
		for w := range 4 {
			adm, err := admin.NewClient(filepath.Join(dirs[0], app.SocketFile))
			if err != nil {
				t.Fatal(err)
			}
			wg.Go(func() {
				for i := w; i < trials; i += 4 {
					time.Sleep(time.Duration(rand.IntN(1000)) * time.Millisecond) // #nosec G404 -- test timing
					lat[i] = propagation(t, adm, toks[i])
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		slices.Sort(lat)
		p50, p99, worst := lat[trials/2], lat[trials*99/100-1], lat[trials-1]
		t.Logf("with Redis stopped (polling every 1s): revoked on A, refused on B and C after p50 %s, p99 %s, max %s (%d trials)", p50, p99, worst, trials)
		if p99 >= 5*time.Second {
			t.Fatalf("revocation with Redis stopped: p99 %s, the bound is 5 s", p99)
		}

		// A kill switch tripped on A (a bot killing itself) is applied
		// by B and C too.
		req, _ := http.NewRequest("POST", "http://"+reps[0].addr+"/-/kill", strings.NewReader(`{"scope":"token","reason":"chaos"}`))
		req.Header.Set("Authorization", "Bearer "+killed.Token)
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("POST /-/kill on A: %d", resp.StatusCode)
		}
		for i, r := range reps {
			var last int
			waitUntil(t, "the killed bot to be refused", func() bool {
				a := call(r.addr, killed.Token, probe, "")
				last = a.status
				if a.rule != "token.killed" {
					time.Sleep(4 * time.Millisecond)
					return false
				}
				return true
			}, &last)
			t.Logf("with Redis stopped: a bot's kill on A applied on %c after %s", 'A'+i, time.Since(start))
		}

		// The shared rate rule fails closed on every replica; nothing
		// reaches the venue.
		before := len(sb.Orders(sandbox.VenueBinance))
		for i, r := range reps {
			a := call(r.addr, metered.Token, order60, "")
			if a.rule != policy.RuleRateUnavailable || a.status != http.StatusServiceUnavailable || a.code != "rate_limit_unavailable" {
				t.Fatalf("replica %c with Redis down: a rate-limited order answered %v, want a refusal with rule %s", 'A'+i, a, policy.RuleRateUnavailable)
			}
			if i == 0 {
				t.Logf("rate rule with Redis down (fail_closed): %d %s rule %s", a.status, a.code, a.rule)
			}
		}
		if n := len(sb.Orders(sandbox.VenueBinance)) - before; n != 0 {
			t.Fatalf("%d rate-limited orders reached the venue with Redis down (fail_closed)", n)
		}
	})
	if t.Failed() {
		return
	}

	t.Run("redis restarted", func(t *testing.T) {
		rds.start(t)
		readyAll(t, func(c int, h chaosHealth) bool { return c == http.StatusOK && h.Redis == "ok" && h.FanOut == "redis" },
			"ready with Redis ok again")
		// The restarted server is empty: the replicas are only on it
		// again if they subscribed anew (three subscribers a channel).
		rc := goredis.NewClient(&goredis.Options{Addr: rds.addr})
		defer rc.Close()
		deadline := time.Now().Add(20 * time.Second)
		for {
			chans, err := rc.PubSubChannels(ctx, "*").Result()
			var subs map[string]int64
			if err == nil && len(chans) > 0 {
				subs, err = rc.PubSubNumSub(ctx, chans...).Result()
			}
			all := err == nil && len(chans) >= 3
			for _, n := range subs {
				all = all && n == 3
			}
			if all {
				t.Logf("after the Redis restart: %d fan-out channels, three subscribers each", len(chans))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the Redis restart the replicas did not all subscribe again: channels %v, subscribers %v, %v", chans, subs, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		var lat []time.Duration
		for i := range 10 {
			m := mint(t, fmt.Sprintf("back-%d", i), "scalper")
			known(t, m)
			lat = append(lat, propagation(t, adms[0], m))
		}
		slices.Sort(lat)
		t.Logf("with Redis restarted: revoked on A, refused on B and C after p50 %s, max %s (10 trials)", lat[5], lat[9])
		sharedRate(t)
	})
	if t.Failed() {
		return
	}

	t.Run("postgres restart", func(t *testing.T) {
		m := mint(t, "pg-budget", "scalper")
		known(t, m)
		before := len(sb.Orders(sandbox.VenueBinance))
		for i, r := range reps {
			if a := call(r.addr, m.Token, order60, ""); a.status != http.StatusOK {
				t.Fatalf("replica %c before the cut: %v", 'A'+i, a)
			}
		}
		// An order at the venue (slow to answer) when the database goes.
		if err := sb.InjectFault(sandbox.VenueBinance, sandbox.Fault{Kind: sandbox.FaultSlowProcess, PathPrefix: "/api/v3/order",
			Delay: sandbox.Duration(1500 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
		const key = "in-flight-at-the-cut"
		inflight := make(chan chaosAnswer, 1)
		go func() { inflight <- call(reps[1].addr, m.Token, order60, key) }()
		time.Sleep(400 * time.Millisecond)
		atVenue := len(sb.Orders(sandbox.VenueBinance)) - before // 3, or 4 if the slow one is already recorded
		pg.cut(3 * time.Second)
		cutAt := time.Now()

		// While it is down: every replica refuses orders with a 5xx and
		// says it is not ready.
		for i, r := range reps {
			a := call(r.addr, m.Token, order60, "")
			t.Logf("replica %c with the database down: an order answered %v", 'A'+i, a)
			if a.status < 500 || a.header.Get(gateway.HeaderError) == "" {
				t.Errorf("replica %c with the database down: order answered %v, want keystile's own 5xx", 'A'+i, a)
			}
			if code, _ := chaosReadyz(r.addr); code == http.StatusOK {
				t.Errorf("replica %c: readyz 200 with the database down", 'A'+i)
			}
		}
		in := <-inflight
		t.Logf("database down %s: the order in flight at the cut answered %v", time.Since(cutAt).Round(time.Millisecond), in)
		if err := sb.ClearFaults(sandbox.VenueBinance); err != nil {
			t.Fatal(err)
		}
		// Only the order in flight can have reached the venue.
		if n := len(sb.Orders(sandbox.VenueBinance)) - before; n > 4 || n < atVenue {
			t.Fatalf("%d orders at the venue after the cut, want at most 4 (3 before it and the one in flight)", n)
		}
		if t.Failed() {
			return
		}

		readyAll(t, func(c int, h chaosHealth) bool { return c == http.StatusOK && h.Postgres == "reachable" },
			"ready again after the database came back")
		t.Logf("all three ready %s after the cut", time.Since(cutAt).Round(time.Millisecond))
		// The order in flight, retried with its key on C: one order.
		var retry chaosAnswer
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			retry = call(reps[2].addr, m.Token, order60, key)
			if retry.status == http.StatusOK {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the retry of %s on C never succeeded: last %v", key, retry)
			}
		}
		t.Logf("retry of the key in flight on C: %v (replay %q, outcome %q)", retry, retry.header.Get(gateway.HeaderReplay), retry.header.Get(gateway.HeaderOutcome))
		if n := len(sb.Orders(sandbox.VenueBinance)) - before; n != 4 {
			t.Fatalf("%d orders at the venue after the retry, want 4 (3 before the cut, the key in flight once)", n)
		}

		// Every replica places orders again (a fresh token each).
		for i, r := range reps {
			f := mint(t, fmt.Sprintf("pg-after-%d", i), "scalper")
			known(t, f)
			if a := call(r.addr, f.Token, order60, ""); a.status != http.StatusOK {
				t.Fatalf("replica %c after the database came back: %v", 'A'+i, a)
			}
		}
		// The budget: 600 USDT, 240 used (4 orders); from the three
		// replicas at once, exactly 6 more pass.
		before2 := len(sb.Orders(sandbox.VenueBinance))
		var ok atomic.Int64
		var wg sync.WaitGroup
		for i := range 9 {
			wg.Go(func() {
				for range 2 {
					if a := call(reps[i%3].addr, m.Token, order60, ""); a.status == http.StatusOK {
						ok.Add(1)
					}
				}
			})
		}
		wg.Wait()
		got := len(sb.Orders(sandbox.VenueBinance)) - before2
		if got != 6 || ok.Load() != 6 {
			t.Fatalf("after the cut %d orders reached the venue (%d answered 200), want exactly 6: 600 USDT, 240 used", got, ok.Load())
		}
		t.Logf("budget after the cut: %d more orders of 60 USDT across three replicas, 10 in all for 600 USDT", got)

		// The audit chain verifies; every order at the venue has its
		// intent record.
		args := []string{"--config", cfgFile, "--data-dir", dirs[0]}
		if code, out, errOut := runCLI(t, append([]string{"audit", "verify"}, args...)...); code != 0 {
			t.Fatalf("audit verify exit %d:\n%s%s", code, out, errOut)
		}
		code, out, errOut := runCLI(t, append([]string{"audit", "export", "--format", "jsonl"}, args...)...)
		if code != 0 {
			t.Fatalf("audit export exit %d: %s", code, errOut)
		}
		intents, outcomes := map[string]bool{}, map[string]int{}
		for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
			var r struct {
				Kind          string `json:"kind"`
				ClientOrderID string `json:"client_order_id"`
			}
			if json.Unmarshal([]byte(line), &r) == nil && r.ClientOrderID != "" {
				switch r.Kind {
				case "intent":
					intents[r.ClientOrderID] = true
				case "outcome":
					outcomes[r.ClientOrderID]++
				}
			}
		}
		var noOutcome []string
		for _, o := range sb.Orders(sandbox.VenueBinance) {
			if !intents[o.ClientOrderID] {
				t.Fatalf("the venue has order %s without a durable intent record", o.ClientOrderID)
			}
			if outcomes[o.ClientOrderID] == 0 {
				noOutcome = append(noOutcome, o.ClientOrderID)
			}
		}
		// Outcome records are queued, not durable before the answer
		// (audit package doc); one queued while the database was down
		// is kept and written when it is back: every order has one.
		if len(noOutcome) > 0 {
			t.Errorf("orders at the venue without an outcome record: %v", noOutcome)
		}
		t.Logf("audit verifies; %d orders at the venue, each with its intent record; without an outcome record: %v; the key in flight at the cut (%s): %d outcome records",
			len(sb.Orders(sandbox.VenueBinance)), noOutcome, retry.header.Get(gateway.HeaderClientOrderID), outcomes[retry.header.Get(gateway.HeaderClientOrderID)])
	})
}

// chaosAnswer is what a bot was told.
type chaosAnswer struct {
	status     int
	code, rule string
	header     http.Header
	err        error
}

func (a chaosAnswer) String() string {
	if a.err != nil {
		return "error: " + a.err.Error()
	}
	return fmt.Sprintf("%d %s %s", a.status, a.code, a.rule)
}

// chaosHealth is /-/readyz's store part (app.StoreHealth's JSON).
type chaosHealth struct {
	Postgres          string `json:"postgres"`
	Redis             string `json:"redis"`
	FanOut            string `json:"fan_out"`
	RateLimitFallback string `json:"rate_limit_fallback"`
}

func chaosReadyz(addr string) (int, chaosHealth) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + addr + "/-/readyz")
	if err != nil {
		return 0, chaosHealth{}
	}
	defer resp.Body.Close()
	var body struct {
		Store chaosHealth `json:"store"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body.Store
}

// privateRedis is a redis-server of the test's own, without persistence:
// stopped and started again on the same port it comes back empty.
type privateRedis struct {
	bin, dir, addr string
	cmd            *exec.Cmd
	done           chan struct{}
}

func startPrivateRedis(t *testing.T, bin string) *privateRedis {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	r := &privateRedis{bin: bin, dir: t.TempDir(), addr: addr}
	r.start(t)
	t.Cleanup(func() {
		if r.cmd != nil {
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

func (r *privateRedis) start(t *testing.T) {
	t.Helper()
	_, port, _ := net.SplitHostPort(r.addr)
	// #nosec G204 -- the test's own redis-server
	r.cmd = exec.Command(r.bin, "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", r.dir)
	r.cmd.Stdout, r.cmd.Stderr = io.Discard, io.Discard
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) { _ = cmd.Wait(); close(done) }(r.cmd, r.done)
	c := goredis.NewClient(&goredis.Options{Addr: r.addr, MaxRetries: -1})
	defer c.Close()
	for deadline := time.Now().Add(10 * time.Second); c.Ping(context.Background()).Err() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not start", r.addr)
		}
	}
}

func (r *privateRedis) stop(t *testing.T) {
	t.Helper()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	r.cmd = nil
}

// cutProxy relays loopback TCP connections to a PostgreSQL server; cut
// emulates a server restart.
type cutProxy struct {
	addr, target string
	mu           sync.Mutex
	ln           net.Listener
	conns        map[net.Conn]struct{}
	closed       bool
}

func startCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{addr: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}}
	p.serve(ln)
	t.Cleanup(func() {
		p.mu.Lock()
		p.closed = true
		ln := p.ln
		p.mu.Unlock()
		if ln != nil {
			_ = ln.Close()
		}
		p.dropAll()
	})
	return p
}

func (p *cutProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.relay(c)
		}
	}()
}

func (p *cutProxy) relay(c net.Conn) {
	s, err := net.DialTimeout("tcp", p.target, 5*time.Second)
	if err != nil {
		_ = c.Close()
		return
	}
	if !p.track(c, s) {
		_ = c.Close()
		_ = s.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
		done <- struct{}{}
	}
	go pipe(s, c)
	go pipe(c, s)
	<-done
	<-done
	p.mu.Lock()
	delete(p.conns, c)
	delete(p.conns, s)
	p.mu.Unlock()
}

func (p *cutProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil || p.closed {
		return false // cut while this one was dialling
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *cutProxy) dropAll() {
	p.mu.Lock()
	conns := make([]net.Conn, 0, len(p.conns))
	for c := range p.conns {
		conns = append(conns, c)
	}
	p.mu.Unlock()
	for _, c := range conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0) // a reset, as from a server that went away
		}
		_ = c.Close()
	}
}

// cut closes the listener and every relayed connection, refuses
// connections for d (nothing listens on the port), then listens again on
// the same address.
func (p *cutProxy) cut(d time.Duration) {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	p.mu.Unlock()
	_ = ln.Close()
	p.dropAll()
	go func() {
		time.Sleep(d)
		for {
			p.mu.Lock()
			closed := p.closed
			p.mu.Unlock()
			if closed {
				return
			}
			ln, err := net.Listen("tcp", p.addr)
			if err == nil {
				p.serve(ln)
				return
			}
			if !errors.Is(err, syscall.EADDRINUSE) {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
}
