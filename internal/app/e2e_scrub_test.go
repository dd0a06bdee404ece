package app_test

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/sandbox"
)

// TestE2EScrubKeepsTimestamps: Bybit, OKX and DMarket answers that echo
// the timestamp keystile signed with (the emulators put the request's own
// X-BAPI-TIMESTAMP in Bybit's "time", OK-ACCESS-TIMESTAMP's milliseconds in
// an OKX order's "ts", X-Sign-Date in a DMarket target's "CreatedAt") reach
// the bot as valid JSON with the timestamp and the order id intact, no
// placeholder anywhere, and no credential value in any case.
func TestE2EScrubKeepsTimestamps(t *testing.T) {
	var vs []e2eVenue
	for _, v := range append(exchangeVenues(), e2eVenues()...) {
		switch v.id {
		case sandbox.VenueBybit, sandbox.VenueOKX, sandbox.VenueDMarket:
			vs = append(vs, v)
		}
	}
	h := startHarness(t, harnessOptions{Venues: vs})
	tok := h.botToken(t).Token
	recent := func(t *testing.T, what string, n json.Number, unit time.Duration) {
		t.Helper()
		v, err := n.Int64()
		if d := time.Since(time.Unix(0, v*int64(unit))); err != nil || d < -time.Minute || d > 3*time.Minute {
			t.Errorf("%s = %q: not the recent timestamp signed with", what, n)
		}
	}
	for _, v := range vs {
		t.Run(v.id, func(t *testing.T) {
			for _, r := range []botRequest{v.read, v.order} {
				resp := h.mustCall(t, tok, v.id, r)
				wantOK(t, v.id, r, resp)
				if !json.Valid(resp.body) {
					t.Fatalf("%s %s: the answer is not JSON: %s", r.method, r.path, resp.body)
				}
				if bytes.Contains(resp.body, []byte("REDACTED")) {
					t.Errorf("%s %s: a placeholder in the answer: %s", r.method, r.path, resp.body)
				}
				raw := strings.ToLower(resp.raw())
				for name, val := range h.info.Venues[v.id].Credentials {
					if len(val) >= 8 && strings.Contains(raw, strings.ToLower(val)) {
						t.Errorf("%s %s: the answer holds the credential's %s", r.method, r.path, name)
					}
				}
				d := json.NewDecoder(bytes.NewReader(resp.body))
				d.UseNumber()
				switch {
				case v.id == sandbox.VenueBybit:
					var a struct {
						Time   json.Number
						Result struct{ OrderID string }
					}
					if err := d.Decode(&a); err != nil {
						t.Fatal(err)
					}
					recent(t, "bybit time", a.Time, time.Millisecond)
					if r == v.order && a.Result.OrderID == "" {
						t.Errorf("bybit order: no orderId: %s", resp.body)
					}
				case v.id == sandbox.VenueOKX && r == v.order:
					var a struct {
						Data []struct {
							OrdID string
							TS    json.Number
						}
					}
					if err := d.Decode(&a); err != nil || len(a.Data) != 1 || a.Data[0].OrdID == "" {
						t.Fatalf("okx order: %v %s", err, resp.body)
					}
					recent(t, "okx ts", a.Data[0].TS, time.Millisecond)
				case v.id == sandbox.VenueDMarket && r == v.order:
					var a struct {
						Result []struct {
							CreateTarget struct {
								TargetID  string
								CreatedAt json.Number
							}
						}
					}
					if err := d.Decode(&a); err != nil || len(a.Result) != 1 || a.Result[0].CreateTarget.TargetID == "" {
						t.Fatalf("dmarket order: %v %s", err, resp.body)
					}
					recent(t, "dmarket CreatedAt", a.Result[0].CreateTarget.CreatedAt, time.Second)
				}
			}
		})
	}
}
