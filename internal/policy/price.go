package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/venue"
)

// Price cache bounds.
const (
	maxPriceEntries = 4096
	maxTickerBody   = 1 << 20
)

// priceSource is the PriceSource returned by NewPriceSource.
type priceSource struct {
	ref  venue.PriceReference
	base *url.URL
	rt   http.RoundTripper
	ttl  time.Duration
	now  func() time.Time

	mu       sync.Mutex
	cache    map[string]priceEntry
	inflight map[string]*priceCall
}

type priceEntry struct {
	price decimal.Decimal
	at    time.Time
}

type priceCall struct {
	done  chan struct{}
	price decimal.Decimal
	err   error
}

// NewPriceSource returns a PriceSource that reads a venue's public ticker
// (ref) at base through rt — an unsigned market-data request; it never
// carries a credential. Each instrument's price is cached for ttl (at most
// 4096 instruments), and concurrent reads of one instrument share one
// request. A failed read is not cached.
func NewPriceSource(ref venue.PriceReference, base *url.URL, rt http.RoundTripper, ttl time.Duration) PriceSource {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return &priceSource{ref: ref, base: base, rt: rt, ttl: ttl, now: time.Now,
		cache: map[string]priceEntry{}, inflight: map[string]*priceCall{}}
}

// ReferencePrice implements PriceSource.
func (s *priceSource) ReferencePrice(ctx context.Context, instrument string) (decimal.Decimal, error) {
	key := strings.ToUpper(instrument)
	s.mu.Lock()
	if e, ok := s.cache[key]; ok && s.now().Sub(e.at) < s.ttl {
		s.mu.Unlock()
		return e.price, nil
	}
	if c, ok := s.inflight[key]; ok {
		s.mu.Unlock()
		select {
		case <-c.done:
			return c.price, c.err
		case <-ctx.Done():
			return decimal.Decimal{}, ctx.Err()
		}
	}
	c := &priceCall{done: make(chan struct{})}
	s.inflight[key] = c
	s.mu.Unlock()

	// The fetch is shared: it must not be cut short by the first caller's
	// context alone, but it is bounded.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	c.price, c.err = s.fetch(fctx, instrument)
	cancel()

	s.mu.Lock()
	delete(s.inflight, key)
	if c.err == nil {
		if len(s.cache) >= maxPriceEntries {
			s.evict()
		}
		s.cache[key] = priceEntry{price: c.price, at: s.now()}
	}
	s.mu.Unlock()
	close(c.done)
	return c.price, c.err
}

// evict drops expired entries, or half the cache if none expired. Called
// with s.mu held.
func (s *priceSource) evict() {
	now := s.now()
	n := 0
	for k, e := range s.cache {
		if now.Sub(e.at) >= s.ttl {
			delete(s.cache, k)
			n++
		}
	}
	for k := range s.cache {
		if n >= maxPriceEntries/2 {
			break
		}
		delete(s.cache, k)
		n++
	}
}

func (s *priceSource) fetch(ctx context.Context, instrument string) (decimal.Decimal, error) {
	method, p, q := s.ref.TickerRequest(instrument)
	u := *s.base
	u.Path = strings.TrimRight(u.Path, "/") + p
	u.RawPath = ""
	if s.base.RawPath != "" {
		u.RawPath = strings.TrimRight(s.base.RawPath, "/") + p
	}
	u.RawQuery = q
	req, err := http.NewRequestWithContext(ctx, method, u.String(), nil)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("reference price: %w", err)
	}
	resp, err := s.rt.RoundTrip(req)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("reference price: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxTickerBody+1))
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("reference price: read: %w", err)
	}
	if len(body) > maxTickerBody {
		return decimal.Decimal{}, errors.New("reference price: answer too large")
	}
	if resp.StatusCode != http.StatusOK {
		return decimal.Decimal{}, fmt.Errorf("reference price: venue answered %d", resp.StatusCode)
	}
	txt, err := s.ref.ParseTicker(instrument, body)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("reference price: %w", err)
	}
	v, err := parsePlain(txt)
	if err != nil {
		return decimal.Decimal{}, fmt.Errorf("reference price: %w", err)
	}
	if !v.IsPositive() {
		return decimal.Decimal{}, errors.New("reference price: not positive")
	}
	return v, nil
}

// StaticPrices is a PriceSource with fixed prices (dry runs given a price
// on the command line, tests). Keys are instruments, upper case.
type StaticPrices map[string]decimal.Decimal

// ReferencePrice implements PriceSource.
func (p StaticPrices) ReferencePrice(_ context.Context, instrument string) (decimal.Decimal, error) {
	v, ok := p[strings.ToUpper(instrument)]
	if !ok {
		return decimal.Decimal{}, fmt.Errorf("no reference price for %s", instrument)
	}
	return v, nil
}

var (
	_ PriceSource = (*priceSource)(nil)
	_ PriceSource = StaticPrices(nil)
)
