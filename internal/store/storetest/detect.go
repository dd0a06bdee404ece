package storetest

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/detect"
)

// Detect runs the detect.ProfileStore and detect.HoldStore contracts on
// a store from open (a fresh database): upserts replace, deletes remove
// (absent keys too), and a hold of an unknown kind is refused.
func Detect[S interface {
	detect.ProfileStore
	detect.HoldStore
}](t *testing.T, open func(t *testing.T) S) {
	ctx := context.Background()
	s := open(t)
	if p, err := s.Profiles(ctx); err != nil || len(p) != 0 {
		t.Fatalf("empty profiles: %+v %v", p, err)
	}
	if h, err := s.Holds(ctx); err != nil || len(h) != 0 {
		t.Fatalf("empty holds: %+v %v", h, err)
	}
	at := time.Date(2026, 3, 2, 10, 0, 0, 123, time.UTC)
	put := []detect.StoredProfile{
		{Key: "token:tok_a", Data: []byte(`{"key":"token:tok_a"}`), Updated: at},
		{Key: "admin", Data: []byte(`{"key":"admin"}`), Updated: at},
		{Key: "token:tok_b", Data: []byte(`{"key":"token:tok_b"}`), Updated: at},
	}
	if err := s.SaveProfiles(ctx, put, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveProfiles(ctx, []detect.StoredProfile{{Key: "token:tok_a", Data: []byte(`{"key":"token:tok_a","requests":3}`), Updated: at.Add(time.Second)}},
		[]string{"admin", "token:absent"}); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveProfiles(ctx, nil, nil); err != nil {
		t.Fatal(err)
	}
	profiles, err := s.Profiles(ctx)
	want := []detect.StoredProfile{
		{Key: "token:tok_a", Data: []byte(`{"key":"token:tok_a","requests":3}`), Updated: at.Add(time.Second)},
		{Key: "token:tok_b", Data: []byte(`{"key":"token:tok_b"}`), Updated: at},
	}
	if err != nil || !reflect.DeepEqual(profiles, want) {
		t.Fatalf("profiles %+v, %v\nwant %+v", profiles, err, want)
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
	if err := s.PutHold(ctx, detect.Hold{Kind: detect.HoldThrottle, Subject: ""}); err == nil {
		t.Fatal("a hold without a subject was stored")
	}
	holds, err := s.Holds(ctx)
	if err != nil || !reflect.DeepEqual(holds, []detect.Hold{venue, throttle}) {
		t.Fatalf("holds %+v, %v", holds, err)
	}
}
