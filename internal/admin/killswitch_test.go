package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// startKill serves the kill switch endpoints on a real switch and
// database.
func startKill(t *testing.T) (*Client, *killswitch.Switch) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ks, err := killswitch.New(ctx, killswitch.Options{Store: db.Trips()})
	if err != nil {
		t.Fatal(err)
	}
	_, c := start(t, Options{Extra: func(mux *http.ServeMux) {
		KillSwitchRoutes(mux, ks, func(v string) bool { return v == "kraken" || v == "binance" }, nil)
	}})
	return c, ks
}

func TestPanicAndClear(t *testing.T) {
	ctx := context.Background()
	c, ks := startKill(t)
	if st, err := c.KillSwitch(ctx); err != nil || st.Engaged || len(st.Trips) != 0 {
		t.Fatalf("status: %+v %v", st, err)
	}
	var ae *APIError
	if _, err := c.Panic(ctx, PanicRequest{}); !errors.As(err, &ae) || ae.Status != 400 || !strings.Contains(ae.Message, "reason") {
		t.Fatalf("panic without a reason: %v", err)
	}
	res, err := c.Panic(ctx, PanicRequest{Reason: "bot went rogue"})
	if err != nil || !res.Engaged.New || res.Engaged.Trip.Scope != killswitch.ScopeAll || len(res.Cancel) != 0 {
		t.Fatalf("panic: %+v %v", res, err)
	}
	if want := fmt.Sprintf("admin uid=%d", os.Getuid()); res.Engaged.Trip.Actor != want {
		t.Fatalf("actor %q, want %q", res.Engaged.Trip.Actor, want)
	}
	if _, err := c.Panic(ctx, PanicRequest{Reason: "one venue", Venue: "kraken"}); err != nil {
		t.Fatal(err)
	}
	if !ks.Covers("tok_a", "binance") {
		t.Fatal("not engaged")
	}
	// A venue that is not configured is refused, not "frozen".
	if _, err := c.Panic(ctx, PanicRequest{Reason: "typo", Venue: "krakn"}); !errors.As(err, &ae) || ae.Status != 404 {
		t.Fatalf("panic on an unknown venue: %v", err)
	}
	// --cancel-orders with no venue served here: engaged, the reports empty.
	res, err = c.Panic(ctx, PanicRequest{Reason: "again", Venue: "binance", CancelOrders: true})
	if err != nil || res.CancelError == "" || len(res.Cancel) != 0 {
		t.Fatalf("cancel without served venues: %+v %v", res, err)
	}
	if st, _ := c.KillSwitch(ctx); !st.Engaged || len(st.Trips) != 3 {
		t.Fatalf("status: %+v", st)
	}

	for _, bad := range []ClearRequest{
		{Reason: ""},
		{Reason: "x", Venue: "kraken", Token: "tok_a"},
		{Reason: "x", Token: "kst_live_abc"},
	} {
		if _, err := c.PanicClear(ctx, bad); !errors.As(err, &ae) || ae.Status != 400 {
			t.Errorf("clear %+v: %v", bad, err)
		}
	}
	cl, err := c.PanicClear(ctx, ClearRequest{Reason: "venue checked", Venue: "kraken"})
	if err != nil || len(cl.Cleared) != 1 || cl.Cleared[0].Target != "kraken" {
		t.Fatalf("clear one venue: %+v %v", cl, err)
	}
	cl, err = c.PanicClear(ctx, ClearRequest{Reason: "all clear"})
	if err != nil || len(cl.Cleared) != 2 || ks.Engaged() {
		t.Fatalf("clear all: %+v %v, engaged %v", cl, err, ks.Engaged())
	}
}
