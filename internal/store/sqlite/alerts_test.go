package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// TestAlertDigestStore: items persist across a reopen of the file, come
// back oldest first per sink, and are removed up to a sequence number.
func TestAlertDigestStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keystile.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s := db.Alerts()
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	for i, sink := range []string{"mail", "mail", "hook", "mail"} {
		a := alert.Alert{ID: "alr_" + string(rune('a'+i)), Kind: alert.KindAlert, Time: t0.Add(time.Duration(i) * time.Minute),
			Detector: "detect.hours", Severity: alert.SeverityLow, Summary: "s", Count: 1, Evidence: []alert.Field{{Key: "k", Value: "v"}}}
		if err := s.AddDigest(ctx, sink, a); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s = db.Alerts()
	n, oldest, err := s.CountDigest(ctx, "mail")
	if err != nil || n != 3 || !oldest.Equal(t0) {
		t.Fatalf("count %d oldest %s err %v", n, oldest, err)
	}
	items, err := s.PendingDigest(ctx, "mail", 2)
	if err != nil || len(items) != 2 || items[0].Alert.ID != "alr_a" || items[1].Alert.ID != "alr_b" || items[0].Alert.Severity != alert.SeverityLow ||
		items[0].Alert.Evidence[0].Value != "v" || items[0].Seq >= items[1].Seq {
		t.Fatalf("pending %+v %v", items, err)
	}
	if err := s.DeleteDigest(ctx, "mail", items[1].Seq); err != nil {
		t.Fatal(err)
	}
	items, _ = s.PendingDigest(ctx, "mail", 0)
	if len(items) != 1 || items[0].Alert.ID != "alr_d" {
		t.Fatalf("after delete %+v", items)
	}
	if n, _, _ := s.CountDigest(ctx, "hook"); n != 1 {
		t.Fatalf("other sink touched: %d", n)
	}
	if n, oldest, err := s.CountDigest(ctx, "none"); n != 0 || !oldest.IsZero() || err != nil {
		t.Fatalf("empty sink %d %s %v", n, oldest, err)
	}
}

func TestAlertDigestBound(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a sink to its bound")
	}
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "keystile.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	tx, err := db.SQL().BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range alert.MaxDigestItems {
		if _, err := tx.ExecContext(ctx, `INSERT INTO alert_digest (sink, created_at, alert) VALUES ('s', ?, '{}')`, i); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	if err := db.Alerts().AddDigest(ctx, "s", alert.Alert{Severity: alert.SeverityLow, Count: 1}); !errors.Is(err, alert.ErrDigestFull) {
		t.Fatalf("over the bound: %v", err)
	}
}
