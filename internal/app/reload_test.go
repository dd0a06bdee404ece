package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/sandbox"
)

// TestReloadVenues edits the config file of a running server: a venue
// added to the file is served without a restart, a bad file keeps the
// running venues, a removed venue is no longer served, and a change to a
// section that only a restart applies is reported, not half-applied.
func TestReloadVenues(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sb, err := sandbox.Start(context.Background(), sandbox.Options{TLS: true, Venues: []string{sandbox.VenueBinance, sandbox.VenueKraken}})
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
	venueYAML := func(id, extra string) string {
		return fmt.Sprintf("  %s:\n    type: %s\n    credential: rl-%s\n    base_url: %s\n    sandbox: true\n    tls:\n      ca_file: %q\n%s",
			id, id, id, info.Venues[id].BaseURL, caFile, extra)
	}
	head := "gateway:\n  listen: 127.0.0.1:0\nvenues:\n"
	cfgPath := filepath.Join(tmp, "keystile.yaml")
	write := func(s string) {
		t.Helper()
		// Write to a temporary file and rename, as editors do: the
		// watcher never sees half a file.
		if err := os.WriteFile(cfgPath+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfgPath+".tmp", cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	write(head + venueYAML("binance", ""))
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &syncBuffer{}
	red := logging.NewRedactor()
	log := logging.New(logBuf, logging.Options{Level: slog.LevelDebug, Format: "json", Redactor: red})
	srv, err := app.NewServer(ctx, app.Env{}, app.ServerOptions{ConfigPath: cfgPath, DataDir: dataDir, Config: cfg, Logger: log, Redactor: red})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("server did not stop")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", tail(logBuf.String(), 6000))
		}
	})
	h := &harness{srv: srv, dataDir: dataDir, gw: "http://" + srv.GatewayAddr(), log: logBuf, hc: &http.Client{Timeout: 30 * time.Second}}
	h.admin, err = admin.NewClient(filepath.Join(dataDir, app.SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{sandbox.VenueBinance, sandbox.VenueKraken} {
		fields := map[string][]byte{}
		for k, v := range info.Venues[id].Credentials {
			fields[k] = []byte(v)
		}
		if _, err := h.admin.SetSecret(ctx, "rl-"+id, admin.SetSecretRequest{Fields: fields}); err != nil {
			t.Fatal(err)
		}
	}
	binanceRead := botRequest{"GET", "/api/v3/account", ""}
	krakenRead := botRequest{"POST", "/0/private/Balance", ""}
	bin := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{"binance"}})
	wantOK(t, "binance", binanceRead, h.mustCall(t, bin.Token, "binance", binanceRead))
	if _, ok := srv.Config().Venues["kraken"]; ok {
		t.Fatal("kraken is configured before the file names it")
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 10s: %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	// 1. Add kraken (and a policy) to the running server's file.
	write(head + venueYAML("binance", "") + venueYAML("kraken", "    tier: none\n") +
		"policies:\n  reader:\n    operations: [\"account.read\"]\n")
	waitFor("kraken configured", func() bool { _, ok := srv.Config().Venues["kraken"]; return ok })
	krk := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{"binance", "kraken"}, Policy: "reader"})
	wantOK(t, "kraken", krakenRead, h.mustCall(t, krk.Token, "kraken", krakenRead))
	wantOK(t, "binance", binanceRead, h.mustCall(t, bin.Token, "binance", binanceRead))
	if !strings.Contains(logBuf.String(), `"msg":"keystile: venues reloaded"`) {
		t.Error("no 'venues reloaded' log line")
	}

	// 2. A bad file keeps what runs, and says why.
	write(head + venueYAML("binance", "") + "  kraken:\n    type: nosuch\n")
	waitFor("reload failure logged", func() bool { return strings.Contains(logBuf.String(), "reload failed") })
	wantOK(t, "kraken", krakenRead, h.mustCall(t, krk.Token, "kraken", krakenRead))

	// 3. Remove kraken; change a restart-only setting.
	write("gateway:\n  listen: 127.0.0.1:0\n  max_body_bytes: 4096\nvenues:\n" + venueYAML("binance", ""))
	waitFor("kraken removed", func() bool { _, ok := srv.Config().Venues["kraken"]; return !ok })
	resp := h.mustCall(t, krk.Token, "kraken", krakenRead)
	if resp.status != 404 || resp.errorRule() != "route.unknown_venue" {
		t.Errorf("removed venue: %d %s, want 404 route.unknown_venue", resp.status, resp.errorRule())
	}
	wantOK(t, "binance", binanceRead, h.mustCall(t, bin.Token, "binance", binanceRead))
	if got := srv.RestartNeeded(); !slices.Equal(got, []string{"gateway"}) {
		t.Errorf("RestartNeeded = %v, want [gateway]", got)
	}
	if got := srv.Config().Gateway.MaxBodyBytes; got == 4096 {
		t.Error("a restart-only setting was applied by the reload")
	}
	st, err := h.admin.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(st.RestartNeeded, []string{"gateway"}) {
		t.Errorf("admin status restart_needed = %v, want [gateway]", st.RestartNeeded)
	}
}

// TestReloadDetect: the detect section follows the file like venues and
// policies: new actions apply to the next finding, an invalid section
// keeps the running one, and queue_size is reported as restart-only.
func TestReloadDetect(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sb, err := sandbox.Start(context.Background(), sandbox.Options{TLS: true, Venues: []string{sandbox.VenueBinance}})
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
	head := fmt.Sprintf("gateway:\n  listen: 127.0.0.1:0\nvenues:\n  binance:\n    type: binance\n    credential: rl-binance\n    base_url: %s\n    sandbox: true\n    tls:\n      ca_file: %q\n",
		info.Venues[sandbox.VenueBinance].BaseURL, caFile)
	cfgPath := filepath.Join(tmp, "keystile.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(cfgPath+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cfgPath+".tmp", cfgPath); err != nil {
			t.Fatal(err)
		}
	}
	write(head + "detect:\n  detectors:\n    sensitive_operations: {actions: [alert]}\n")
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	logBuf := &syncBuffer{}
	log := logging.New(logBuf, logging.Options{Level: slog.LevelDebug, Format: "json"})
	srv, err := app.NewServer(ctx, app.Env{}, app.ServerOptions{ConfigPath: cfgPath, DataDir: dataDir, Config: cfg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("run: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("server did not stop")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", tail(logBuf.String(), 6000))
		}
	})
	h := &harness{srv: srv, dataDir: dataDir, gw: "http://" + srv.GatewayAddr(), log: logBuf, hc: &http.Client{Timeout: 30 * time.Second}}
	h.admin, err = admin.NewClient(filepath.Join(dataDir, app.SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("not within 10s: %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	withdraw := botRequest{"POST", "/sapi/v1/capital/withdraw/apply?coin=BTC&amount=1&address=x", ""}
	state := func(id string) string {
		i, err := h.admin.ShowToken(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return i.State
	}

	a := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{"binance"}})
	if r := h.mustCall(t, a.Token, "binance", withdraw); r.status != http.StatusForbidden {
		t.Fatalf("withdrawal: %d", r.status)
	}
	waitFindings(t, h, 1)
	if s := state(a.Info.ID); s != "active" {
		t.Fatalf("alert-only finding changed the token to %s", s)
	}

	// 1. The file now freezes on sensitive operations.
	write(head + "detect:\n  detectors:\n    sensitive_operations: {actions: [alert, freeze]}\n")
	waitFor("detect reloaded", func() bool {
		return slices.Contains(srv.Config().Detect.Detectors.SensitiveOperations.Actions, "freeze")
	})
	b := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{"binance"}})
	h.mustCall(t, b.Token, "binance", withdraw)
	waitFindings(t, h, 2)
	if s := state(b.Info.ID); s != "frozen" {
		t.Fatalf("after the reload a withdrawal attempt left the token %s, want frozen", s)
	}

	// 2. An invalid detect section keeps the running one.
	write(head + "detect:\n  detectors:\n    sensitive_operations: {actions: [alert, freeze], factor: 3}\n")
	waitFor("reload failure logged", func() bool { return strings.Contains(logBuf.String(), "not used by sensitive_operations") })
	c := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{"binance"}})
	h.mustCall(t, c.Token, "binance", withdraw)
	waitFindings(t, h, 3)
	if s := state(c.Info.ID); s != "frozen" {
		t.Fatalf("a bad file changed the running detectors: token %s", s)
	}

	// 3. Detection off; queue_size is restart-only.
	write(head + "detect:\n  enabled: false\n  queue_size: 100\n")
	waitFor("detection disabled", func() bool { return srv.Config().Detect.Enabled != nil && !*srv.Config().Detect.Enabled })
	if got := srv.RestartNeeded(); !slices.Equal(got, []string{"detect.queue_size"}) {
		t.Errorf("RestartNeeded = %v, want [detect.queue_size]", got)
	}
	d := h.mint(t, admin.CreateTokenRequest{Test: true, Venues: []string{"binance"}})
	h.mustCall(t, d.Token, "binance", withdraw)
	st, err := h.admin.DetectStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Stats.Enabled || st.Stats.Findings != 3 || state(d.Info.ID) != "active" {
		t.Fatalf("with detection off: %+v, token %s", st.Stats, state(d.Info.ID))
	}
}
