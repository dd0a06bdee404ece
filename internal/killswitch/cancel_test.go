package killswitch_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/killswitch"
	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/binance"
	"github.com/keystile/keystile/internal/venue/dmarket"
	"github.com/keystile/keystile/internal/venue/okx"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

// gatedSender signs with v and sends over rt (the switch's gate in front
// of a plain transport), like the gateway's Direct sender.
func gatedSender(v venue.Venue, base string, rt http.RoundTripper) venue.Sender {
	return func(ctx context.Context, r *venue.Request) (int, []byte, error) {
		req, err := venue.NewHTTPRequest(ctx, base, r)
		if err != nil {
			return 0, nil, err
		}
		if err := v.Authenticate(ctx, req, r.Body); err != nil {
			return 0, nil, err
		}
		resp, err := rt.RoundTrip(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, b, err
	}
}

// TestCancelOrders: with the switch engaged (bots refused at the gate),
// CancelOrders still reaches every venue, cancels everything there,
// retries a venue whose first pass failed, reports a venue type without a
// cancel-all procedure, and audits each venue's report.
func TestCancelOrders(t *testing.T) {
	ctx := context.Background()
	sb, err := sandbox.Start(ctx, sandbox.Options{Venues: []string{sandbox.VenueBinance, sandbox.VenueOKX, sandbox.VenueDMarket}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	info := sb.Info().Venues
	bin, err := binance.New(binance.Options{Credentials: venuetest.MapCredentials(info[sandbox.VenueBinance].Credentials), ClockSync: -1})
	if err != nil {
		t.Fatal(err)
	}
	ox, err := okx.New(okx.Options{Credentials: venuetest.MapCredentials(info[sandbox.VenueOKX].Credentials)})
	if err != nil {
		t.Fatal(err)
	}
	dm, err := dmarket.New(dmarket.Options{Credentials: venuetest.MapCredentials(info[sandbox.VenueDMarket].Credentials)})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := sb.AddOrders(sandbox.VenueBinance, "", []sandbox.Order{{Instrument: []string{"BTCUSDT", "ETHUSDT"}[i%2], Side: "buy"}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := sb.AddOrders(sandbox.VenueOKX, "", []sandbox.Order{{Instrument: "BTC-USDT"}, {Instrument: "ETH-USDT"}}); err != nil {
		t.Fatal(err)
	}
	// OKX's first cancel-batch-orders answers 503: a second pass is needed.
	if err := sb.InjectFault(sandbox.VenueOKX, sandbox.Fault{Kind: sandbox.FaultStatus, Status: 503, PathPrefix: "/api/v5/trade/cancel-batch-orders"}); err != nil {
		t.Fatal(err)
	}

	db, _ := openDB(t)
	al := newAuditLog(t)
	var s *killswitch.Switch
	s = newSwitch(t, db.Trips(), al, func(o *killswitch.Options) {
		o.Endpoints = func() []killswitch.Endpoint {
			return []killswitch.Endpoint{
				{Venue: "binance", Test: true, Impl: bin, Send: gatedSender(bin, info[sandbox.VenueBinance].BaseURL, s.Transport("binance", http.DefaultTransport))},
				{Venue: "okx", Impl: ox, Send: gatedSender(ox, info[sandbox.VenueOKX].BaseURL, s.Transport("okx", http.DefaultTransport))},
				{Venue: "dmarket", Impl: dm, Send: gatedSender(dm, info[sandbox.VenueDMarket].BaseURL, s.Transport("dmarket", http.DefaultTransport))},
			}
		}
	})
	panicAll(t, s)
	// A bot's request is refused at the gate...
	botReq, _ := http.NewRequest("GET", info[sandbox.VenueBinance].BaseURL+"/api/v3/ping", nil)
	if _, err := s.Transport("binance", http.DefaultTransport).RoundTrip(botReq); err == nil {
		t.Fatal("a bot request passed the engaged switch")
	}
	// ...keystile's own cancel requests pass.
	reps, err := s.CancelOrders(ctx, killswitch.Cancellation{Actor: "admin uid=1000", Reason: "panic", RequestID: "req-9"})
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 3 {
		t.Fatalf("reports: %+v", reps)
	}
	byVenue := map[string]killswitch.CancelReport{}
	for _, r := range reps {
		byVenue[r.Venue] = r
	}
	if r := byVenue["binance"]; !r.OK() || len(r.Cancelled) != 3 || r.Endpoint != "test" || r.Passes != 1 {
		t.Errorf("binance: %+v", r)
	}
	if r := byVenue["okx"]; !r.OK() || len(r.Cancelled) != 2 || r.Passes != 2 {
		t.Errorf("okx (first pass failed): %+v", r)
	}
	if r := byVenue["dmarket"]; r.Supported || r.OK() || r.Error == "" {
		t.Errorf("dmarket: %+v", r)
	}
	for _, v := range []string{sandbox.VenueBinance, sandbox.VenueOKX} {
		for _, o := range sb.Orders(v) {
			if o.Status == sandbox.OrderOpen {
				t.Errorf("%s: order %s still open", v, o.ID)
			}
		}
	}
	recs := al.actions(t, killswitch.OpCancelOrders)
	if len(recs) != 3 {
		t.Fatalf("audit records: %d", len(recs))
	}
	for _, r := range recs {
		if r.Actor != "admin uid=1000" || r.RequestID != "req-9" || r.Rule != killswitch.RuleCancelOrders {
			t.Errorf("record %+v", r)
		}
		switch r.Venue {
		case "binance":
			if r.Decision != "allow" || !strings.Contains(r.Detail, `"cancelled":3`) {
				t.Errorf("binance record: %s", r.Raw)
			}
		case "dmarket":
			if r.Decision != "error" || r.Error == "" {
				t.Errorf("dmarket record: %s", r.Raw)
			}
		}
	}

	// One venue only; an unknown one is an error.
	if reps, err := s.CancelOrders(ctx, killswitch.Cancellation{Venue: "binance", Actor: "a"}); err != nil || len(reps) != 1 || reps[0].Venue != "binance" {
		t.Fatalf("one venue: %+v %v", reps, err)
	}
	if _, err := s.CancelOrders(ctx, killswitch.Cancellation{Venue: "nope", Actor: "a"}); err == nil {
		t.Fatal("unknown venue accepted")
	}
}
