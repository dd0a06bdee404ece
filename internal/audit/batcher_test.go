package audit_test

import (
	"slices"
	"testing"

	"github.com/keystile/keystile/internal/audit"
)

// TestBatcher: batches hold at most Max records (one more when kept
// records and a fresh one meet in a batch of Max 1); a failed batch's
// records (kept by the commit) come back in a later batch; what is
// written plus what is left kept when Run returns is every record once.
func TestBatcher(t *testing.T) {
	for _, max := range []int{1, 3, 64} {
		q := make(chan int, 100)
		for i := 1; i <= 20; i++ {
			q <- i
		}
		close(q)
		var kept audit.Retained[int]
		b := audit.Batcher[int]{Queue: q, Max: max, Kept: &kept, Waited: func(int) bool { return false }}
		var written []int
		calls, failures := 0, 0
		b.Run(func(batch *[]int, open bool) bool {
			calls++
			if len(*batch) > max+1 || (len(*batch) > max && kept.Len() > 0) {
				t.Errorf("max %d: batch of %d", max, len(*batch))
			}
			if calls%3 == 1 { // every third batch fails
				failures++
				kept.Keep(slices.Clone(*batch))
				return open
			}
			written = append(written, *batch...)
			return open
		})
		left := kept.Drain()
		slices.Sort(written)
		if len(written)+left != 20 || len(slices.Compact(slices.Clone(written))) != len(written) {
			t.Fatalf("max %d: wrote %v, %d left kept after %d calls (%d failed)", max, written, left, calls, failures)
		}
		t.Logf("max %d: %d batches, %d failed, %d written, %d left at close", max, calls, failures, len(written), left)
	}
}
