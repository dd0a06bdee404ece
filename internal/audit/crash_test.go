package audit_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

const crashEnv = "KEYSTILE_AUDIT_CRASH_CHILD"

// TestCrashChild is the child of TestUncleanStop: it writes intents from
// several goroutines and prints each request id once Intent returned nil,
// until it is killed.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("only run as the child of TestUncleanStop")
	}
	kind, path, _ := strings.Cut(spec, ":")
	var b backend
	for _, c := range backends() {
		if c.name == kind {
			b = c
		}
	}
	ctx := context.Background()
	l, err := audit.Open(ctx, audit.Options{Store: b.open(t, path), Keys: testKeys(), CheckpointEvery: 100, MaxBatch: 32})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(3)
	}
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				e := event(w*1_000_000 + i)
				if err := l.Intent(ctx, e); err != nil {
					continue
				}
				l.Record(ctx, e)
				mu.Lock()
				out.WriteString(e.RequestID + "\n")
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// TestUncleanStop SIGKILLs a child mid-stream: every intent it was told
// is durable is in the log, the log verifies (no final checkpoint), and
// a new Log resumes the chain.
func TestUncleanStop(t *testing.T) {
	if testing.Short() {
		t.Skip("re-execs the test binary")
	}
	for _, b := range backends() {
		t.Run(b.name, func(t *testing.T) {
			path := b.file(t)
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), crashEnv+"="+b.name+":"+path)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			sc := bufio.NewScanner(stdout)
			acked := map[string]bool{}
			deadline := time.Now().Add(30 * time.Second)
			for sc.Scan() {
				acked[sc.Text()] = true
				if len(acked) == 1500 {
					if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
				}
				if time.Now().After(deadline) {
					cmd.Process.Kill()
					t.Fatal("child too slow")
				}
			}
			_ = cmd.Wait()
			if len(acked) < 1500 {
				t.Fatalf("child acknowledged only %d intents: %v", len(acked), acked)
			}
			rep, err := verify(t, b, path)
			if err != nil {
				t.Fatalf("verify after SIGKILL: %v", err)
			}
			r := b.reader(t, path)
			found := map[string]bool{}
			if err := r.Scan(context.Background(), 1, func(rec audit.Record) error {
				if rec.Kind == audit.KindIntent {
					found[rec.RequestID] = true
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			r.Close()
			for id := range acked {
				if !found[id] {
					t.Fatalf("intent %s acknowledged but not in the log", id)
				}
			}
			t.Logf("%s: %d intents acknowledged, %d records stored, last checkpoint %d, %d unsigned",
				b.name, len(acked), rep.Records, rep.LastCheckpointSeq, rep.Unsigned)
			writeLog(t, b.open(t, path), 100, 5)
			rep2, err := verify(t, b, path)
			if err != nil || rep2.Records != rep.Records+5 || rep2.Unsigned != 0 {
				t.Fatalf("after resume: %+v %v", rep2, err)
			}
		})
	}
}
