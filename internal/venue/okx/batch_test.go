package okx

import (
	"errors"
	"reflect"
	"testing"

	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/venuetest"
)

const batchPath = "/api/v5/trade/batch-orders"

// TestNormalizeBatch: a batch of one order is that order; several orders,
// an empty batch or anything but one JSON array are refused.
func TestNormalizeBatch(t *testing.T) {
	v := newVenue(t, "k", "s", "p", nil)
	one := `{"instId":"BTC-USDT","tdMode":"cash","side":"buy","ordType":"limit","px":"30000","sz":"0.01","clOrdId":"c1"}`
	tests := []struct {
		name, body string
		want       *venue.Order
		batch      bool // wants venue.ErrBatchOrders
	}{
		{"one order", "[" + one + "]", &venue.Order{Instrument: "BTC-USDT", Side: "buy", Type: "limit", Quantity: "0.01", Price: "30000", ClientOrderID: "c1"}, false},
		{"spaces", " [ \n" + one + " ] ", &venue.Order{Instrument: "BTC-USDT", Side: "buy", Type: "limit", Quantity: "0.01", Price: "30000", ClientOrderID: "c1"}, false},
		{"two orders", "[" + one + "," + one + "]", nil, true},
		{"empty", "[]", nil, false},
		{"object", one, nil, false},
		{"nested", "[[" + one + "]]", nil, false},
		{"trailing comma", "[" + one + ",]", nil, false},
		{"trailing data", "[" + one + "] []", nil, false},
		{"an order without size", `[{"instId":"BTC-USDT","side":"buy","ordType":"limit","px":"1"}]`, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := v.Normalize(&venue.Request{Method: "POST", Path: batchPath, Body: []byte(tt.body)})
			switch {
			case tt.want != nil:
				if err != nil || !reflect.DeepEqual(o, tt.want) {
					t.Fatalf("got %+v, %v; want %+v", o, err, tt.want)
				}
			case tt.batch:
				if !errors.Is(err, venue.ErrBatchOrders) {
					t.Fatalf("got %+v, %v; want ErrBatchOrders", o, err)
				}
			default:
				if err == nil || errors.Is(err, venue.ErrBatchOrders) {
					t.Fatalf("got %+v, %v; want a malformed-order error", o, err)
				}
			}
		})
	}
}

// TestSetClientOrderIDBatch: the id goes into the batch's only order; the
// bytes around it are kept.
func TestSetClientOrderIDBatch(t *testing.T) {
	v := newVenue(t, "k", "s", "p", nil)
	venuetest.RunSetClientOrderIDJSON(t, v, "id1", []venuetest.JSONCase{
		{"added", batchPath, `[ {"instId":"BTC-USDT","side":"buy","ordType":"market","sz":"1"} ]`,
			`[ {"instId":"BTC-USDT","side":"buy","ordType":"market","sz":"1","clOrdId":"id1"} ]`, false},
		{"replaced", batchPath, `[{"clOrdId":"a","instId":"BTC-USDT","side":"buy","ordType":"market","sz":"1"}]`,
			`[{"clOrdId":"id1","instId":"BTC-USDT","side":"buy","ordType":"market","sz":"1"}]`, false},
		{"two orders", batchPath, `[{"instId":"BTC-USDT","side":"buy","ordType":"market","sz":"1"},{"instId":"BTC-USDT","side":"buy","ordType":"market","sz":"1"}]`, "", true},
		{"not an array", batchPath, `{"instId":"BTC-USDT","side":"buy","ordType":"market","sz":"1"}`, "", true},
	})
}

// FuzzBatchOrder: whatever the body, Normalize of a batch never panics; a
// body it reads as one order survives SetClientOrderID (the new id read
// back, the other fields unchanged); a body with several orders is always
// ErrBatchOrders, never one of its orders.
func FuzzBatchOrder(f *testing.F) {
	f.Add(`[{"instId":"BTC-USDT","side":"buy","ordType":"limit","px":"1","sz":"2"}]`, []byte("s"))
	f.Add(`[{"instId":"BTC-USDT","side":"buy","ordType":"limit","px":"1","sz":"2"},{"instId":"ETH-USDT","side":"sell","ordType":"market","sz":"9"}]`, []byte{1})
	f.Add(`[{"instId":"BTC-USDT","side":"sell","ordType":"market","sz":2e3,"tgtCcy":"quote_ccy","clOrdId":"x","clOrdId":"y"}]`, []byte{})
	f.Add(`[]`, []byte{2})
	f.Add(`[[]]`, []byte{3})
	f.Fuzz(func(t *testing.T, body string, seed []byte) {
		v := newVenue(t, "k", "s", "p", nil)
		r := &venue.Request{Method: "POST", Path: batchPath, Body: []byte(body)}
		o, err := v.Normalize(r)
		if elems, _, aerr := venue.JSONArray([]byte(body)); aerr == nil && len(elems) > 1 {
			if !errors.Is(err, venue.ErrBatchOrders) || o != nil {
				t.Fatalf("a batch of %d orders gave %+v, %v", len(elems), o, err)
			}
			return
		}
		venuetest.SetClientOrderIDRoundTrip(t, v, r, seed)
	})
}
