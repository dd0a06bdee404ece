// Package metrics exposes keystile's Prometheus metrics: what the gateway
// decided, how long it took (the time keystile added and the time spent at
// the venue), upstream errors and retries, venue rate-limit headroom, order
// notional, the audit log's commits and queue, and the store's writer.
//
// Labels are bounded by the configuration, never by input: the venue label
// is a configured venue id (anything else is "other"), operations come from
// the venues' tables, rules from the fixed rule ids and the configured
// policy and budget names. No token, token id, source address, secret or
// client order id is ever a label or a value.
package metrics

import (
	"context"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/shopspring/decimal"

	"github.com/keystile/keystile/internal/audit"
)

// Namespace prefixes every metric name.
const Namespace = "keystile"

// Other is the label value that stands for anything outside the bounded
// set (an unknown venue id, an unexpected rule).
const Other = "other"

// Options configure New.
type Options struct {
	// KnownVenue reports whether id is a configured venue (it follows
	// reloads). If nil, every venue label is Other.
	KnownVenue func(id string) bool
	// Process adds the Go runtime and process collectors.
	Process bool
}

// Metrics is a registry with keystile's collectors. It implements
// audit.Sink: the gateway's events feed it. Safe for concurrent use.
type Metrics struct {
	reg   *prometheus.Registry
	known func(string) bool

	requests *prometheus.CounterVec
	added    *prometheus.HistogramVec
	upstream *prometheus.HistogramVec
	answers  *prometheus.CounterVec
	retries  *prometheus.CounterVec
	notional *prometheus.CounterVec
	orders   *prometheus.CounterVec
	commits  prometheus.Histogram
	batch    prometheus.Histogram
}

// Buckets of the latency histograms, in seconds: 50 µs to 10 s.
var latencyBuckets = []float64{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// New builds the registry.
func New(o Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry(), known: o.KnownVenue}
	if m.known == nil {
		m.known = func(string) bool { return false }
	}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "requests_total",
		Help: "Bot requests by venue, operation, decision (allow, deny, error) and the rule that decided."},
		[]string{"venue", "operation", "decision", "rule"})
	m.added = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "gateway_added_seconds",
		Help: "Time keystile added to a request (total minus time at the venue), by venue and decision.", Buckets: latencyBuckets},
		[]string{"venue", "decision"})
	m.upstream = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Name: "upstream_seconds",
		Help: "Time waiting for the venue (all attempts), by venue, for requests that were forwarded.", Buckets: latencyBuckets},
		[]string{"venue"})
	m.answers = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "upstream_responses_total",
		Help: "Forwarded requests by venue and outcome: the answer's status class (2xx, 3xx, 4xx, 5xx) or error (no answer)."},
		[]string{"venue", "class"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "upstream_retries_total",
		Help: "Upstream retries by venue (reads, and writes that provably never left)."}, []string{"venue"})
	m.notional = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "order_notional_total",
		Help: "Notional of order placements by venue, quote currency and decision (what budgets are charged)."},
		[]string{"venue", "currency", "decision"})
	m.orders = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Name: "orders_total",
		Help: "Order placements by venue and decision."}, []string{"venue", "decision"})
	m.commits = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "audit_commit_seconds",
		Help: "Duration of the audit log's group commits (write and fsync).", Buckets: latencyBuckets})
	m.batch = prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Name: "audit_commit_records",
		Help: "Records per audit group commit.", Buckets: prometheus.ExponentialBuckets(1, 2, 11)})
	m.reg.MustRegister(m.requests, m.added, m.upstream, m.answers, m.retries, m.notional, m.orders, m.commits, m.batch)
	if o.Process {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registerer is where subsystems register their own collectors (GaugeFunc,
// CounterFunc over their counters).
func (m *Metrics) Registerer() prometheus.Registerer { return m.reg }

// Handler serves the metrics in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// venueLabel bounds the venue label to configured venues.
func (m *Metrics) venueLabel(id string) string {
	if id != "" && m.known(id) {
		return id
	}
	return Other
}

// labelRE is what a rule id or operation looks like; anything else is
// Other (a label never carries request bytes).
var labelRE = regexp.MustCompile(`^[a-z0-9_*]+(\.[a-zA-Z0-9_*-]+){0,4}$`)

func bounded(s string) string {
	if s == "" {
		return ""
	}
	if len(s) > 96 || !labelRE.MatchString(s) {
		return Other
	}
	return s
}

// Record implements audit.Sink.
func (m *Metrics) Record(_ context.Context, e audit.Event) {
	v := m.venueLabel(e.Venue)
	op := e.Operation
	if v == Other {
		op = ""
	}
	m.requests.WithLabelValues(v, bounded(op), bounded(e.Decision), bounded(e.Rule)).Inc()
	added := e.Latency - e.UpstreamLatency
	if added < 0 {
		added = 0
	}
	m.added.WithLabelValues(v, bounded(e.Decision)).Observe(added.Seconds())
	if e.Upstream != 0 || e.UpstreamLatency > 0 {
		m.upstream.WithLabelValues(v).Observe(e.UpstreamLatency.Seconds())
		class := "error"
		if e.Upstream >= 100 && e.Upstream < 600 {
			class = strconv.Itoa(e.Upstream/100) + "xx"
		}
		m.answers.WithLabelValues(v, class).Inc()
	}
	if e.Operation == "order.place" && v != Other {
		m.orders.WithLabelValues(v, bounded(e.Decision)).Inc()
		if amount, cur, ok := parseNotional(e.Notional); ok {
			// A counter that once adds +Inf stays +Inf: skip what a
			// float cannot hold.
			if f, _ := amount.Float64(); !math.IsInf(f, 0) && !math.IsNaN(f) {
				m.notional.WithLabelValues(v, cur, bounded(e.Decision)).Add(f)
			}
		}
	}
}

// ObserveAuditCommit records one audit group commit (audit.Options.ObserveCommit).
// A nil Metrics ignores it.
func (m *Metrics) ObserveAuditCommit(d time.Duration, records int) {
	if m == nil {
		return
	}
	m.commits.Observe(d.Seconds())
	m.batch.Observe(float64(records))
}

// OnRetry counts one upstream retry of venue id (gateway.Options.OnRetry).
func (m *Metrics) OnRetry(id string) { m.retries.WithLabelValues(m.venueLabel(id)).Inc() }

var currencyRE = regexp.MustCompile(`^[A-Z0-9]{2,10}$`)

// parseNotional reads an event's notional, "60 USDT" (or a bare number,
// which has no currency to label and is skipped).
func parseNotional(s string) (decimal.Decimal, string, bool) {
	num, cur, ok := strings.Cut(strings.TrimSpace(s), " ")
	if !ok || !currencyRE.MatchString(cur) {
		return decimal.Decimal{}, "", false
	}
	d, err := decimal.NewFromString(num)
	if err != nil || d.IsNegative() {
		return decimal.Decimal{}, "", false
	}
	return d, cur, true
}
