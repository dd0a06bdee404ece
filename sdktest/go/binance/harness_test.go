package binance

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/app"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/sandbox"
)

// setup is keystile serve (in process) with the forward proxy in front of
// the sandbox's Binance emulator, configured the way `keystile sandbox
// --configure` plus proxy_hosts configures it: the SDK dials
// api.binance.com and reaches the sandbox.
type setup struct {
	proxyAddr string // the forward proxy, host:port
	caFile    string // the exported local CA (keystile ca export)
	token     string // a kst_test_ token for the venue "binance"
	sb        *sandbox.Server
	received  func() []sandbox.Received
}

// configYAML is the test's keystile.yaml: one Binance venue on the
// sandbox, reached through proxy_hosts, and a policy that caps orders.
const configYAML = `gateway:
  listen: 127.0.0.1:0
proxy:
  listen: 127.0.0.1:0
venues:
  binance:
    type: binance
    credential: sandbox-binance
    base_url: %s
    sandbox: true
    proxy_hosts: [api.binance.com]
    tls:
      ca_file: %q
policies:
  sdk:
    operations: ["market.read", "account.read", "order.*"]
    max_quantity: "1"
`

func start(t *testing.T) *setup {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var got recorder
	sb, err := sandbox.Start(context.Background(), sandbox.Options{TLS: true, Venues: []string{sandbox.VenueBinance}, Received: got.add})
	if err != nil {
		cancel()
		t.Fatalf("sandbox: %v", err)
	}
	t.Cleanup(func() { _ = sb.Close() })
	info := sb.Info()
	tmp := t.TempDir()
	dataDir := filepath.Join(tmp, "data")
	if _, err := app.Init(ctx, app.Env{}, app.InitOptions{DataDir: dataDir}); err != nil {
		cancel()
		t.Fatalf("keystile init: %v", err)
	}
	sbCA := filepath.Join(tmp, "sandbox-ca.pem")
	if err := os.WriteFile(sbCA, sb.CAPEM(), 0o600); err != nil {
		cancel()
		t.Fatal(err)
	}
	cfg, err := config.Parse("sdk.yaml", fmt.Appendf(nil, configYAML, info.Venues[sandbox.VenueBinance].BaseURL, sbCA))
	if err != nil {
		cancel()
		t.Fatalf("config: %v", err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := app.NewServer(ctx, app.Env{}, app.ServerOptions{DataDir: dataDir, Config: cfg, Logger: log})
	if err != nil {
		cancel()
		t.Fatalf("keystile serve: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("serve did not stop")
		}
	})
	adm, err := admin.NewClient(filepath.Join(dataDir, app.SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	fields := map[string][]byte{}
	for k, v := range info.Venues[sandbox.VenueBinance].Credentials {
		fields[k] = []byte(v)
	}
	if _, err := adm.SetSecret(ctx, "sandbox-binance", admin.SetSecretRequest{Fields: fields}); err != nil {
		t.Fatalf("secret set: %v", err)
	}
	m, err := adm.CreateToken(ctx, admin.CreateTokenRequest{Name: "go-binance", Policy: "sdk", Venues: []string{"binance"},
		Scopes: []string{"market.read", "account.read", "order.*"}, Test: true, CIDRs: []string{"127.0.0.1/32", "::1/128"}, TTL: time.Hour})
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	ca, err := adm.CA(ctx)
	if err != nil {
		t.Fatalf("ca export: %v", err)
	}
	caFile := filepath.Join(tmp, "keystile-ca.pem")
	if err := os.WriteFile(caFile, []byte(ca.PEM), 0o600); err != nil {
		t.Fatal(err)
	}
	return &setup{proxyAddr: srv.ProxyAddr(), caFile: caFile, token: m.Token, sb: sb, received: got.all}
}
