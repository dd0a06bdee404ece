package app

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/logging"
)

// TestServeSurvivesSIGHUPWithoutConfig: systemctl reload sends SIGHUP.
// Without a config file serve has nothing to reload, and must keep
// serving rather than take Go's default for SIGHUP (exit).
func TestServeSurvivesSIGHUPWithoutConfig(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	base, err := os.MkdirTemp("", "hup")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(base)
	dir := filepath.Join(base, "d")
	if _, err := Init(ctx, Env{}, InitOptions{DataDir: dir}); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Gateway.Listen = "127.0.0.1:0"
	var logs strings.Builder
	var mu sync.Mutex
	lw := writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logs.Write(p) })
	srv, err := NewServer(ctx, Env{}, ServerOptions{DataDir: dir, Config: cfg, Logger: logging.New(lw, logging.Options{})})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	// "serving" is logged once the signal handlers are in place.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		ok := strings.Contains(logs.String(), "keystile: serving")
		mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server never logged serving")
		}
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		t.Fatalf("serve stopped on SIGHUP: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	c, err := admin.NewClient(filepath.Join(dir, SocketFile))
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx)
	if err != nil || st.PID != os.Getpid() || st.Config != "" {
		t.Fatalf("status after SIGHUP: %+v %v", st, err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
