package postgres_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/store/postgres"
	"github.com/keystile/keystile/internal/store/storetest"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/vault"
)

// TestStoreErrorsKeepThePasswordOut: with a password in the DSN, the
// errors every store returns once the pool is gone never quote it.
func TestStoreErrorsKeepThePasswordOut(t *testing.T) {
	const canary = "CANARYpgcore31f0c9"
	u, err := url.Parse(testDSN(t))
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), canary) // trust auth ignores it
	ctx := context.Background()
	db, err := postgres.Open(ctx, postgres.Options{DSN: u.String(), Migrate: true})
	if err != nil {
		if strings.Contains(err.Error(), canary) {
			t.Fatalf("Open quotes the password: %v", err)
		}
		t.Skipf("the server refuses a password in the DSN: %v", err)
	}
	_ = db.Close()
	now := time.Now()
	calls := map[string]func() error{
		"version":       func() error { _, err := db.Version(ctx, postgres.TopicTokens); return err },
		"vault init":    func() error { return db.Vault().Init(ctx, nil, vault.KEKRecord{Version: 1}, nil) },
		"vault read":    func() error { _, err := db.Vault().Credential(ctx, "c"); return err },
		"vault keyring": func() error { _, _, err := db.Vault().Keyring(ctx); return err },
		"token create":  func() error { return db.Tokens().Create(ctx, storetest.TokenRecord("tok_a")) },
		"token all":     func() error { _, err := db.Tokens().All(ctx); return err },
		"token touch":   func() error { return db.Tokens().TouchUsed(ctx, map[token.ID]time.Time{"tok_a": now}) },
		"nonce":         func() error { _, _, err := db.Nonces().Reserve(ctx, "k", 1, 1); return err },
		"mfa":           func() error { _, err := db.MFA().Update(ctx, func(*mfa.State) error { return nil }); return err },
		"alerts":        func() error { return db.Alerts().AddDigest(ctx, "s", alert.Alert{}) },
		"trips": func() error {
			_, _, err := db.Trips().Engage(ctx, killswitch.Trip{Scope: killswitch.ScopeAll})
			return err
		},
		"ledger": func() error { _, err := db.LossLedger().Sum(ctx, "k", now); return err },
		"detect": func() error { return db.Detect().PutHold(ctx, detect.Hold{Kind: detect.HoldThrottle, Subject: "s"}) },
	}
	for name, call := range calls {
		err := call()
		if err == nil {
			t.Errorf("%s on a closed pool succeeded", name)
			continue
		}
		if strings.Contains(err.Error(), canary) {
			t.Errorf("%s: the error quotes the password: %v", name, err)
		}
	}
}
