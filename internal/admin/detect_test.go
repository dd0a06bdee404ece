package admin

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// TestDetectRoutes: status lists the holds stored; release lifts one
// (404 for none, 400 for an unknown kind); profiles answer 404 for a
// token nothing was learned about.
func TestDetectRoutes(t *testing.T) {
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "k.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	now := time.Now().UTC()
	for _, h := range []detect.Hold{
		{Kind: detect.HoldFreezeVenue, Subject: "binance", Since: now, Detector: "venue_errors", Finding: "fnd_a"},
		{Kind: detect.HoldThrottle, Subject: "tok_a", Since: now, Until: now.Add(time.Hour), Requests: 6, Per: time.Minute},
	} {
		if err := db.Detect().PutHold(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	s, err := detect.Compile(config.Default())
	if err != nil {
		t.Fatal(err)
	}
	d, err := detect.New(ctx, detect.Options{Settings: s, Holds: db.Detect(), Profiles: db.Detect(), SourceKey: []byte("0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(ctx) })
	_, c := start(t, Options{Extra: func(mux *http.ServeMux) { DetectRoutes(mux, d, nopLog{}) }})

	st, err := c.DetectStatus(ctx)
	if err != nil || len(st.Holds) != 2 || !st.Stats.Enabled || st.Stats.Detectors != 14 {
		t.Fatalf("status %+v, %v", st, err)
	}
	st, err = c.ReleaseHold(ctx, detect.HoldFreezeVenue, "binance")
	if err != nil || len(st.Holds) != 1 || st.Holds[0].Kind != detect.HoldThrottle {
		t.Fatalf("release: %+v, %v", st, err)
	}
	if holds, _ := db.Detect().Holds(ctx); len(holds) != 1 {
		t.Fatalf("release not stored: %+v", holds)
	}
	var api *APIError
	if _, err := c.ReleaseHold(ctx, detect.HoldFreezeVenue, "binance"); !errors.As(err, &api) || api.Status != http.StatusNotFound {
		t.Fatalf("second release: %v", err)
	}
	if _, err := c.ReleaseHold(ctx, "everything", "x"); !errors.As(err, &api) || api.Status != http.StatusBadRequest {
		t.Fatalf("unknown kind: %v", err)
	}
	if _, err := c.DetectProfile(ctx, "tok_never"); !errors.As(err, &api) || api.Status != http.StatusNotFound {
		t.Fatalf("profile of an unknown token: %v", err)
	}
}

type nopLog struct{}

func (nopLog) Warn(string, ...any) {}
