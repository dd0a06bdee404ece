package audit

import (
	"context"
	"log/slog"
	"time"
)

// Decisions.
const (
	Allow = "allow"
	Deny  = "deny"
	Error = "error"
)

// Event is one gateway decision and its outcome.
type Event struct {
	Time      time.Time     `json:"time"`
	RequestID string        `json:"request_id"`
	TokenID   string        `json:"token_id,omitempty"` // public id, never the token
	Source    string        `json:"source,omitempty"`
	Venue     string        `json:"venue,omitempty"`
	Method    string        `json:"method"`
	Path      string        `json:"path"` // escaped path below the venue, no query
	Operation string        `json:"operation,omitempty"`
	Decision  string        `json:"decision"`
	Rule      string        `json:"rule,omitempty"`  // e.g. token.scope, venue.unmapped_route
	Status    int           `json:"status"`          // status answered to the bot
	Upstream  int           `json:"upstream_status"` // 0 when nothing was forwarded
	Latency   time.Duration `json:"latency_ns"`      // total time in keystile
	// UpstreamLatency is the time spent waiting for the venue (every
	// attempt, retries and back-off included); Latency minus it is the
	// time keystile added. Not part of the audit record.
	UpstreamLatency time.Duration `json:"upstream_latency_ns,omitempty"`
	Error           string        `json:"error,omitempty"` // internal detail (never a secret)

	// Normalized order fields (decimal strings as the venue's normalizer
	// produced them; "" when the operation carries none).
	Instrument    string `json:"instrument,omitempty"`
	Side          string `json:"side,omitempty"`
	OrderType     string `json:"order_type,omitempty"`
	Quantity      string `json:"quantity,omitempty"`
	Price         string `json:"price,omitempty"`
	Notional      string `json:"notional,omitempty"`
	ClientOrderID string `json:"client_order_id,omitempty"`
	// VenueOrderID is the venue's id for the order, when its answer had one.
	VenueOrderID string `json:"venue_order_id,omitempty"`

	// Actor, Reason and Detail describe an action (Log.Action: a kill
	// switch engaged or cleared, orders cancelled, a token frozen): who
	// pulled the lever ("admin uid=1000", "bot", "killswitch.loss_guard"),
	// why (the operator's or the bot's words), and what it did (compact
	// JSON). They are empty for gateway requests.
	Actor  string `json:"actor,omitempty"`
	Reason string `json:"reason,omitempty"`
	Detail string `json:"detail,omitempty"`
	// Evidence is a detect record's evidence (Log.Detect only; JSON text,
	// never a secret).
	Evidence string `json:"evidence,omitempty"`
}

// Sink receives events. Record must not block the request path for long
// and must be safe for concurrent use.
type Sink interface {
	Record(ctx context.Context, e Event)
}

// LogSink writes events to a structured logger at info level.
type LogSink struct{ Logger *slog.Logger }

// Record implements Sink.
func (s LogSink) Record(ctx context.Context, e Event) {
	if s.Logger == nil {
		return
	}
	s.Logger.LogAttrs(ctx, slog.LevelInfo, "gateway: request",
		slog.String("request_id", e.RequestID), slog.String("token_id", e.TokenID), slog.String("source", e.Source),
		slog.String("venue", e.Venue), slog.String("method", e.Method), slog.String("path", e.Path),
		slog.String("operation", e.Operation), slog.String("decision", e.Decision), slog.String("rule", e.Rule),
		slog.Int("status", e.Status), slog.Int("upstream_status", e.Upstream), slog.Duration("latency", e.Latency),
		slog.String("error", e.Error))
}

// Discard drops events.
type Discard struct{}

// Record implements Sink.
func (Discard) Record(context.Context, Event) {}

var (
	_ Sink = LogSink{}
	_ Sink = Discard{}
)
