package token_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/token"
)

func ExampleService() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "keystile-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	db, err := sqlite.Open(ctx, filepath.Join(dir, "keystile.db"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer db.Close()

	svc, err := token.New(ctx, token.Options{Store: db.Tokens()})
	if err != nil {
		fmt.Println(err)
		return
	}
	// The raw token is shown once; hand it to the bot.
	raw, tok, err := svc.Create(ctx, token.CreateRequest{Name: "grid-bot", Venues: []string{"binance"}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("secret prints as", raw)

	// On every request the gateway verifies it.
	req := token.VerifyRequest{Venue: "binance", Source: netip.MustParseAddr("127.0.0.1")}
	got, err := svc.Verify(ctx, string(raw.Reveal()), req)
	fmt.Println(err == nil, got.ID == tok.ID, got.Allows("order.place"), got.Allows("wallet.withdraw"))

	_ = svc.Revoke(ctx, tok.ID)
	_, err = svc.Verify(ctx, string(raw.Reveal()), req)
	fmt.Println(errors.Is(err, token.ErrRevoked))
	// Output:
	// secret prints as REDACTED
	// true true true false
	// true
}
