package app

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/keystile/keystile/internal/metrics"
	"github.com/keystile/keystile/internal/token"
	"github.com/keystile/keystile/internal/venue"
)

// newMetrics builds the server's registry. Venue labels follow the
// configuration in force (reloads included).
func (s *Server) newMetrics() *metrics.Metrics {
	return metrics.New(metrics.Options{Process: true, KnownVenue: func(id string) bool {
		_, ok := s.Config().Venues[id]
		return ok
	}})
}

// registerMetrics adds the gauges and counters read from the subsystems
// at scrape time: the audit log, the store's writer, tokens, venue rate
// limits and the server itself.
func (s *Server) registerMetrics(m *metrics.Metrics) {
	r := m.Registerer()
	ns := metrics.Namespace
	gauge := func(name, help string, f func() float64) {
		r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		r.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Name: name, Help: help}, f))
	}
	gauge("up_since_seconds", "Unix time the server started.", func() float64 { return float64(s.started.Unix()) })
	r.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Name: "build_info", Help: "Always 1; the version is a label.",
		ConstLabels: prometheus.Labels{"version": Version}}, func() float64 { return 1 }))
	gauge("restart_needed", "1 when the config file changed a section that only a restart applies.", func() float64 {
		if len(s.RestartNeeded()) > 0 {
			return 1
		}
		return 0
	})
	if s.audit != nil {
		a := s.audit
		counter("audit_records_total", "Audit records made durable.", func() float64 { return float64(a.Stats().Records) })
		counter("audit_checkpoints_total", "Signed audit checkpoints made durable.", func() float64 { return float64(a.Stats().Checkpoints) })
		counter("audit_failures_total", "Failed audit appends.", func() float64 { return float64(a.Stats().Failures) })
		counter("audit_dropped_total", "Outcome records lost (full queue, failed write, closed log).", func() float64 { return float64(a.Stats().Dropped) })
		gauge("audit_queue_depth", "Audit records waiting for the writer.", func() float64 { return float64(a.Stats().Queued) })
		gauge("audit_healthy", "1 while the audit log accepts writes.", func() float64 {
			if a.Healthy() != nil {
				return 0
			}
			return 1
		})
	}
	if s.kill != nil {
		ks := s.kill
		gauge("killswitch_trips", "Kill switch trips in force (0: off; alert on > 0).", func() float64 { return float64(len(ks.Active())) })
	}
	if s.loss != nil {
		lg := s.loss
		counter("killswitch_loss_guard_orders_total", "Accepted orders the loss guards counted.", func() float64 { return float64(lg.Stats().Counted) })
		counter("killswitch_loss_guard_dropped_total", "Order events the loss guards dropped on a full queue (not counted).", func() float64 { return float64(lg.Stats().Dropped) })
	}
	if sq, ok := s.db.(*sqliteStores); ok {
		db := sq.db
		counter("store_write_batches_total", "Group commits of the main database's writer.", func() float64 { return float64(db.WriterStats().Batches) })
		counter("store_writes_total", "Writes (budget reservations, idempotency claims, ...) in those batches.", func() float64 { return float64(db.WriterStats().Writes) })
		counter("store_writer_busy_seconds_total", "Time the writer spent running batches.", func() float64 { return db.WriterStats().Busy.Seconds() })
		counter("store_commit_seconds_total", "Of that, time in COMMIT (WAL frames and fsync).", func() float64 { return db.WriterStats().Commit.Seconds() })
		counter("store_slow_commits_total", "Commits that took over 3 ms.", func() float64 { return float64(db.WriterStats().SlowCommits) })
	}
	if s.tokens != nil {
		r.MustRegister(&tokenCollector{svc: s.tokens, desc: prometheus.NewDesc(ns+"_tokens", "Tokens by state.", []string{"state"}, nil)})
	}
	r.MustRegister(&usageCollector{s: s,
		used: prometheus.NewDesc(ns+"_venue_rate_used", "Rate-limit use of the venue key in the current window, in the window's unit.", []string{"venue", "window"}, nil),
		lim:  prometheus.NewDesc(ns+"_venue_rate_limit", "The venue's published limit for the window.", []string{"venue", "window"}, nil),
		room: prometheus.NewDesc(ns+"_venue_rate_headroom_ratio", "1 - used/limit: the share of the window left before keystile holds requests back.", []string{"venue", "window"}, nil),
	})
}

// tokenCollector counts tokens by state at scrape time (in memory).
type tokenCollector struct {
	svc  *token.Service
	desc *prometheus.Desc
}

func (c *tokenCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *tokenCollector) Collect(ch chan<- prometheus.Metric) {
	toks, err := c.svc.List(context.Background())
	if err != nil {
		return
	}
	now := time.Now()
	counts := map[string]int{"active": 0, "frozen": 0, "revoked": 0, "expired": 0}
	for _, t := range toks {
		switch {
		case !t.RevokedAt.IsZero():
			counts["revoked"]++
		case !now.Before(t.ExpiresAt):
			counts["expired"]++
		case !t.FrozenAt.IsZero():
			counts["frozen"]++
		default:
			counts["active"]++
		}
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), state)
	}
}

// usageCollector reports the rate-limit windows of the venues that model
// them (venue.RateUsage), for the venues in service now.
type usageCollector struct {
	s               *Server
	used, lim, room *prometheus.Desc
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.used
	ch <- c.lim
	ch <- c.room
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	c.s.reloadMu.Lock()
	impls := make(map[string]venue.Venue, len(c.s.venues))
	for id, b := range c.s.venues {
		impls[id] = b.gv.Impl
	}
	c.s.reloadMu.Unlock()
	now := time.Now()
	for id, impl := range impls {
		ru, ok := impl.(venue.RateUsage)
		if !ok {
			continue
		}
		for _, u := range ru.RateUsage(now) {
			ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, u.Used, id, u.Window)
			ch <- prometheus.MustNewConstMetric(c.lim, prometheus.GaugeValue, u.Limit, id, u.Window)
			if u.Limit > 0 {
				ch <- prometheus.MustNewConstMetric(c.room, prometheus.GaugeValue, max(0, 1-u.Used/u.Limit), id, u.Window)
			}
		}
	}
}
