// Package fanout tells every gateway replica that shared state changed
// (tokens revoked, frozen or rotated, the kill switch, vault entries), so
// that each refreshes its in-memory copy from the store of record.
//
// Two sources feed a Watch: a fast Transport (Redis publish/subscribe,
// store/redis), and a VersionSource polled every PollInterval (PostgreSQL:
// a version per topic, bumped in the same transaction as the write). The
// transport gives sub-second propagation; the poll bounds it when a
// message is lost or Redis is down. A deployment with PostgreSQL and no
// Redis only polls.
//
// Security model: a replica that has not refreshed still enforces its
// previous state, so a revoked token may be accepted by another replica
// until that replica's next refresh: at most PollInterval plus the refresh
// time after the commit, and usually the transport's latency. Nothing
// secret crosses the transport, only topic names and version numbers.
package fanout

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// Topics the gateway announces; the refresh each calls for is the wiring's
// choice (package app).
const (
	TopicTokens     = "tokens"      // token revoked, frozen, rotated, created
	TopicKillSwitch = "kill_switch" // kill switch tripped or reset
	TopicVault      = "vault"       // vault entries added, rotated, removed
)

// VersionSource gives a topic's current version from the store of record.
// Any change of the number means the topic changed. Implementations are
// safe for concurrent use; an unknown topic has version 0.
type VersionSource interface {
	Version(ctx context.Context, topic string) (int64, error)
}

// Transport announces versions between replicas quickly but without
// guarantees. Implementations are safe for concurrent use.
type Transport interface {
	// Publish announces that topic changed.
	Publish(ctx context.Context, topic string) error
	// Subscribe calls fn, from one goroutine, with each version
	// announced on topic, until ctx is done; it then returns ctx.Err().
	// It reconnects by itself after failures, without spinning.
	Subscribe(ctx context.Context, topic string, fn func(version int64)) error
}

// Options configure New. At least one of Source and Transport is needed.
type Options struct {
	// Source is polled every PollInterval. If nil, only the transport
	// delivers changes.
	Source VersionSource
	// Transport delivers changes at once. If nil, Publish does nothing
	// and Watch only polls.
	Transport Transport
	// PollInterval is the time between polls of Source (0: 1 s).
	PollInterval time.Duration
	// Logger receives transport and source failures. If nil, nothing is
	// logged.
	Logger *slog.Logger
}

// Bus publishes and watches topics. It is safe for concurrent use.
type Bus struct {
	src   VersionSource
	tr    Transport
	every time.Duration
	log   *slog.Logger
}

// New returns a Bus.
func New(o Options) (*Bus, error) {
	if o.Source == nil && o.Transport == nil {
		return nil, errors.New("fanout: neither a version source nor a transport")
	}
	if o.PollInterval < 0 {
		return nil, errors.New("fanout: negative poll interval")
	}
	b := &Bus{src: o.Source, tr: o.Transport, every: o.PollInterval, log: o.Logger}
	if b.every == 0 {
		b.every = time.Second
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	return b, nil
}

// PollInterval is the time between polls of the version source, 0 if there
// is none.
func (b *Bus) PollInterval() time.Duration {
	if b.src == nil {
		return 0
	}
	return b.every
}

// Publish announces on the transport that topic changed. Call it after the
// change (and the source's version bump) committed. Its failure costs only
// latency (replicas still poll), so callers log it and carry on. Without a
// transport it does nothing.
func (b *Bus) Publish(ctx context.Context, topic string) error {
	if b.tr == nil {
		return nil
	}
	return b.tr.Publish(ctx, topic)
}

// Watch calls fn each time topic changes, until ctx is done: when the
// transport announces a version, and when a poll of the source finds a
// version other than the last seen. Calls are coalesced (a burst of
// changes may give one call) and never concurrent; fn should refresh from
// the store of record, which then holds at least the announced change.
// version is the source's version when it could be read (the transport's
// otherwise), for logs.
//
// Watch reads the source's current version before it returns, as the
// baseline: state loaded after Watch returns is never older than what fn
// would announce. If that read fails, the first successful poll calls fn.
// The subscription is made in the background: an announcement before it is
// in place is seen by the next poll. The returned channel is closed when Watch's goroutines have stopped.
func (b *Bus) Watch(ctx context.Context, topic string, fn func(version int64)) <-chan struct{} {
	w := &watch{b: b, topic: topic, fn: fn, kick: make(chan int64, 1)}
	if b.src != nil {
		if v, err := b.read(ctx, topic); err == nil {
			w.last, w.known = v, true
		}
	}
	done := make(chan struct{})
	subDone := make(chan struct{})
	if b.tr != nil {
		go func() {
			defer close(subDone)
			err := b.tr.Subscribe(ctx, topic, w.announce)
			if err != nil && ctx.Err() == nil {
				b.log.Warn("fanout: subscription ended", "topic", topic, "err", err)
			}
		}()
	} else {
		close(subDone)
	}
	go func() {
		defer close(done)
		w.run(ctx)
		<-subDone
	}()
	return done
}

// read is one bounded read of the source.
func (b *Bus) read(ctx context.Context, topic string) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, max(b.every, time.Second))
	defer cancel()
	return b.src.Version(ctx, topic)
}

// watch is the state of one Watch. last and known belong to run's
// goroutine.
type watch struct {
	b     *Bus
	topic string
	fn    func(int64)
	kick  chan int64 // an announced version, coalesced

	last  int64 // the source's version last seen
	known bool  // last is valid
	down  bool  // the last read failed (logged once)
}

// announce is the transport's callback: it never blocks.
func (w *watch) announce(v int64) {
	for {
		select {
		case w.kick <- v:
			return
		default:
			// A call is already pending: replace its version with
			// the newer one (this is the only sender).
			select {
			case <-w.kick:
			default:
			}
		}
	}
}

func (w *watch) run(ctx context.Context) {
	var tick <-chan time.Time
	if w.b.src != nil {
		t := time.NewTicker(w.b.every)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case v := <-w.kick:
			// Record the source's version first, so that the next poll
			// does not call fn again for the same change.
			if sv, ok := w.poll(ctx); ok {
				w.last, w.known, v = sv, true, sv
			}
			w.fn(v)
		case <-tick:
			v, ok := w.poll(ctx)
			if !ok || (w.known && v == w.last) {
				continue
			}
			w.last, w.known = v, true
			w.fn(v)
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// poll reads the source (false if there is none or it failed).
func (w *watch) poll(ctx context.Context) (int64, bool) {
	if w.b.src == nil {
		return 0, false
	}
	v, err := w.b.read(ctx, w.topic)
	if err != nil {
		if !w.down && ctx.Err() == nil {
			w.b.log.Warn("fanout: version source failed", "topic", w.topic, "err", err)
		}
		w.down = true
		return 0, false
	}
	if w.down {
		w.b.log.Info("fanout: version source back", "topic", w.topic)
	}
	w.down = false
	return v, true
}
