package policy

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/keystile/keystile/internal/config"
)

// WatchOptions configure Watch.
type WatchOptions struct {
	// Path is the configuration file. Required.
	Path string
	// Engine receives each Set that compiles. Required.
	Engine *Engine
	// Signals delivers SIGHUP (the caller calls signal.Notify); each value
	// forces a reload. May be nil.
	Signals <-chan os.Signal
	// Interval is how often the file is polled for changes (modification
	// time, size, then content hash). Default 1s.
	Interval time.Duration
	// Logger receives "policy reloaded" and the errors of bad files. If
	// nil, nothing is logged.
	Logger *slog.Logger
	// OnReload, if set, is called after every reload attempt with the new
	// Set or the error that kept the old one.
	OnReload func(*Set, error)
	// Load reads and compiles the file. Default LoadFile.
	Load func(path string) (*Set, error)
}

// LoadFile reads and validates the configuration file at path and compiles
// its policies.
func LoadFile(path string) (*Set, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	return Compile(cfg)
}

type fileState struct {
	mod  time.Time
	size int64
	hash [32]byte
	ok   bool
}

func statFile(path string, prev fileState) fileState {
	fi, err := os.Stat(path)
	if err != nil {
		return fileState{}
	}
	st := fileState{mod: fi.ModTime(), size: fi.Size(), ok: true}
	if prev.ok && st.mod.Equal(prev.mod) && st.size == prev.size {
		st.hash = prev.hash
		return st
	}
	b, err := os.ReadFile(path) // #nosec G304 -- the operator's own config file
	if err != nil {
		return fileState{}
	}
	st.hash = sha256.Sum256(b)
	return st
}

// Watch reloads the policies into o.Engine when a signal arrives on
// o.Signals and when the file's content changes, until ctx is done. It
// loads the file once as it starts (so a change made after the caller's
// own load is not missed; OnReload sees that load too). A file that fails to load or compile leaves the old Set in place; the
// error is logged and passed to OnReload. Watch returns nil when ctx ends,
// or an error for invalid options.
func Watch(ctx context.Context, o WatchOptions) error {
	if o.Path == "" || o.Engine == nil {
		return errors.New("policy: watch: Path and Engine are required")
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Load == nil {
		o.Load = LoadFile
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	last := statFile(o.Path, fileState{})
	reload := func(why string) {
		s, err := o.Load(o.Path)
		if err != nil {
			log.Error("reload failed; keeping the running venues and policies", "file", o.Path, "trigger", why, "err", err)
		} else {
			o.Engine.Load(s)
			log.Info("policy: reloaded", "file", o.Path, "trigger", why, "policies", len(s.policies))
		}
		if o.OnReload != nil {
			o.OnReload(s, err)
		}
	}
	// Load once at start, after taking the file's state: a change made
	// between the caller's own load and this point is not missed.
	reload("start")
	tick := time.NewTicker(o.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-o.Signals:
			last = statFile(o.Path, fileState{})
			reload("signal")
		case <-tick.C:
			cur := statFile(o.Path, last)
			if !cur.ok || (last.ok && cur.hash == last.hash) {
				if cur.ok {
					last = cur
				}
				continue
			}
			last = cur
			reload("file change")
		}
	}
}
