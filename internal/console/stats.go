package console

import (
	"context"
	"math"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/keystile/keystile/internal/audit"
)

// Bounds of the in-memory statistics.
const (
	// HistorySeconds is how far back the per-second series go.
	HistorySeconds = 600
	// KeySeconds is the window of the per-venue and per-bot figures.
	KeySeconds = 60
	// MaxKeys bounds the venues and bots tracked; further ones count as
	// "other".
	MaxKeys = 512
	// MaxSeenTokens bounds the tokens whose last use and sources are kept.
	MaxSeenTokens = 4096
	// SourcesPerToken is how many distinct recent source addresses are
	// kept per token.
	SourcesPerToken = 4
	// statsQueue is the capacity of the hand-off from the request path.
	statsQueue = 8192
)

// latency histogram: bucket i holds latencies up to latBound(i); the last
// one is unbounded. Bounds grow by √2 from 16 µs (about 5 s at i = 36).
const latBuckets = 38

func latBound(i int) time.Duration {
	return time.Duration(16e3 * math.Pow(math.Sqrt2, float64(i)))
}

func latBucket(d time.Duration) int {
	if d <= 16*time.Microsecond {
		return 0
	}
	i := int(math.Ceil(2 * math.Log2(float64(d)/16e3)))
	return min(max(i, 0), latBuckets-1)
}

type hist [latBuckets]uint32

// quantile is the upper bound of the bucket holding quantile q (0 if
// empty).
func (h *hist) quantile(q float64) time.Duration {
	var n uint64
	for _, c := range h {
		n += uint64(c)
	}
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(n)))
	var acc uint64
	for i, c := range h {
		acc += uint64(c)
		if acc >= rank {
			return latBound(i)
		}
	}
	return latBound(latBuckets - 1)
}

// second is one second of every request.
type second struct {
	t                  int64 // unix second; 0 = empty
	req, deny, errs    uint32
	total, added       hist // total latency, time keystile added
	addedSum, totalSum time.Duration
}

// keyCounts is one second of one venue or bot.
type keyCounts struct {
	t               int64
	req, deny, errs uint32
}

type keyRing struct {
	name string
	ring [KeySeconds]keyCounts
	last int64
}

// Seen is a token's last use since start, and the distinct source
// addresses it came from recently (newest first).
type Seen struct {
	At      time.Time
	Sources []string
}

type sample struct {
	t            int64
	venue, token string
	source       string
	decision     string
	total, added time.Duration
}

// Stats keeps per-second counters of the gateway's requests in bounded
// memory, for the console's live figures and charts. It is an audit.Sink
// fed from the request path: Record only hands the event off (a full
// hand-off drops it and counts the drop, never blocks); one goroutine
// folds events into the rings. Safe for concurrent use.
type Stats struct {
	in      chan sample
	dropped atomic.Uint64
	now     func() time.Time
	done    chan struct{}
	stop    chan struct{}
	once    sync.Once

	mu   sync.Mutex
	ring [HistorySeconds]second
	keys map[string]*keyRing
	seen map[string]*Seen
}

// NewStats starts the folding goroutine; Close stops it. now is the
// clock (nil: time.Now).
func NewStats(now func() time.Time) *Stats {
	if now == nil {
		now = time.Now
	}
	s := &Stats{in: make(chan sample, statsQueue), now: now, done: make(chan struct{}), stop: make(chan struct{}),
		keys: map[string]*keyRing{}, seen: map[string]*Seen{}}
	go s.run()
	return s
}

// Record implements audit.Sink: it never blocks.
func (s *Stats) Record(_ context.Context, e audit.Event) {
	t := e.Time
	if t.IsZero() {
		t = s.now()
	}
	added := e.Latency - e.UpstreamLatency
	select {
	case s.in <- sample{t: t.Unix(), venue: e.Venue, token: e.TokenID, source: e.Source, decision: e.Decision, total: e.Latency, added: max(added, 0)}:
	default:
		s.dropped.Add(1)
	}
}

// Close folds the events already handed off and stops the folding
// goroutine; later events are dropped.
func (s *Stats) Close() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}

func (s *Stats) run() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			// Fold what was handed off before Close.
			s.mu.Lock()
			for {
				select {
				case y := <-s.in:
					s.fold(y)
					continue
				default:
				}
				break
			}
			s.mu.Unlock()
			return
		case x := <-s.in:
			s.mu.Lock()
			s.fold(x)
			// Fold what else is queued under the same lock.
			for n := 0; n < 256; n++ {
				select {
				case y := <-s.in:
					s.fold(y)
					continue
				default:
				}
				break
			}
			s.mu.Unlock()
		}
	}
}

// fold adds one sample. s.mu is held.
func (s *Stats) fold(x sample) {
	sec := &s.ring[uint64(x.t)%HistorySeconds] // #nosec G115 -- unix seconds are positive here
	if sec.t != x.t {
		if sec.t > x.t {
			return // older than the ring
		}
		*sec = second{t: x.t}
	}
	sec.req++
	deny, errs := x.decision == audit.Deny, x.decision == audit.Error
	if deny {
		sec.deny++
	}
	if errs {
		sec.errs++
	}
	sec.total[latBucket(x.total)]++
	sec.added[latBucket(x.added)]++
	sec.totalSum += x.total
	sec.addedSum += x.added
	if x.venue != "" {
		s.key("v:"+x.venue, x.venue).add(x.t, deny, errs)
	}
	if x.token != "" {
		s.key("t:"+x.token, x.token).add(x.t, deny, errs)
		s.see(x)
	}
}

func (s *Stats) key(k, name string) *keyRing {
	r, ok := s.keys[k]
	if ok {
		return r
	}
	if len(s.keys) >= MaxKeys {
		k, name = k[:2]+"other", "other"
		if r, ok := s.keys[k]; ok {
			return r
		}
	}
	r = &keyRing{name: name}
	s.keys[k] = r
	return r
}

func (r *keyRing) add(t int64, deny, errs bool) {
	c := &r.ring[uint64(t)%KeySeconds] // #nosec G115 -- unix seconds are positive here
	if c.t != t {
		if c.t > t {
			return
		}
		*c = keyCounts{t: t}
	}
	c.req++
	if deny {
		c.deny++
	}
	if errs {
		c.errs++
	}
	r.last = max(r.last, t)
}

func (s *Stats) see(x sample) {
	v, ok := s.seen[x.token]
	if !ok {
		if len(s.seen) >= MaxSeenTokens {
			oldest, at := "", time.Time{}
			for k, e := range s.seen {
				if oldest == "" || e.At.Before(at) {
					oldest, at = k, e.At
				}
			}
			delete(s.seen, oldest)
		}
		v = &Seen{}
		s.seen[x.token] = v
	}
	if t := time.Unix(x.t, 0); t.After(v.At) {
		v.At = t
	}
	if x.source == "" {
		return
	}
	if i := slices.Index(v.Sources, x.source); i >= 0 {
		v.Sources = slices.Delete(v.Sources, i, i+1)
	}
	v.Sources = slices.Insert(v.Sources, 0, x.source)
	if len(v.Sources) > SourcesPerToken {
		v.Sources = v.Sources[:SourcesPerToken]
	}
}

// Point is one second of the series.
type Point struct {
	T                  time.Time
	Req, Deny, Errs    uint32
	P50, P99           time.Duration // total latency
	AddedP50, AddedP99 time.Duration // time keystile added
}

// KeyRate is one venue's or bot's figures over the last KeySeconds.
type KeyRate struct {
	Name            string
	Req, Deny, Errs uint64
	PerSecond       float64
	LastSeen        time.Time
}

// Snapshot is what the overview shows.
type Snapshot struct {
	At     time.Time
	Series []Point // the last n seconds, oldest first (empty seconds included)
	// Window totals over the last KeySeconds.
	Req, Deny, Errs uint64
	PerSecond       float64
	P50, P99        time.Duration
	AddedP50        time.Duration
	Venues, Bots    []KeyRate
	Dropped         uint64
}

// Snapshot returns the last n seconds (at most HistorySeconds) up to the
// last complete second.
func (s *Stats) Snapshot(n int) Snapshot {
	n = min(max(n, 1), HistorySeconds)
	now := s.now().Unix() - 1
	snap := Snapshot{At: time.Unix(now, 0), Dropped: s.dropped.Load()}
	s.mu.Lock()
	defer s.mu.Unlock()
	var win, winAdded hist
	for t := now - int64(n) + 1; t <= now; t++ {
		p := Point{T: time.Unix(t, 0)}
		if sec := &s.ring[uint64(t)%HistorySeconds]; sec.t == t { // #nosec G115 -- positive
			p.Req, p.Deny, p.Errs = sec.req, sec.deny, sec.errs
			p.P50, p.P99 = sec.total.quantile(0.5), sec.total.quantile(0.99)
			p.AddedP50, p.AddedP99 = sec.added.quantile(0.5), sec.added.quantile(0.99)
			if t > now-KeySeconds {
				snap.Req += uint64(sec.req)
				snap.Deny += uint64(sec.deny)
				snap.Errs += uint64(sec.errs)
				for i := range win {
					win[i] += sec.total[i]
					winAdded[i] += sec.added[i]
				}
			}
		}
		snap.Series = append(snap.Series, p)
	}
	snap.PerSecond = float64(snap.Req) / KeySeconds
	snap.P50, snap.P99, snap.AddedP50 = win.quantile(0.5), win.quantile(0.99), winAdded.quantile(0.5)
	for k, r := range s.keys {
		kr := KeyRate{Name: r.name, LastSeen: time.Unix(r.last, 0)}
		for _, c := range r.ring {
			if c.t > now-KeySeconds && c.t <= now {
				kr.Req += uint64(c.req)
				kr.Deny += uint64(c.deny)
				kr.Errs += uint64(c.errs)
			}
		}
		if kr.Req == 0 {
			continue
		}
		kr.PerSecond = float64(kr.Req) / KeySeconds
		if k[0] == 'v' {
			snap.Venues = append(snap.Venues, kr)
		} else {
			snap.Bots = append(snap.Bots, kr)
		}
	}
	byReq := func(a []KeyRate) {
		sort.Slice(a, func(i, j int) bool {
			if a[i].Req != a[j].Req {
				return a[i].Req > a[j].Req
			}
			return a[i].Name < a[j].Name
		})
	}
	byReq(snap.Venues)
	byReq(snap.Bots)
	return snap
}

// Seen returns what is known of a token's recent use (false if it has
// not been seen since start).
func (s *Stats) Seen(tokenID string) (Seen, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.seen[tokenID]
	if !ok {
		return Seen{}, false
	}
	return Seen{At: v.At, Sources: slices.Clone(v.Sources)}, true
}

// Dropped counts events Record could not hand off.
func (s *Stats) Dropped() uint64 { return s.dropped.Load() }

var _ audit.Sink = (*Stats)(nil)
