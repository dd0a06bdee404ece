package detect

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Per-profile bounds: a profile's memory is bounded whatever a bot sends.
const (
	maxCurrencies  = 8   // order_notional windows per token
	maxSizeKeys    = 16  // order_size baselines per token
	maxInstruments = 64  // instruments known per token
	maxVenues      = 32  // venues known per token
	maxSources     = 16  // source addresses known per token
	maxKeyLen      = 128 // longest instrument/venue/currency key kept
	// maxProfileBytes refuses stored profiles larger than a full one can be.
	maxProfileBytes = 64 << 10
)

// adminKey is the profile key of the admin actions' hour profile.
const adminKey = "admin"

// tokenKey is the profile key of a token.
func tokenKey(id string) string { return "token:" + id }

// profile is what the detector has learned about one token (or, for
// adminKey, about admin actions). It holds token public ids, venue names,
// instruments, currencies, hours and counts, and source addresses only as
// keyed hashes: never a secret, never an address.
type profile struct {
	Key         string                `json:"key"`
	First       time.Time             `json:"first"`       // first event seen (event time)
	Last        time.Time             `json:"last"`        // last event seen
	Requests    int64                 `json:"requests"`    // authenticated requests learned
	Orders      int64                 `json:"orders"`      // allowed orders learned
	Rate        windowSum             `json:"rate"`        // orders per window
	Notional    map[string]*windowSum `json:"notional"`    // currency -> notional per window
	Size        map[string]*logStat   `json:"size"`        // "n:CUR" or "q:venue/instrument" -> one order's size
	Instruments map[string]int64      `json:"instruments"` // "venue/instrument" -> orders
	Venues      map[string]int64      `json:"venues"`      // venue -> requests
	Sources     map[string]int64      `json:"sources"`     // source hash -> last seen (unix seconds)
	Hours       hourHist              `json:"hours"`       // orders (admin: actions) by hour of week

	// Not persisted: short-lived state.
	lastSrc     string    // hash of the last source
	lastSrcTime time.Time // when it was last seen
	lastReq     string
	firedHour   int64 // hour (unix hours) of the last off-hours finding
	denials     burst
	limited     burst
	dirty       bool
}

func newProfile(key string, t time.Time) *profile {
	return &profile{Key: key, First: t, Last: t, Notional: map[string]*windowSum{}, Size: map[string]*logStat{},
		Instruments: map[string]int64{}, Venues: map[string]int64{}, Sources: map[string]int64{}, firedHour: -1}
}

// age is how long the profile has been learning at t.
func (p *profile) age(t time.Time) time.Duration { return t.Sub(p.First) }

// encode returns the profile's stored form.
func (p *profile) encode() ([]byte, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("detect: encode profile: %w", err)
	}
	return b, nil
}

// errBadProfile marks stored profile bytes that are not a valid profile.
var errBadProfile = errors.New("detect: invalid stored profile")

// decodeProfile parses a stored profile and checks it against the bounds
// above: a damaged or hostile row is refused, never trusted to size
// memory.
func decodeProfile(b []byte) (*profile, error) {
	if len(b) > maxProfileBytes {
		return nil, fmt.Errorf("%w: %d bytes", errBadProfile, len(b))
	}
	p := newProfile("", time.Time{})
	if err := json.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadProfile, err)
	}
	if p.Notional == nil {
		p.Notional = map[string]*windowSum{}
	}
	if p.Size == nil {
		p.Size = map[string]*logStat{}
	}
	if p.Instruments == nil {
		p.Instruments = map[string]int64{}
	}
	if p.Venues == nil {
		p.Venues = map[string]int64{}
	}
	if p.Sources == nil {
		p.Sources = map[string]int64{}
	}
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadProfile, err)
	}
	return p, nil
}

func (p *profile) check() error {
	if p.Key != adminKey && (!strings.HasPrefix(p.Key, "token:") || !goodKey(p.Key)) {
		return fmt.Errorf("key %q", p.Key)
	}
	if p.Requests < 0 || p.Orders < 0 || p.Hours.Total < 0 || p.Hours.Total > 1<<62 {
		return errors.New("negative count")
	}
	if len(p.Notional) > maxCurrencies || len(p.Size) > maxSizeKeys || len(p.Instruments) > maxInstruments ||
		len(p.Venues) > maxVenues || len(p.Sources) > maxSources {
		return errors.New("too many entries")
	}
	if !p.Rate.Stat.sane() {
		return errors.New("rate baseline")
	}
	for k, w := range p.Notional {
		if w == nil || !goodKey(k) || !w.Stat.sane() {
			return fmt.Errorf("notional %q", k)
		}
	}
	for k, s := range p.Size {
		if s == nil || !goodKey(k) || !s.sane() {
			return fmt.Errorf("size %q", k)
		}
	}
	for _, m := range []map[string]int64{p.Instruments, p.Venues, p.Sources} {
		for k, v := range m {
			if !goodKey(k) || v < 0 {
				return fmt.Errorf("entry %q", k)
			}
		}
	}
	return nil
}

// goodKey accepts keys the detector itself would make: short, printable.
func goodKey(k string) bool {
	if k == "" || len(k) > maxKeyLen+16 || !utf8.ValidString(k) {
		return false
	}
	for _, r := range k {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// clip shortens an event-supplied key to maxKeyLen bytes (valid UTF-8).
func clip(s string) string {
	if len(s) <= maxKeyLen {
		return s
	}
	s = s[:maxKeyLen]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

// bump increments m[k] (a usage count), making room first when m holds
// limit keys by forgetting the least used one. It reports whether k was
// new.
func bump(m map[string]int64, k string, limit int) bool {
	if _, ok := m[k]; ok {
		m[k]++
		return false
	}
	if len(m) >= limit {
		evictMin(m)
	}
	m[k] = 1
	return true
}

// evictMin deletes the entry with the smallest value (ties: smallest key,
// so that eviction is deterministic).
func evictMin(m map[string]int64) {
	first := true
	var mk string
	var mv int64
	for k, v := range m {
		if first || v < mv || v == mv && k < mk {
			mk, mv, first = k, v, false
		}
	}
	if !first {
		delete(m, mk)
	}
}

// maxSourceCache bounds the worker's cache of source hashes.
const maxSourceCache = 4096

// sourceHash is the keyed hash under which a source address is learned
// (worker goroutine: the MAC and the cache are the worker's). Addresses
// stay in memory only, as cache keys.
func (d *Detector) sourceHash(addr string) string {
	if h, ok := d.srcCache[addr]; ok {
		return h
	}
	if d.mac == nil {
		d.mac = hmac.New(sha256.New, d.o.SourceKey)
	}
	d.mac.Reset()
	d.mac.Write([]byte("detect.source\x00"))
	d.mac.Write([]byte(addr))
	h := hex.EncodeToString(d.mac.Sum(d.macBuf[:0])[:12])
	if len(d.srcCache) >= maxSourceCache {
		clear(d.srcCache)
	}
	d.srcCache[addr] = h
	return h
}
