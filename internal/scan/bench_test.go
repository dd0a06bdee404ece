package scan_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/zricethezav/gitleaks/v8/detect"
	glog "github.com/zricethezav/gitleaks/v8/logging"
	"github.com/zricethezav/gitleaks/v8/sources"

	"github.com/rs/zerolog"

	"github.com/keystile/keystile/internal/scan"
)

// benchTree generates a tree of source-like text files totalling
// KEYSTILE_SCAN_BENCH_MB megabytes (default 4; the full run uses 200), with
// a planted token every few hundred lines.
func benchTree(b *testing.B) (string, []string, int64) {
	b.Helper()
	mb := 4
	if v := os.Getenv("KEYSTILE_SCAN_BENCH_MB"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 || n > 4096 {
			b.Fatalf("KEYSTILE_SCAN_BENCH_MB=%q", v)
		}
		mb = n
	}
	dir := b.TempDir()
	rng := rand.New(rand.NewPCG(1, 2)) // #nosec G404 -- test data
	words := []string{"func", "return", "order", "price", "quantity", "market", "if", "err", "nil", "ctx", "config", "venue", "client", "request", "=", ":=", "(", ")", "{", "}", "\"binance\"", "0.001", "42"}
	const fileSize = 256 << 10
	var total int64
	var files []string
	for i := 0; total < int64(mb)<<20; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("pkg%03d", i/50))
		if err := os.MkdirAll(sub, 0o750); err != nil {
			b.Fatal(err)
		}
		buf := make([]byte, 0, fileSize+256)
		line := 0
		for len(buf) < fileSize {
			line++
			if line%500 == 0 {
				buf = append(buf, "token := \"kst_live_Wo6QcJrnqWtgLeQ5c8kVhXE1TIqAsVaczUmRfRbdifV4EC7oa\"\n"...)
				continue
			}
			n := 4 + rng.IntN(10)
			for w := 0; w < n; w++ {
				buf = append(buf, words[rng.IntN(len(words))]...)
				buf = append(buf, ' ')
			}
			buf = append(buf, '\n')
		}
		p := filepath.Join(sub, fmt.Sprintf("f%05d.go", i))
		if err := os.WriteFile(p, buf, 0o600); err != nil {
			b.Fatal(err)
		}
		files = append(files, p)
		total += int64(len(buf))
	}
	return dir, files, total
}

// BenchmarkScanTree reports MB/s of the full scanner (three detectors,
// test vault) next to gitleaks' detector alone on the same files with the
// same parallelism.
func BenchmarkScanTree(b *testing.B) {
	dir, files, total := benchTree(b)
	ctx := context.Background()
	b.Run("keystile", func(b *testing.B) {
		s, err := scan.New(ctx, scan.Options{Vault: newTestVault(b)})
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(total)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			rep, err := s.ScanPaths(ctx, []string{dir})
			if err != nil {
				b.Fatal(err)
			}
			if len(rep.Findings) == 0 {
				b.Fatal("no findings")
			}
		}
	})
	b.Run("gitleaks-alone", func(b *testing.B) {
		glog.Logger = zerolog.Nop()
		d, err := detect.NewDetectorDefaultConfig()
		if err != nil {
			b.Fatal(err)
		}
		b.SetBytes(total)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			ch := make(chan string)
			var wg sync.WaitGroup
			for w := 0; w < runtime.GOMAXPROCS(0); w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for p := range ch {
						data, err := os.ReadFile(p) // #nosec G304 -- generated test file
						if err != nil {
							b.Error(err)
							return
						}
						//lint:ignore SA1019 gitleaks v8's DetectContext takes only this type
						d.DetectContext(ctx, detect.Fragment(sources.Fragment{Raw: string(data), FilePath: filepath.ToSlash(p), StartLine: 1}))
					}
				}()
			}
			for _, p := range files {
				ch <- p
			}
			close(ch)
			wg.Wait()
		}
	})
}
