package detect

import (
	"math"
	"slices"
	"time"
)

// Learning constants of logStat (documented in the package doc).
const (
	// alpha is the EWMA weight of one new observation.
	alpha = 0.05
	// spread is how many standard deviations above the mean the usual
	// value sits: usual = exp(mean + spread·sd) over ln(values).
	spread = 2.0
	// warmSamples caps the warm-up samples kept for the median.
	warmSamples = 32
	// maxDailyGrowth bounds how much the usual value may rise per UTC day
	// of event time (×1.5), so a slow ramp-up needs days, not minutes.
	maxDailyGrowth = 1.5
)

// logStat learns the usual size of a positive quantity (an order's
// notional, orders or notional per window) on a log scale: sizes are
// multiplicative, so "2× the usual" is the same distance for a 10 USDT
// bot and a 10,000 USDT bot.
//
// During warm-up it keeps up to warmSamples log values; when warm-up ends
// the baseline starts from their median and their median absolute
// deviation, so a few extreme early values cannot set it. After that it is
// an exponentially weighted mean and variance (weight alpha) whose usual
// value may not rise by more than maxDailyGrowth per day. Callers learn
// only values that raised no finding.
type logStat struct {
	N      int64     `json:"n"`              // values learned
	Ready  bool      `json:"ready"`          // warm-up over: Mean and Var are the baseline
	Mean   float64   `json:"mean"`           // of ln(value)
	Var    float64   `json:"var"`            // of ln(value)
	Warm   []float64 `json:"warm,omitempty"` // ln(values) of the warm-up (ring, warmSamples)
	Day    int64     `json:"day"`            // unix day of the anchors
	AMean  float64   `json:"amean"`          // Mean at the start of Day
	ASD    float64   `json:"asd"`            // standard deviation at the start of Day
	Window int64     `json:"window,omitempty"`
}

// usual is the learned usual value (0 before warm-up ends).
func (s *logStat) usual() float64 {
	if !s.Ready {
		return 0
	}
	return math.Exp(s.Mean + spread*math.Sqrt(s.Var))
}

// learn adds value v (> 0) observed at t; warmup is the number of values
// after which the baseline is ready.
func (s *logStat) learn(v float64, t time.Time, warmup int) {
	if !(v > 0) || math.IsInf(v, 0) {
		return
	}
	y := math.Log(v)
	s.N++
	if !s.Ready {
		if len(s.Warm) < warmSamples {
			s.Warm = append(s.Warm, y)
		} else {
			s.Warm[int(s.N)%warmSamples] = y
		}
		if s.N >= int64(max(warmup, 1)) {
			s.start(t)
		}
		return
	}
	day := t.Unix() / 86400
	if day != s.Day {
		s.Day, s.AMean, s.ASD = day, s.Mean, math.Sqrt(s.Var)
	}
	d := y - s.Mean
	s.Mean += alpha * d
	s.Var = (1 - alpha) * (s.Var + alpha*d*d)
	// The usual value exp(mean + spread·sd) may rise by at most
	// maxDailyGrowth per day: half of it through the mean, half through
	// the spread.
	g := math.Log(maxDailyGrowth)
	if lim := s.AMean + g/2; s.Mean > lim {
		s.Mean = lim
	}
	if lim := s.ASD + g/(2*spread); math.Sqrt(s.Var) > lim {
		s.Var = lim * lim
	}
}

// start ends the warm-up: the baseline is the median of the warm-up
// samples and their scaled median absolute deviation.
func (s *logStat) start(t time.Time) {
	if len(s.Warm) == 0 {
		return
	}
	m := median(s.Warm)
	dev := make([]float64, len(s.Warm))
	for i, y := range s.Warm {
		dev[i] = math.Abs(y - m)
	}
	sd := 1.4826 * median(dev)
	s.Mean, s.Var, s.Ready, s.Warm = m, sd*sd, true, nil
	s.Day, s.AMean, s.ASD = t.Unix()/86400, s.Mean, sd
}

// warm reports whether the stat may judge: ready and at least warmup
// values learned (warmup may have been raised since it became ready).
func (s *logStat) warm(warmup int) bool { return s.Ready && s.N >= int64(warmup) }

// sane reports whether a stored stat is usable (finite, bounded).
func (s *logStat) sane() bool {
	ok := func(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) && math.Abs(f) < 1e6 }
	if s.N < 0 || !ok(s.Mean) || !ok(s.Var) || s.Var < 0 || !ok(s.AMean) || !ok(s.ASD) || s.ASD < 0 || len(s.Warm) > warmSamples {
		return false
	}
	for _, w := range s.Warm {
		if !ok(w) {
			return false
		}
	}
	return true
}

func median(v []float64) float64 {
	c := slices.Clone(v)
	slices.Sort(c)
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return (c[n/2-1] + c[n/2]) / 2
}

// windowSum accumulates a quantity over fixed windows of event time
// (aligned to multiples of the window since the Unix epoch) and learns
// each finished window that had activity and raised no finding.
type windowSum struct {
	Stat  logStat  `json:"stat"`
	Start int64    `json:"start"` // unix nanoseconds of the current window
	Sum   float64  `json:"sum"`   // in the current window
	Fired bool     `json:"fired"` // the current window raised a finding
	Reqs  []string `json:"-"`     // request ids in the current window (last few)
}

// add accounts v at t into the window and returns the window's running
// sum. Windows that ended before t are learned (or skipped when they
// fired) first.
func (w *windowSum) add(v float64, t time.Time, window time.Duration, warmup int, reqID string) float64 {
	if int64(window) != w.Stat.Window {
		// The window length changed (reload): what was learned is
		// about another quantity. Start over.
		*w = windowSum{Stat: logStat{Window: int64(window)}}
	}
	// Events arrive in gateway order; one from an earlier window (a
	// slow request finishing late) counts in the current one.
	if start := t.UnixNano() - t.UnixNano()%int64(window); start > w.Start {
		w.roll(warmup)
		w.Start = start
	}
	w.Sum += v
	w.Reqs = appendReq(w.Reqs, reqID)
	return w.Sum
}

// roll learns the finished window and clears it.
func (w *windowSum) roll(warmup int) {
	if w.Sum > 0 && !w.Fired && w.Start != 0 {
		w.Stat.learn(w.Sum, time.Unix(0, w.Start), warmup)
	}
	w.Sum, w.Fired, w.Reqs = 0, false, nil
}

// maxReqs is how many triggering request ids evidence keeps.
const maxReqs = 5

func appendReq(l []string, id string) []string {
	if id == "" {
		return l
	}
	if len(l) >= maxReqs {
		l = append(l[:0], l[len(l)-maxReqs+1:]...)
	}
	return append(l, id)
}

// burst counts events over a sliding window approximated by burstBuckets
// sub-windows: memory per key is constant whatever the threshold, and the
// count errs by at most one sub-window's events.
type burst struct {
	start   int64 // unix nanoseconds of buckets[0]'s sub-window
	buckets [burstBuckets]int32
	reqs    []string
}

const burstBuckets = 10

// add counts one event at t and returns the events in the window ending at t.
func (b *burst) add(t time.Time, window time.Duration, reqID string) int {
	width := max(int64(window)/burstBuckets, 1)
	now := t.UnixNano()
	slot := now - now%width
	last := b.start + (burstBuckets-1)*width // start of the newest sub-window
	switch {
	case b.start == 0 || slot-last >= burstBuckets*width:
		clear(b.buckets[:])
		b.start = slot - (burstBuckets-1)*width
	case slot > last:
		shift := int((slot - last) / width)
		copy(b.buckets[:], b.buckets[shift:])
		clear(b.buckets[burstBuckets-shift:])
		b.start += int64(shift) * width
	}
	i := int((slot - b.start) / width)
	if i < 0 {
		i = 0 // late event: count it in the oldest sub-window
	}
	if b.buckets[i] < math.MaxInt32 {
		b.buckets[i]++
	}
	b.reqs = appendReq(b.reqs, reqID)
	n := 0
	for _, c := range b.buckets {
		n += int(c)
	}
	return n
}

// reset forgets the counted events (after a finding, so that the next one
// needs a fresh burst).
func (b *burst) reset() { *b = burst{} }

// hourHist is an hour-of-week histogram (0 = Monday 00:00-01:00 in the
// configured zone).
type hourHist struct {
	Hours [168]uint32 `json:"hours"`
	Total int64       `json:"total"`
	First int64       `json:"first"` // unix seconds of the first learned event
}

// hourOfWeek returns the hour-of-week slot of t in loc.
func hourOfWeek(t time.Time, loc *time.Location) int {
	t = t.In(loc)
	wd := (int(t.Weekday()) + 6) % 7 // Monday = 0
	return wd*24 + t.Hour()
}

// learn counts t.
func (h *hourHist) learn(t time.Time, loc *time.Location) {
	if h.First == 0 {
		h.First = t.Unix()
	}
	i := hourOfWeek(t, loc)
	if h.Hours[i] == math.MaxUint32 {
		// Halve everything: keeps the shape, frees room.
		for j := range h.Hours {
			h.Hours[j] /= 2
		}
		h.Total /= 2
	}
	h.Hours[i]++
	h.Total++
}

// usual reports whether slot i or a neighbouring hour has any activity.
func (h *hourHist) usual(i int) bool {
	return h.Hours[(i+167)%168]+h.Hours[i]+h.Hours[(i+1)%168] > 0
}

const weekdays = "MonTueWedThuFriSatSun"

// slotName names hour-of-week slot i ("Tue 03:00").
func slotName(i int) string {
	if i < 0 || i >= 168 {
		return "?"
	}
	h := i % 24
	d := i / 24
	return weekdays[3*d:3*d+3] + " " + string(rune('0'+h/10)) + string(rune('0'+h%10)) + ":00"
}
