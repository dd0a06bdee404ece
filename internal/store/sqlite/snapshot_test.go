package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/keystile/keystile/internal/store/sqlite"
	"github.com/keystile/keystile/internal/store/storetest"
)

// TestSnapshotWhileWriting: snapshots taken while tokens are being
// written are consistent databases holding a prefix of the writes (every
// token the writer had committed when the snapshot began, no torn one),
// 0600, and a snapshot never overwrites a file.
func TestSnapshotWhileWriting(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	src := filepath.Join(dir, "k.db")
	db, err := sqlite.Open(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var written atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := db.Tokens().Create(ctx, storetest.TokenRecord(fmt.Sprintf("tok_%05d", i))); err != nil {
				t.Error(err)
				return
			}
			written.Store(int64(i + 1))
		}
	}()
	for n := range 5 {
		before := written.Load()
		dst := filepath.Join(dir, fmt.Sprintf("snap-%d.db", n))
		if err := sqlite.Snapshot(ctx, src, dst); err != nil {
			t.Fatal(err)
		}
		after := written.Load()
		fi, err := os.Stat(dst)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("snapshot file: %v %v", fi, err)
		}
		snap, err := sqlite.Open(ctx, dst)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := snap.Tokens().All(ctx)
		_ = snap.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := int64(len(recs)); got < before || got > after+1 {
			t.Fatalf("snapshot %d holds %d tokens; %d were committed before it began, %d after", n, got, before, after)
		}
		for i, r := range recs {
			if want := fmt.Sprintf("tok_%05d", i); string(r.ID) != want {
				t.Fatalf("snapshot %d: token %d is %s, want %s (not a prefix)", n, i, r.ID, want)
			}
		}
	}
	close(stop)
	wg.Wait()
	existing := filepath.Join(dir, "snap-0.db")
	if err := sqlite.Snapshot(ctx, src, existing); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("snapshot over an existing file: %v", err)
	}
	if err := sqlite.Snapshot(ctx, filepath.Join(dir, "missing.db"), filepath.Join(dir, "x.db")); err == nil {
		t.Fatal("snapshot of a missing database")
	}
}
