package postgres_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/keystile/keystile/internal/alert"
)

// TestAlertDigestBoundAcrossReplicas: a sink one item short of its bound
// takes exactly one more item when replicas add at once; the others are
// refused with ErrDigestFull.
func TestAlertDigestBoundAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	dbs := replicaPools(t, 3)
	rows := make([][]any, alert.MaxDigestItems-1)
	for i := range rows {
		rows[i] = []any{"s", int64(i), "{}"}
	}
	if _, err := dbs[0].Pool().CopyFrom(ctx, pgx.Identifier{"alert_digest"}, []string{"sink", "created_at", "alert"}, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	var added, full atomic.Int64
	var wg sync.WaitGroup
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := dbs[i%len(dbs)].Alerts().AddDigest(ctx, "s", alert.Alert{Severity: alert.SeverityLow, Count: 1})
			switch {
			case err == nil:
				added.Add(1)
			case errors.Is(err, alert.ErrDigestFull):
				full.Add(1)
			default:
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if added.Load() != 1 || full.Load() != 11 {
		t.Fatalf("%d added, %d refused; want 1 and 11", added.Load(), full.Load())
	}
	if n, _, err := dbs[1].Alerts().CountDigest(ctx, "s"); err != nil || n != alert.MaxDigestItems {
		t.Fatalf("count %d, %v; want %d", n, err, alert.MaxDigestItems)
	}
	// Another sink is not bounded by this one.
	if err := dbs[2].Alerts().AddDigest(ctx, "other", alert.Alert{Severity: alert.SeverityLow, Count: 1}); err != nil {
		t.Fatal(err)
	}
}
