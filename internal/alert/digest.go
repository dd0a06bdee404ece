package alert

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// MaxDigestItems is the most pending digest items a store keeps per sink;
// further ones are refused (ErrDigestFull) and counted as dropped.
const MaxDigestItems = 10000

// digestBatch is how many items one digest message carries; a longer
// backlog goes out as several messages.
const digestBatch = 500

// DigestItem is one pending digest entry.
type DigestItem struct {
	// Seq orders the items of a store; it only grows.
	Seq   int64
	Alert Alert
}

// DigestStore keeps the alerts waiting for a sink's daily digest, so that
// they survive a restart. Implementations must be safe for concurrent
// use; errors are returned as they are (the Dispatcher logs them and
// counts the alert as dropped).
type DigestStore interface {
	// AddDigest stores a (already scrubbed) for sink. It returns
	// ErrDigestFull when the sink has MaxDigestItems pending.
	AddDigest(ctx context.Context, sink string, a Alert) error
	// PendingDigest returns up to limit of sink's items, oldest first.
	PendingDigest(ctx context.Context, sink string, limit int) ([]DigestItem, error)
	// DeleteDigest removes sink's items with Seq <= upTo (the ones a
	// delivered digest carried).
	DeleteDigest(ctx context.Context, sink string, upTo int64) error
	// CountDigest reports how many items sink has pending and the time
	// of the oldest (zero if none).
	CountDigest(ctx context.Context, sink string) (int, time.Time, error)
}

// Schedule says when a sink's digest goes out and what it collects.
type Schedule struct {
	// MaxSeverity: alerts of this severity or lower wait for the digest.
	MaxSeverity Severity
	// Hour and Minute are the local time of day in Location (nil: UTC).
	Hour, Minute int
	Location     *time.Location
}

func (s Schedule) loc() *time.Location {
	if s.Location == nil {
		return time.UTC
	}
	return s.Location
}

// at is the digest time on a local date. A time that does not exist that
// day (a daylight-saving gap) becomes the first instant after the gap.
func (s Schedule) at(y int, m time.Month, d int) time.Time {
	t := time.Date(y, m, d, s.Hour, s.Minute, 0, 0, s.loc())
	want, got := s.Hour*60+s.Minute, t.Hour()*60+t.Minute()
	if got < want {
		t = t.Add(time.Duration(want-got) * time.Minute)
	}
	return t
}

// Next is the first digest time strictly after now.
func (s Schedule) Next(now time.Time) time.Time {
	l := now.In(s.loc())
	t := s.at(l.Year(), l.Month(), l.Day())
	if !t.After(now) {
		t = s.at(l.Year(), l.Month(), l.Day()+1)
	}
	return t
}

// Prev is the last digest time at or before now.
func (s Schedule) Prev(now time.Time) time.Time {
	l := now.In(s.loc())
	t := s.at(l.Year(), l.Month(), l.Day())
	if t.After(now) {
		t = s.at(l.Year(), l.Month(), l.Day()-1)
	}
	return t
}

// String is "HH:MM Zone".
func (s Schedule) String() string {
	return fmt.Sprintf("%02d:%02d %s", s.Hour, s.Minute, s.loc())
}

// MemoryStore is a DigestStore in memory: pending digest items are lost
// on restart. The server uses its database instead; tests and embedders
// without one use this.
type MemoryStore struct {
	mu    sync.Mutex
	seq   int64
	items map[string][]DigestItem
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore { return &MemoryStore{items: map[string][]DigestItem{}} }

// AddDigest implements DigestStore.
func (m *MemoryStore) AddDigest(_ context.Context, sink string, a Alert) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.items[sink]) >= MaxDigestItems {
		return ErrDigestFull
	}
	m.seq++
	m.items[sink] = append(m.items[sink], DigestItem{Seq: m.seq, Alert: a})
	return nil
}

// PendingDigest implements DigestStore.
func (m *MemoryStore) PendingDigest(_ context.Context, sink string, limit int) ([]DigestItem, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.items[sink]
	if limit > 0 && len(l) > limit {
		l = l[:limit]
	}
	return append([]DigestItem(nil), l...), nil
}

// DeleteDigest implements DigestStore.
func (m *MemoryStore) DeleteDigest(_ context.Context, sink string, upTo int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.items[sink]
	i := 0
	for i < len(l) && l[i].Seq <= upTo {
		i++
	}
	m.items[sink] = append([]DigestItem(nil), l[i:]...)
	return nil
}

// CountDigest implements DigestStore.
func (m *MemoryStore) CountDigest(_ context.Context, sink string) (int, time.Time, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	l := m.items[sink]
	if len(l) == 0 {
		return 0, time.Time{}, nil
	}
	return len(l), l[0].Alert.Time, nil
}

var _ DigestStore = (*MemoryStore)(nil)
