package storetest

import (
	"context"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/alert"
)

// AlertDigests runs the alert.DigestStore contract on a store from open
// (a fresh database). The bound (alert.MaxDigestItems) is left to the
// backends' own tests, which can fill a sink faster than the interface.
func AlertDigests(t *testing.T, open func(t *testing.T) alert.DigestStore) {
	ctx := context.Background()
	s := open(t)
	t0 := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	var mail []alert.Alert
	for i, sink := range []string{"mail", "mail", "hook", "mail"} {
		a := alert.Alert{ID: "alr_" + string(rune('a'+i)), Kind: alert.KindAlert, Time: t0.Add(time.Duration(i) * time.Minute),
			Detector: "detect.hours", Severity: alert.SeverityLow, Summary: "s", Count: 1, Evidence: []alert.Field{{Key: "k", Value: "v"}}}
		if err := s.AddDigest(ctx, sink, a); err != nil {
			t.Fatal(err)
		}
		if sink == "mail" {
			mail = append(mail, a)
		}
	}
	n, oldest, err := s.CountDigest(ctx, "mail")
	if err != nil || n != 3 || !oldest.Equal(t0) {
		t.Fatalf("count %d oldest %s err %v", n, oldest, err)
	}
	items, err := s.PendingDigest(ctx, "mail", 2)
	if err != nil || len(items) != 2 || items[0].Seq >= items[1].Seq {
		t.Fatalf("pending %+v %v", items, err)
	}
	for i, it := range items {
		want := mail[i]
		if !it.Alert.Time.Equal(want.Time) || !reflect.DeepEqual(it.Alert.Evidence, want.Evidence) {
			t.Fatalf("item %d = %+v, want %+v", i, it.Alert, want)
		}
		it.Alert.Time, want.Time = time.Time{}, time.Time{}
		if !reflect.DeepEqual(it.Alert, want) {
			t.Fatalf("item %d = %+v, want %+v", i, it.Alert, want)
		}
	}
	if err := s.DeleteDigest(ctx, "mail", items[1].Seq); err != nil {
		t.Fatal(err)
	}
	items, err = s.PendingDigest(ctx, "mail", 0)
	if err != nil || len(items) != 1 || items[0].Alert.ID != "alr_d" {
		t.Fatalf("after delete %+v %v", items, err)
	}
	if n, oldest, _ := s.CountDigest(ctx, "mail"); n != 1 || !oldest.Equal(t0.Add(3*time.Minute)) {
		t.Fatalf("after delete: count %d oldest %s", n, oldest)
	}
	if n, _, _ := s.CountDigest(ctx, "hook"); n != 1 {
		t.Fatalf("other sink touched: %d", n)
	}
	if n, oldest, err := s.CountDigest(ctx, "none"); n != 0 || !oldest.IsZero() || err != nil {
		t.Fatalf("empty sink %d %s %v", n, oldest, err)
	}
	if items, err := s.PendingDigest(ctx, "none", 5); err != nil || len(items) != 0 {
		t.Fatalf("empty sink pending %+v %v", items, err)
	}

	// Concurrent adds each get their own, increasing sequence number.
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.AddDigest(ctx, "burst", alert.Alert{ID: "alr_burst", Time: t0.Add(time.Duration(i) * time.Second), Severity: alert.SeverityLow, Count: 1}); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	items, err = s.PendingDigest(ctx, "burst", 0)
	if err != nil || len(items) != 20 {
		t.Fatalf("burst: %d items, %v", len(items), err)
	}
	for i := 1; i < len(items); i++ {
		if items[i].Seq <= items[i-1].Seq {
			t.Fatalf("burst items out of order: %d after %d", items[i].Seq, items[i-1].Seq)
		}
	}
}
