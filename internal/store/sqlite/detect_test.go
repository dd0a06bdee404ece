package sqlite_test

import (
	"context"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/store/sqlite"
)

// TestDetectStore: profiles and holds round-trip through a real database
// file and survive reopening it; upserts replace, deletes remove, and the
// schema refuses a hold of an unknown kind.
func TestDetectStore(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keystile.db")
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	s := db.Detect()
	at := time.Date(2026, 3, 2, 10, 0, 0, 123, time.UTC)
	put := []detect.StoredProfile{
		{Key: "token:tok_a", Data: []byte(`{"key":"token:tok_a"}`), Updated: at},
		{Key: "admin", Data: []byte(`{"key":"admin"}`), Updated: at},
	}
	if err := s.SaveProfiles(ctx, put, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveProfiles(ctx, []detect.StoredProfile{{Key: "token:tok_a", Data: []byte(`{"key":"token:tok_a","requests":3}`), Updated: at.Add(time.Second)}},
		[]string{"admin", "token:absent"}); err != nil {
		t.Fatal(err)
	}
	throttle := detect.Hold{Kind: detect.HoldThrottle, Subject: "tok_a", Since: at, Until: at.Add(15 * time.Minute),
		Requests: 6, Per: time.Minute, Detector: "order_size", Finding: "fnd_x"}
	venue := detect.Hold{Kind: detect.HoldFreezeVenue, Subject: "binance", Since: at, Detector: "venue_errors", Finding: "fnd_y"}
	for _, h := range []detect.Hold{throttle, venue, {Kind: detect.HoldFreezeCredential, Subject: "c", Since: at}} {
		if err := s.PutHold(ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	throttle.Until = at.Add(time.Hour)
	if err := s.PutHold(ctx, throttle); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteHold(ctx, detect.HoldFreezeCredential, "c"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteHold(ctx, detect.HoldFreezeCredential, "never"); err != nil {
		t.Fatalf("deleting an absent hold: %v", err)
	}
	if err := s.PutHold(ctx, detect.Hold{Kind: "revoke_everything", Subject: "x"}); err == nil {
		t.Fatal("a hold of an unknown kind was stored")
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	s = db.Detect()
	profiles, err := s.Profiles(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := []detect.StoredProfile{{Key: "token:tok_a", Data: []byte(`{"key":"token:tok_a","requests":3}`), Updated: at.Add(time.Second)}}
	if !reflect.DeepEqual(profiles, want) {
		t.Fatalf("profiles %+v, want %+v", profiles, want)
	}
	holds, err := s.Holds(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(holds, []detect.Hold{venue, throttle}) {
		t.Fatalf("holds %+v", holds)
	}
}
