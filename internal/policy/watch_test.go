package policy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/policy"
)

type reload struct {
	set *policy.Set
	err error
}

func TestWatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "keystile.yaml")
	write := func(policies string) {
		t.Helper()
		// Write then rename: the watcher never sees half a file.
		tmp := path + ".tmp"
		if err := os.WriteFile(tmp, []byte(venuesYAML+policies), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, path); err != nil {
			t.Fatal(err)
		}
	}
	write("policies:\n  p:\n    sides: [buy]\n")
	first, err := policy.LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	e := policy.New(policy.Options{})
	e.Load(first)
	reloads := make(chan reload, 10)
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- policy.Watch(ctx, policy.WatchOptions{Path: path, Engine: e, Signals: hup, Interval: 20 * time.Millisecond,
			OnReload: func(s *policy.Set, err error) { reloads <- reload{s, err} }})
	}()
	next := func() reload {
		t.Helper()
		select {
		case r := <-reloads:
			return r
		case <-time.After(5 * time.Second):
			t.Fatal("no reload")
			return reload{}
		}
	}
	side := func() string {
		d := e.Evaluate(context.Background(), orderInput("p"))
		if d.Allow {
			return "buy allowed"
		}
		return d.Rule
	}
	// Watch loads the file once as it starts.
	if r := next(); r.err != nil || r.set == nil {
		t.Fatalf("initial load: %+v", r)
	}
	if side() != "buy allowed" {
		t.Fatalf("initial: %s", side())
	}
	// A good change is picked up and swapped in.
	write("policies:\n  p:\n    sides: [sell]\n")
	if r := next(); r.err != nil || r.set == nil {
		t.Fatalf("good reload: %+v", r)
	}
	if side() != "policy.p.side" {
		t.Fatalf("after reload: %s", side())
	}
	// A bad file keeps the old Set and says why, with its position.
	write("policies:\n  p:\n    sides: [sideways]\n")
	r := next()
	if r.err == nil || r.set != nil {
		t.Fatalf("bad reload: %+v", r)
	}
	es := config.Errors(r.err)
	if len(es) != 1 || es[0].Key != "policies.p.sides[0]" || es[0].Line != 12 || !strings.Contains(r.err.Error(), "keystile.yaml:12:13: ") {
		t.Fatalf("bad reload error: %v", r.err)
	}
	if side() != "policy.p.side" {
		t.Fatalf("the old policy must stay: %s", side())
	}
	// A YAML syntax error too.
	write("policies:\n  p: [\n")
	if r := next(); r.err == nil {
		t.Fatal("syntax error accepted")
	}
	// SIGHUP reloads even when nothing changed since the last attempt.
	write("policies:\n  p:\n    sides: [buy]\n")
	if r := next(); r.err != nil {
		t.Fatal(r.err)
	}
	hup <- syscall.SIGHUP
	if r := next(); r.err != nil || r.set == nil {
		t.Fatalf("SIGHUP reload: %+v", r)
	}
	if side() != "buy allowed" {
		t.Fatalf("after SIGHUP: %s", side())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := policy.Watch(context.Background(), policy.WatchOptions{}); err == nil {
		t.Fatal("Watch without a path and engine")
	}
}
