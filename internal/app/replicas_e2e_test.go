package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/store/postgres"
	redisstore "github.com/keystile/keystile/internal/store/redis"
)

// TestE2EThreeReplicas runs three `keystile serve` processes on one
// PostgreSQL schema and one Redis, in front of the sandbox venue, with
// bots spread across them:
//   - a token revoked on A is refused by B and C (100 trials; the
//     propagation figures are logged);
//   - a token's budget is never exceeded, whichever replica its orders
//     go through;
//   - one Idempotency-Key sent to two replicas at once gives one order;
//   - a replica killed (SIGKILL) while its order is at the venue, then
//     the order retried on another replica: the venue has it once.
func TestE2EThreeReplicas(t *testing.T) {
	base := os.Getenv("KEYSTILE_TEST_POSTGRES")
	if base == "" {
		t.Skip("KEYSTILE_TEST_POSTGRES is not set (e.g. postgres://postgres@127.0.0.1:5432/test?sslmode=disable)")
	}
	redisURL := os.Getenv("KEYSTILE_TEST_REDIS")
	if redisURL == "" {
		t.Skip("KEYSTILE_TEST_REDIS is not set (e.g. redis://127.0.0.1:6379/0)")
	}
	ro, err := redisstore.ParseURL(redisURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dsn, drop, err := postgres.TestSchema(ctx, base)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(drop)
	t.Setenv("KST_E2E_PG_DSN", dsn) // the children inherit it: never in argv

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
		budgetPolicy +
		fmt.Sprintf("store:\n  postgres:\n    dsn: env:KST_E2E_PG_DSN\n  redis:\n    addr: %s\n  poll_interval: 1s\n", ro.Addr)
	if err := os.WriteFile(cfgFile, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	// Replica A is initialised on the database; B and C get its master
	// key file and local CA certificate, as an operator copies them.
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
	cleanRedisOf(t, dirs[0], cfg, redisURL)
	reps := make([]*child, 3)
	adms := make([]*admin.Client, 3)
	for i, d := range dirs {
		reps[i] = startChild(t, "serve", "--config", cfgFile, "--data-dir", d)
		if adms[i], err = admin.NewClient(filepath.Join(d, app.SocketFile)); err != nil {
			t.Fatal(err)
		}
	}
	fields := map[string][]byte{}
	for k, v := range info.Venues[sandbox.VenueBinance].Credentials {
		fields[k] = []byte(v)
	}
	if _, err := adms[0].SetSecret(ctx, "e2e-binance", admin.SetSecretRequest{Fields: fields}); err != nil {
		t.Fatal(err)
	}
	mint := func(t *testing.T, name string) admin.MintedToken {
		t.Helper()
		m, err := adms[0].CreateToken(ctx, admin.CreateTokenRequest{Name: name, Test: true, Policy: "scalper",
			Venues: []string{sandbox.VenueBinance}, Scopes: []string{"market.read", "account.read", "order.*"}, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	t.Cleanup(hc.CloseIdleConnections)
	call := func(addr, tok string, r botRequest, key string) (int, http.Header) {
		req, _ := http.NewRequest(r.method, "http://"+addr+"/binance"+r.path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if key != "" {
			req.Header.Set(gateway.HeaderIdempotencyKey, key)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return 0, nil
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp.StatusCode, resp.Header
	}
	// probe is refused by the policy (an instrument it does not allow)
	// with 403 while the token is valid and with 401 once it is revoked:
	// it never reaches the venue, so a hundred trials spend none of the
	// venue's request weight.
	probe := botRequest{"POST", "/api/v3/order?symbol=ETHUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.01&price=3000", ""}

	t.Run("revocation", func(t *testing.T) {
		const trials = 100
		lat := make([]time.Duration, 0, trials)
		for i := range trials {
			m := mint(t, fmt.Sprintf("rev-%d", i))
			for _, r := range reps[1:] {
				var last int
				waitUntil(t, "a new token to be known to B and C", func() bool {
					last, _ = call(r.addr, m.Token, probe, "")
					return last == http.StatusForbidden
				}, &last)
			}
			start := time.Now()
			if _, err := adms[0].TokenAction(ctx, m.Info.ID, "revoke"); err != nil {
				t.Fatal(err)
			}
			var wg sync.WaitGroup
			var worst atomic.Int64
			for _, r := range reps[1:] {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var last int
					waitUntil(t, "the revoked token to be refused", func() bool {
						last, _ = call(r.addr, m.Token, probe, "")
						return last == http.StatusUnauthorized
					}, &last)
					for d := int64(time.Since(start)); ; {
						w := worst.Load()
						if d <= w || worst.CompareAndSwap(w, d) {
							break
						}
					}
				}()
			}
			wg.Wait()
			lat = append(lat, time.Duration(worst.Load()))
		}
		slices.Sort(lat)
		t.Logf("revoked on A, refused on B and C after: p50 %s, p99 %s, max %s (%d trials, from the revoke call on A)",
			lat[len(lat)/2], lat[len(lat)*99/100-1], lat[len(lat)-1], trials)
	})

	t.Run("budget", func(t *testing.T) {
		// 3 replicas × 50 concurrent orders of 60 USDT against the
		// token's 1000 USDT daily budget: at most 16 reach the venue.
		before := len(sb.Orders(sandbox.VenueBinance))
		m := mint(t, "budget")
		var wg sync.WaitGroup
		var ok atomic.Int64
		for i := range 150 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if s, _ := call(reps[i%3].addr, m.Token, order60, ""); s == http.StatusOK {
					ok.Add(1)
				}
			}()
		}
		wg.Wait()
		got := len(sb.Orders(sandbox.VenueBinance)) - before
		if got > 16 || ok.Load() > 16 {
			t.Fatalf("%d orders reached the venue (%d answered 200): the 1000 USDT budget was exceeded across replicas", got, ok.Load())
		}
		if got == 0 || int64(got) != ok.Load() {
			t.Fatalf("%d orders reached the venue, %d answered 200", got, ok.Load())
		}
		t.Logf("%d orders of 60 USDT (%d USDT) reached the venue from 3 replicas × 50 concurrent against a 1000 USDT budget", got, got*60)
	})

	t.Run("idempotency across replicas", func(t *testing.T) {
		m := mint(t, "idem")
		for i := range 5 {
			before := len(sb.Orders(sandbox.VenueBinance))
			key := fmt.Sprintf("same-key-%d", i)
			var wg sync.WaitGroup
			for _, r := range reps[:2] {
				wg.Add(1)
				go func() { defer wg.Done(); call(r.addr, m.Token, order60, key) }()
			}
			wg.Wait()
			if got := len(sb.Orders(sandbox.VenueBinance)) - before; got != 1 {
				t.Fatalf("key %s sent to A and B at once: %d orders at the venue, want 1", key, got)
			}
		}
	})

	t.Run("200 duplicate-key pairs", func(t *testing.T) {
		// Each key is sent to two replicas at once; 25 pairs in flight.
		// Orders of 3 USDT keep the 200 under the token's budget; the
		// venue key's own order rate may refuse some (then neither
		// replica sends), never send one twice.
		m := mint(t, "pairs")
		small := botRequest{"POST", "/api/v3/order?symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.0001&price=30000", ""}
		before := len(sb.Orders(sandbox.VenueBinance))
		var placed atomic.Int64
		sem := make(chan struct{}, 25)
		var wg sync.WaitGroup
		for i := range 200 {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				key := fmt.Sprintf("pair-%03d", i)
				var st [2]int
				var inner sync.WaitGroup
				for j, r := range []*child{reps[i%3], reps[(i+1)%3]} {
					inner.Add(1)
					go func() { defer inner.Done(); st[j], _ = call(r.addr, m.Token, small, key) }()
				}
				inner.Wait()
				if st[0] == http.StatusOK || st[1] == http.StatusOK {
					placed.Add(1)
				}
			}()
		}
		wg.Wait()
		got := len(sb.Orders(sandbox.VenueBinance)) - before
		if int64(got) != placed.Load() {
			t.Fatalf("%d orders at the venue for %d keys answered 200 by either replica: a key was placed twice (or an answered order is missing)", got, placed.Load())
		}
		if got < 20 {
			t.Fatalf("only %d of 200 keys placed: the test would show little", got)
		}
		t.Logf("200 keys, each sent to two replicas at once: %d orders at the venue, one per key answered 200, 0 duplicates", got)
	})

	t.Run("kill -9 mid-order then retry elsewhere", func(t *testing.T) {
		m := mint(t, "crash")
		before := len(sb.Orders(sandbox.VenueBinance))
		if err := sb.InjectFault(sandbox.VenueBinance, sandbox.Fault{Kind: sandbox.FaultSlowProcess, PathPrefix: "/api/v3/order",
			Delay: sandbox.Duration(1500 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
		const key = "crash-key"
		go call(reps[1].addr, m.Token, order60, key) // dies with B
		time.Sleep(300 * time.Millisecond)           // the order is at the venue
		reps[1].kill9(t)
		// Retried on C until answered; the venue places B's order late.
		deadline := time.Now().Add(20 * time.Second)
		for {
			s, h := call(reps[2].addr, m.Token, order60, key)
			if s == http.StatusOK {
				t.Logf("retry on C answered 200 (%s)", h.Get(gateway.HeaderOutcome))
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the retry on C never got an answer (last status %d)", s)
			}
			time.Sleep(100 * time.Millisecond)
		}
		time.Sleep(2 * time.Second) // anything still in flight lands
		if got := len(sb.Orders(sandbox.VenueBinance)) - before; got != 1 {
			t.Fatalf("%d orders at the venue for one Idempotency-Key across a crash, want 1", got)
		}
	})
}

// waitUntil polls cond for up to 10 s (a bound on correctness), naming
// the last status seen if it times out.
func waitUntil(t *testing.T, what string, cond func() bool, last *int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("timed out waiting for %s (last status %d)", what, *last)
			return
		}
	}
}

// cleanRedisOf removes the installation's Redis keys when the test ends.
func cleanRedisOf(t *testing.T, dir string, cfg *config.Config, redisURL string) {
	t.Helper()
	ctx := context.Background()
	db, v, err := app.OpenVault(ctx, app.Env{}, dir, cfg, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	prefix, err := app.RedisKeyPrefix(v)
	_ = v.Close(ctx)
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		o, err := goredis.ParseURL(redisURL)
		if err != nil {
			return
		}
		c := goredis.NewClient(o)
		defer c.Close()
		iter := c.Scan(ctx, 0, prefix+"*", 100).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
	})
}
