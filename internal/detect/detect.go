package detect

import (
	"container/list"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"errors"
	"fmt"
	"hash"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// Notifier receives findings to alert on (the alert action). Notify must
// not block: it queues the alert (or drops it) and returns; it is called
// from the detector's own goroutine, never from a request, and must be
// safe for concurrent use. A Finding carries no secret and no token, only
// the token's public id.
type Notifier interface {
	Notify(ctx context.Context, f Finding)
}

// Responder carries out the containment actions that the detector cannot
// take by itself. Both methods must be idempotent (freezing a frozen token,
// or killing twice, succeeds and changes nothing), safe for concurrent use,
// and bounded in time (they may write to a store); errors are recorded
// with the action in the audit log and never retried blindly.
type Responder interface {
	// FreezeToken freezes token id (its requests are refused with 403
	// token.frozen until an admin unfreezes it).
	FreezeToken(ctx context.Context, id, reason string) error
	// Kill trips the kill switch for finding f: every token is refused
	// until an admin clears it. It reports false when the switch was
	// already engaged (nothing changed).
	Kill(ctx context.Context, f Finding, reason string) (engaged bool, err error)
}

// Recorder writes detect records to the audit log. *audit.Log satisfies
// it; Detect must not block for long.
type Recorder interface {
	Detect(ctx context.Context, e audit.Event)
}

// ProfileStore persists the learned profiles. Implementations are safe for
// concurrent use; each call is one transaction.
type ProfileStore interface {
	// Profiles returns every stored profile.
	Profiles(ctx context.Context) ([]StoredProfile, error)
	// SaveProfiles upserts put and deletes the profiles keyed del.
	SaveProfiles(ctx context.Context, put []StoredProfile, del []string) error
}

// StoredProfile is a profile as a ProfileStore keeps it: its key
// ("token:<public id>" or "admin") and its encoded form.
type StoredProfile struct {
	Key     string
	Data    []byte
	Updated time.Time
}

// Options configure New.
type Options struct {
	// Settings are the compiled detect section (Compile). Required.
	Settings *Settings
	// Profiles persists baselines; if nil they live in memory only.
	Profiles ProfileStore
	// Holds persists throttles and freezes; if nil they live in memory
	// only.
	Holds HoldStore
	// SourceKey keys the hashes under which source addresses are learned
	// (at least 16 bytes; the app derives it from the vault so that it
	// survives restarts). Required.
	SourceKey []byte
	// Notifier receives findings whose actions include alert; if nil,
	// alerts are only logged.
	Notifier Notifier
	// Responder freezes tokens and trips the kill switch; if nil, those
	// actions fail (and the failure is recorded).
	Responder Responder
	// Recorder receives a detect record per finding and action; if nil,
	// they are only logged.
	Recorder Recorder
	// Logger; if nil, discard.
	Logger *slog.Logger
	// Now is the clock of holds, cooldowns and saves (event analysis uses
	// event times); if nil, time.Now.
	Now func() time.Time
}

// Stats are the detector's counters since New.
type Stats struct {
	Enabled    bool   `json:"enabled"`
	Detectors  int    `json:"detectors"`   // enabled detectors
	QueueSize  int    `json:"queue_size"`  // capacity
	Queued     int    `json:"queued"`      // events waiting now
	Received   uint64 `json:"received"`    // events queued
	Dropped    uint64 `json:"dropped"`     // events dropped on a full queue
	Processed  uint64 `json:"processed"`   // events analysed
	Findings   uint64 `json:"findings"`    // findings reported (after cooldown)
	Suppressed uint64 `json:"suppressed"`  // findings held back by the cooldown or the per-minute cap
	Actions    uint64 `json:"actions"`     // actions carried out
	Failed     uint64 `json:"failed"`      // actions that failed
	Profiles   int    `json:"profiles"`    // profiles in memory
	Holds      int    `json:"holds"`       // throttles and freezes in force
	SaveErrors uint64 `json:"save_errors"` // failed profile saves
}

// item is one queue entry: an event, a barrier (Sync) or a function to
// run on the worker (Profile).
type item struct {
	ev      audit.Event
	barrier chan struct{}
	fn      func()
}

// Detector analyses audit events off the request path. Record never
// blocks; one goroutine owns every profile. It is safe for concurrent use.
type Detector struct {
	o        Options
	log      *slog.Logger
	now      func() time.Time
	settings atomic.Pointer[Settings]
	enabled  atomic.Bool
	queue    chan item
	closing  chan struct{}
	done     chan struct{}
	closed   atomic.Bool

	received, dropped, processed, findings, suppressed, actions, failed, saveErrors atomic.Uint64
	nprofiles                                                                       atomic.Int64

	// Recent findings (recent.go): written by the worker, read by
	// operators (Recent).
	latelyMu sync.Mutex
	lately   []FindingView // oldest first, at most maxRecent

	// Holds (holds.go): read by Admit on the request path.
	holdMu sync.Mutex
	holds  atomic.Pointer[holdSet]

	// Worker-owned state.
	profiles    map[string]*list.Element // key -> element holding *profile
	lru         *list.List               // front = most recently active
	deleted     map[string]bool          // evicted keys to delete from the store
	authBySrc   map[string]*burst        // auth failures per source
	authAll     burst
	venueErrs   map[string]*burst
	lastFinding map[string]*cooldown // detector|subject
	lastAction  map[string]time.Time // action|target
	actionWin   int64                // unix minute of actionCount
	actionCount int
	lastSave    time.Time
	dropsSeen   uint64
	dropsAt     time.Time
	mac         hash.Hash         // keyed with SourceKey (sourceHash)
	macBuf      [sha256.Size]byte //
	srcCache    map[string]string // source address -> hash
}

type cooldown struct {
	at         time.Time
	suppressed int
}

// Bounds of the worker's global maps.
const (
	maxBurstKeys    = 4096
	maxCooldownKeys = 8192
)

// New loads stored profiles and holds and starts the detector's goroutine.
// Close stops it.
func New(ctx context.Context, o Options) (*Detector, error) {
	if o.Settings == nil {
		return nil, errors.New("detect: no settings")
	}
	if len(o.SourceKey) < 16 {
		return nil, errors.New("detect: source key missing or shorter than 16 bytes")
	}
	d := &Detector{o: o, log: o.Logger, now: o.Now, closing: make(chan struct{}), done: make(chan struct{}),
		profiles: map[string]*list.Element{}, lru: list.New(), deleted: map[string]bool{},
		authBySrc: map[string]*burst{}, venueErrs: map[string]*burst{}, lastFinding: map[string]*cooldown{},
		lastAction: map[string]time.Time{}, srcCache: map[string]string{}}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.now == nil {
		d.now = time.Now
	}
	d.settings.Store(o.Settings)
	d.enabled.Store(o.Settings.Enabled)
	d.queue = make(chan item, max(o.Settings.QueueSize, 1))
	if err := d.loadProfiles(ctx); err != nil {
		return nil, err
	}
	if err := d.loadHolds(ctx); err != nil {
		return nil, err
	}
	d.lastSave = d.now()
	go d.run()
	return d, nil
}

// Record implements audit.Sink: it queues e for analysis and returns at
// once. A full queue drops e (counted, and reported as a queue_drops
// finding); a disabled or closed detector ignores it.
func (d *Detector) Record(_ context.Context, e audit.Event) {
	if !d.enabled.Load() || d.closed.Load() {
		return
	}
	select {
	case d.queue <- item{ev: e}:
		d.received.Add(1)
	default:
		d.dropped.Add(1)
	}
}

// Sync waits until every event queued before it has been analysed (and
// its actions taken), or ctx ends.
func (d *Detector) Sync(ctx context.Context) error {
	b := make(chan struct{})
	select {
	case d.queue <- item{barrier: b}:
	case <-d.done:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-b:
		return nil
	case <-d.done:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

var errClosed = errors.New("detect: closed")

// onWorker runs fn on the worker goroutine, after the events queued
// before it, and waits for it.
func (d *Detector) onWorker(ctx context.Context, fn func()) error {
	done := make(chan struct{})
	select {
	case d.queue <- item{fn: func() { fn(); close(done) }}:
	case <-d.done:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-d.done:
		return errClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// SetSettings applies reloaded settings: detectors, thresholds, actions,
// and the venues' credentials. Learned profiles are kept (a baseline whose
// window length changed starts over). The queue size is fixed at New.
func (d *Detector) SetSettings(s *Settings) {
	if s == nil {
		return
	}
	d.settings.Store(s)
	d.enabled.Store(s.Enabled)
	d.holdMu.Lock()
	d.publishHolds(d.holds.Load().all())
	d.holdMu.Unlock()
}

// Settings returns the settings in force.
func (d *Detector) Settings() *Settings { return d.settings.Load() }

// Close stops accepting events, analyses what is queued, saves the
// profiles and stops the goroutine.
func (d *Detector) Close(ctx context.Context) error {
	if d.closed.Swap(true) {
		return errClosed
	}
	close(d.closing)
	select {
	case <-d.done:
	case <-ctx.Done():
		return fmt.Errorf("detect: close: %w", ctx.Err())
	}
	return d.save(ctx)
}

// Stats returns the counters.
func (d *Detector) Stats() Stats {
	s := d.settings.Load()
	return Stats{
		Enabled: s.Enabled, Detectors: len(s.Detectors), QueueSize: cap(d.queue), Queued: len(d.queue),
		Received: d.received.Load(), Dropped: d.dropped.Load(), Processed: d.processed.Load(),
		Findings: d.findings.Load(), Suppressed: d.suppressed.Load(), Actions: d.actions.Load(), Failed: d.failed.Load(),
		Profiles: int(d.nprofiles.Load()), Holds: d.holds.Load().len(), SaveErrors: d.saveErrors.Load(),
	}
}

// tickEvery is how often the worker looks at its timers when idle.
const tickEvery = time.Second

func (d *Detector) run() {
	defer close(d.done)
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for {
		select {
		case it := <-d.queue:
			d.handleItem(it)
		case <-t.C:
			d.tick()
		case <-d.closing:
			for {
				select {
				case it := <-d.queue:
					d.handleItem(it)
				default:
					d.tick()
					return
				}
			}
		}
	}
}

func (d *Detector) handleItem(it item) {
	if it.barrier != nil {
		close(it.barrier)
		return
	}
	if it.fn != nil {
		it.fn()
		return
	}
	d.process(it.ev)
	d.processed.Add(1)
	d.checkDrops()
}

// tick runs the timers: drop reports, expired holds, periodic saves.
func (d *Detector) tick() {
	d.checkDrops()
	d.expireHolds()
	s := d.settings.Load()
	if now := d.now(); now.Sub(d.lastSave) >= s.SaveEvery {
		d.lastSave = now
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := d.save(ctx); err != nil {
			d.saveErrors.Add(1)
			d.log.Warn("detect: save profiles", "err", err)
		}
		cancel()
	}
}

// checkDrops reports new queue drops, at most once per queue_drops window.
func (d *Detector) checkDrops() {
	n := d.dropped.Load()
	if n == d.dropsSeen {
		return
	}
	s := d.settings.Load()
	ds, on := s.on(QueueDrops)
	window := time.Minute
	if on {
		window = ds.Window
	}
	now := d.now()
	if !d.dropsAt.IsZero() && now.Sub(d.dropsAt) < window {
		return
	}
	lost := n - d.dropsSeen
	d.dropsSeen, d.dropsAt = n, now
	d.log.Warn("detect: events dropped: the detector's queue was full", "dropped", lost, "total", n)
	if !on {
		return
	}
	d.report(s, Finding{Time: now, Detector: QueueDrops, Subject: "detector",
		Summary:  fmt.Sprintf("%d events were not analysed: the detector's queue (%d) was full", lost, cap(d.queue)),
		Evidence: Evidence{Observed: float64(lost), Unit: "events dropped", Window: ds.Window.String()}})
}

// profileFor returns the profile of key, creating it (and evicting the
// least recently active one beyond max_tokens).
func (d *Detector) profileFor(key string, t time.Time, limit int) *profile {
	if el, ok := d.profiles[key]; ok {
		d.lru.MoveToFront(el)
		p := el.Value.(*profile)
		if t.After(p.Last) {
			p.Last = t
		}
		return p
	}
	p := newProfile(key, t)
	d.profiles[key] = d.lru.PushFront(p)
	delete(d.deleted, key)
	keep := limit
	if _, ok := d.profiles[adminKey]; ok {
		keep++ // the admin profile does not count
	}
	for d.lru.Len() > keep {
		el := d.lru.Back()
		old := el.Value.(*profile)
		if old.Key == adminKey {
			d.lru.MoveToFront(el)
			continue
		}
		d.lru.Remove(el)
		delete(d.profiles, old.Key)
		d.deleted[old.Key] = true
	}
	d.nprofiles.Store(int64(d.lru.Len()))
	return p
}

func (d *Detector) loadProfiles(ctx context.Context) error {
	if d.o.Profiles == nil {
		return nil
	}
	stored, err := d.o.Profiles.Profiles(ctx)
	if err != nil {
		return fmt.Errorf("detect: load profiles: %w", err)
	}
	var ps []*profile
	for _, sp := range stored {
		p, err := decodeProfile(sp.Data)
		if err != nil || p.Key != sp.Key {
			// A bad row costs its baseline, not the server: it is
			// relearned (and overwritten at the next save).
			d.log.Warn("detect: stored profile ignored", "key", sp.Key, "err", err)
			continue
		}
		ps = append(ps, p)
	}
	// Most recently active first, as the LRU list keeps them.
	slices.SortStableFunc(ps, func(a, b *profile) int { return b.Last.Compare(a.Last) })
	limit := d.settings.Load().MaxTokens
	n := 0
	for _, p := range ps {
		if p.Key != adminKey {
			if n >= limit {
				d.deleted[p.Key] = true
				continue
			}
			n++
		}
		d.profiles[p.Key] = d.lru.PushBack(p)
	}
	d.nprofiles.Store(int64(d.lru.Len()))
	return nil
}

// save writes the profiles changed since the last save and deletes the
// evicted ones.
func (d *Detector) save(ctx context.Context) error {
	if d.o.Profiles == nil {
		return nil
	}
	var put []StoredProfile
	now := d.now()
	for _, el := range d.profiles {
		p := el.Value.(*profile)
		if !p.dirty {
			continue
		}
		b, err := p.encode()
		if err != nil {
			return err
		}
		put = append(put, StoredProfile{Key: p.Key, Data: b, Updated: now})
	}
	var del []string
	for k := range d.deleted {
		del = append(del, k)
	}
	if len(put) == 0 && len(del) == 0 {
		return nil
	}
	// Small transactions: the store's writes share the order path's group
	// commit, which must not carry megabytes of profiles at once.
	for len(put) > 0 || len(del) > 0 {
		n := min(len(put), saveChunk)
		m := min(len(del), saveChunk)
		if err := d.o.Profiles.SaveProfiles(ctx, put[:n], del[:m]); err != nil {
			return fmt.Errorf("detect: save profiles: %w", err)
		}
		for _, sp := range put[:n] {
			if el, ok := d.profiles[sp.Key]; ok {
				el.Value.(*profile).dirty = false
			}
		}
		for _, k := range del[:m] {
			delete(d.deleted, k)
		}
		put, del = put[n:], del[m:]
	}
	return nil
}

// saveChunk is the most profiles written (or deleted) per transaction.
const saveChunk = 64

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// newID returns a finding id ("fnd_" + 16 base32 characters).
func newID() string {
	var b [10]byte
	_, _ = rand.Read(b[:])
	return "fnd_" + strings.ToLower(idEncoding.EncodeToString(b[:]))
}

var _ audit.Sink = (*Detector)(nil)
