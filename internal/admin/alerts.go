package admin

import (
	"context"
	"errors"
	"net/http"
	"strconv"

	"github.com/keystile/keystile/internal/alert"
)

// Alert API paths.
const (
	PathAlerts     = "/v1/alerts"
	PathAlertsTest = "/v1/alerts/test"
)

// Alerts is what the admin API needs of the alert dispatcher
// (*alert.Dispatcher satisfies it).
type Alerts interface {
	Status(ctx context.Context) alert.Status
	// Test sends a test alert to the named sink ("" for all) and reports
	// each outcome; alert.ErrUnknownSink for a name not configured.
	Test(ctx context.Context, sink string) ([]alert.TestResult, error)
}

// AlertTestRequest is the body of POST /v1/alerts/test.
type AlertTestRequest struct {
	// Sink names one sink; "" tests every sink.
	Sink string `json:"sink,omitempty"`
}

// AlertTestResponse is the answer of POST /v1/alerts/test.
type AlertTestResponse struct {
	Results []alert.TestResult `json:"results"`
}

// AlertRoutes registers GET /v1/alerts (status of the dispatcher and each
// sink) and POST /v1/alerts/test on mux.
func AlertRoutes(mux *http.ServeMux, a Alerts, log interface {
	Warn(msg string, args ...any)
}) {
	mux.HandleFunc("GET "+PathAlerts, func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, a.Status(r.Context()))
	})
	mux.HandleFunc("POST "+PathAlertsTest, func(w http.ResponseWriter, r *http.Request) {
		var req AlertTestRequest
		if !DecodeJSON(w, r, &req) {
			return
		}
		res, err := a.Test(r.Context(), req.Sink)
		switch {
		case errors.Is(err, alert.ErrUnknownSink):
			WriteError(w, http.StatusNotFound, "not_found", "no alert sink named "+quote(req.Sink)+" (see keystile alert status)")
			return
		case err != nil:
			log.Warn("admin: alert test failed", "err", err)
			WriteError(w, http.StatusServiceUnavailable, "unavailable", "alerts are not available (the server is shutting down)")
			return
		}
		if res == nil {
			res = []alert.TestResult{}
		}
		WriteJSON(w, http.StatusOK, AlertTestResponse{Results: res})
	})
}

// quote bounds and quotes a name for a message.
func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}

// AlertStatus fetches the alert dispatcher's status.
func (c *Client) AlertStatus(ctx context.Context) (alert.Status, error) {
	var s alert.Status
	return s, c.Do(ctx, http.MethodGet, PathAlerts, nil, &s)
}

// TestAlerts sends a test alert to sink ("" for every sink).
func (c *Client) TestAlerts(ctx context.Context, sink string) ([]alert.TestResult, error) {
	var r AlertTestResponse
	return r.Results, c.Do(ctx, http.MethodPost, PathAlertsTest, AlertTestRequest{Sink: sink}, &r)
}

var _ Alerts = (*alert.Dispatcher)(nil)
