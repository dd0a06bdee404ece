package app_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/cli"
	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// envChildArgs makes the test binary run the keystile CLI with these
// (JSON) arguments instead of the tests: the crash test kills a real
// `keystile serve` process.
const envChildArgs = "KEYSTILE_TEST_CLI_ARGS"

func TestMain(m *testing.M) {
	if raw := os.Getenv(envChildArgs); raw != "" {
		var args []string
		if err := json.Unmarshal([]byte(raw), &args); err != nil {
			fmt.Fprintln(os.Stderr, "bad", envChildArgs, err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := cli.Main(ctx, args, os.Stdin, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

// child is a `keystile serve` process.
type child struct {
	cmd  *exec.Cmd
	addr string
	log  *syncBuffer
	done chan struct{}
}

func startChild(t *testing.T, args ...string) *child {
	t.Helper()
	raw, _ := json.Marshal(args)
	cmd := exec.Command(os.Args[0], "-test.run=^$") // #nosec G204 -- the test binary itself
	cmd.Env = append(os.Environ(), envChildArgs+"="+string(raw))
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &child{cmd: cmd, log: &syncBuffer{}, done: make(chan struct{})}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			_, _ = c.log.Write([]byte(line + "\n"))
			if strings.Contains(line, `"msg":"keystile: serving"`) {
				var m struct {
					Gateway string `json:"gateway"`
				}
				if json.Unmarshal([]byte(line), &m) == nil {
					select {
					case addr <- m.Gateway:
					default:
					}
				}
			}
		}
	}()
	go func() { _ = cmd.Wait(); close(c.done) }()
	select {
	case c.addr = <-addr:
	case <-c.done:
		t.Fatalf("serve exited before serving:\n%s", c.log.String())
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("serve did not start:\n%s", c.log.String())
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-c.done })
	return c
}

// ledgerState reads the stored order state of a stopped server: the
// client order ids claimed and the number of budget entries.
func ledgerState(t *testing.T, path string) (map[string]bool, int) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	claims := map[string]bool{}
	rows, err := db.SQL().QueryContext(ctx, `SELECT client_order_id FROM idempotency`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var c string
		if err := rows.Scan(&c); err != nil {
			t.Fatal(err)
		}
		claims[c] = true
	}
	var n int
	if err := db.SQL().QueryRowContext(ctx, `SELECT count(*) FROM budget_entries`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return claims, n
}

func (c *child) kill9(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not die")
	}
}

func (c *child) interrupt(t *testing.T) {
	t.Helper()
	_ = c.cmd.Process.Signal(os.Interrupt)
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not stop:\n%s", c.log.String())
	}
	if code := c.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("serve exit code %d:\n%s", code, c.log.String())
	}
}

// runCLI runs the keystile CLI in-process.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// TestCrashKill9UnderLoad kills `keystile serve` with SIGKILL at random
// points while bots place orders, several times. After every kill: the
// audit log verifies, every order the venue received has its durable
// intent record, budget reservation and idempotency claim (one write: no
// intent without its claim or the other way round), the budget was never
// exceeded, and the vault opens again.
func TestCrashKill9UnderLoad(t *testing.T) {
	ctx := context.Background()
	sb, err := sandbox.Start(ctx, sandbox.Options{TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	info := sb.Info()
	tmp := t.TempDir()
	dataDir := filepath.Join(tmp, "data")
	if _, err := app.Init(ctx, app.Env{}, app.InitOptions{DataDir: dataDir, Source: "file"}); err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(tmp, "ca.pem")
	if err := os.WriteFile(caFile, sb.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(tmp, "keystile.yaml")
	cfg := strings.Replace(e2eConfigYAML(info, caFile, binanceOnly()), "log:\n  level: debug\n", "log:\n  level: info\n  format: json\n", 1) +
		strings.Replace(budgetPolicy, `limit: "1000 USDT"`, `limit: "3000 USDT"`, 1) + "audit:\n  sink: sqlite\n  checkpoint_every: 7\n"
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	common := []string{"--config", cfgFile, "--data-dir", dataDir}
	serve := append([]string{"serve"}, common...)

	c := startChild(t, serve...)
	adm, err := admin.NewClient(filepath.Join(dataDir, app.SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string][]byte{}
	for k, v := range info.Venues[sandbox.VenueBinance].Credentials {
		fields[k] = []byte(v)
	}
	if _, err := adm.SetSecret(ctx, "e2e-binance", admin.SetSecretRequest{Fields: fields}); err != nil {
		t.Fatal(err)
	}
	m, err := adm.CreateToken(ctx, admin.CreateTokenRequest{Name: "crash-bot", Test: true, Policy: "scalper",
		Venues: []string{sandbox.VenueBinance}, Scopes: []string{"market.read", "account.read", "order.*"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var sent atomic.Int64
	check := func(round int) {
		t.Helper()
		if code, out, errOut := runCLI(t, append([]string{"audit", "verify"}, common...)...); code != 0 {
			t.Fatalf("round %d: audit verify exit %d:\n%s%s", round, code, out, errOut)
		}
		code, out, errOut := runCLI(t, append([]string{"audit", "export", "--format", "jsonl"}, common...)...)
		if code != 0 {
			t.Fatalf("round %d: audit export exit %d: %s", round, code, errOut)
		}
		intents := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var r struct {
				Kind          string `json:"kind"`
				ClientOrderID string `json:"client_order_id"`
			}
			if line != "" && json.Unmarshal([]byte(line), &r) == nil && r.Kind == "intent" && r.ClientOrderID != "" {
				intents[r.ClientOrderID] = true
			}
		}
		orders := sb.Orders(sandbox.VenueBinance)
		for _, o := range orders {
			if !intents[o.ClientOrderID] {
				t.Fatalf("round %d: the venue received order %s without a durable intent record", round, o.ClientOrderID)
			}
		}
		if len(orders) > 50 {
			t.Fatalf("round %d: %d orders of 60 USDT reached the venue: the 3000 USDT budget was exceeded", round, len(orders))
		}
		// The order's budget reservation and idempotency claim are in the
		// same write as its intent record: none without the others.
		claims, reserved := ledgerState(t, filepath.Join(dataDir, app.DBFile))
		for _, o := range orders {
			if !claims[o.ClientOrderID] {
				t.Fatalf("round %d: the venue received order %s without a durable idempotency claim", round, o.ClientOrderID)
			}
		}
		for coid := range intents {
			if !claims[coid] {
				t.Fatalf("round %d: intent record of %s without its claim", round, coid)
			}
		}
		for coid := range claims {
			if !intents[coid] {
				t.Fatalf("round %d: claim of %s without its intent record", round, coid)
			}
		}
		if reserved < len(orders) || reserved > 50 {
			t.Fatalf("round %d: %d budget entries for %d orders at the venue (limit 50)", round, reserved, len(orders))
		}
		t.Logf("round %d: %d requests sent so far, %d orders at the venue, %d intent records", round, sent.Load(), len(orders), len(intents))
	}

	const rounds = 4
	for round := 1; round <= rounds; round++ {
		if round > 1 {
			c = startChild(t, serve...)
		}
		var stop atomic.Bool
		var wg sync.WaitGroup
		for range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for !stop.Load() {
					req, _ := http.NewRequest(order60.method, "http://"+c.addr+"/binance"+order60.path, nil)
					req.Header.Set("Authorization", "Bearer "+m.Token)
					resp, err := hc.Do(req)
					sent.Add(1)
					if err != nil {
						time.Sleep(5 * time.Millisecond)
						continue
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
			}()
		}
		// #nosec G404 -- test timing, not security
		time.Sleep(time.Duration(50+rand.IntN(400)) * time.Millisecond)
		c.kill9(t)
		stop.Store(true)
		wg.Wait()
		hc.CloseIdleConnections()
		check(round)
	}
	// The vault still opens and a clean stop writes a final checkpoint.
	c = startChild(t, serve...)
	if _, err := adm.ListSecrets(ctx); err != nil {
		t.Fatalf("vault after crashes: %v", err)
	}
	c.interrupt(t)
	check(rounds + 1)
}
