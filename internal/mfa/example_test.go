package mfa_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/keystile/keystile/internal/mfa"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/vault"
)

// Example enrols a second factor, checks a code, refuses its replay and
// opens an admin session, on a real SQLite database and vault.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "mfa-example")
	defer os.RemoveAll(dir)
	db, _ := sqlite.Open(ctx, filepath.Join(dir, "keystile.db"))
	defer db.Close()
	root := make([]byte, 32)
	_, _ = rand.Read(root)
	_ = vault.Initialize(ctx, db.Vault(), secret.New(append([]byte(nil), root...)), nil, time.Now())
	v, _ := vault.Open(ctx, vault.Options{Store: db.Vault(), RootKey: secret.New(root)})
	defer v.Close(ctx)

	now := time.Date(2025, 3, 4, 10, 0, 10, 0, time.UTC)
	m, _ := mfa.New(mfa.Options{Store: db.MFA(), Secrets: v, Now: func() time.Time { return now }})
	at := mfa.Attempt{Principal: "uid:1000", Action: "secret.set"}

	// The CLI makes the secret and recovery codes, shows them once and
	// sends them to the server; the enrolment is active after a first code.
	sec, _ := mfa.NewSecret(nil)
	codes, _ := mfa.NewRecoveryCodes(nil, mfa.DefaultRecoveryCodes)
	_ = m.BeginEnrollment(ctx, sec.Clone(), codes, at)
	first, _ := mfa.CodeAt(sec, now)
	fmt.Println("confirm:", m.ConfirmEnrollment(ctx, first, at))

	now = now.Add(mfa.Period)
	code, _ := mfa.CodeAt(sec, now)
	method, err := m.Authorize(ctx, mfa.Credentials{Code: code}, at)
	fmt.Println("code:", method, err)
	_, err = m.Authorize(ctx, mfa.Credentials{Code: code}, at)
	fmt.Println("replay:", err)
	method, _ = m.Authorize(ctx, mfa.Credentials{Code: codes[0]}, at)
	fmt.Println("recovery code:", method)

	now = now.Add(mfa.Period)
	code, _ = mfa.CodeAt(sec, now)
	s, _ := m.Login(ctx, code, at)
	method, _ = m.Authorize(ctx, mfa.Credentials{Session: s.Token}, at)
	fmt.Println("session:", method, s.Expires.Sub(now))
	// Output:
	// confirm: <nil>
	// code: totp <nil>
	// replay: mfa: the code was already used; wait for the next one
	// recovery code: recovery_code
	// session: session 5m0s
}

func ExampleParseCode() {
	for _, in := range []string{"123 456", "ABCD-EFGH-JKMN", "12345"} {
		c, err := mfa.ParseCode(in)
		fmt.Println(c.Kind() == mfa.KindTOTP, c.Kind() == mfa.KindRecovery, err != nil)
	}
	// Output:
	// true false false
	// false true false
	// false false true
}
