package kraken

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/keystile/keystile/internal/venue"
)

// Normalize implements venue.Normalizer for AddOrder and EditOrder (form
// or query); AddOrderBatch wraps venue.ErrBatchOrders; the other
// order.place endpoints (AmendOrder) give ErrUnreadableOrder, after a
// check for parameters given twice.
func (v *Venue) Normalize(r *venue.Request) (*venue.Order, error) {
	if op, _ := v.Classify(r); op != venue.OpOrderPlace {
		return nil, nil
	}
	p := strings.TrimRight(r.Path, "/")
	switch p[strings.LastIndexByte(p, '/')+1:] {
	case "AddOrder":
		return ParseOrder(r.RawQuery, r.Body)
	case "EditOrder":
		return parseEdit(r.RawQuery, r.Body)
	}
	// Unread, but a duplicate is refused whatever the policy.
	if t := bytes.TrimSpace(r.Body); len(t) > 0 && (t[0] == '{' || t[0] == '[') {
		if err := venue.CheckJSONKeys(r.Body); err != nil {
			return nil, fmt.Errorf("kraken: order: %w", err)
		}
	} else if _, err := venue.FormParams(r.RawQuery, r.Body, func(k string) bool { return k == "nonce" }); err != nil {
		return nil, fmt.Errorf("kraken: order: %w", err)
	}
	if strings.HasSuffix(p, "/AddOrderBatch") {
		// Two to fifteen orders by Kraken's rules: always a batch.
		return nil, fmt.Errorf("kraken: AddOrderBatch: %w", venue.ErrBatchOrders)
	}
	return nil, ErrUnreadableOrder
}

// ParseOrder reads an AddOrder request from its query and form body as
// Kraken executes it (its documented order types):
//
//   - market: volume at the market; a price is not read.
//   - limit, iceberg: volume at price.
//   - stop-loss, take-profit, trailing-stop: a market order once price
//     (the trigger; an offset for trailing stops) is reached.
//   - stop-loss-limit, take-profit-limit, trailing-stop-limit: volume at
//     price2 once price is reached.
//   - settle-position settles a margin position whatever the request
//     says: ErrUnreadableOrder.
//   - any other type: every price it names, and the market.
//
// With oflags viqc the volume is in quote currency (the notional). Prices
// are passed on as sent: a relative one (+5, -5, #5, 5%) is no plain
// decimal, and a policy that needs the order's notional refuses it.
func ParseOrder(rawQuery string, body []byte) (*venue.Order, error) {
	get, err := forms(rawQuery, body)
	if err != nil {
		return nil, err
	}
	o := &venue.Order{
		Instrument:    get("pair"),
		Side:          strings.ToLower(get("type")),
		Type:          strings.ToLower(get("ordertype")),
		Quantity:      get("volume"),
		ClientOrderID: get("cl_ord_id"),
	}
	if o.ClientOrderID == "" {
		o.ClientOrderID = get("userref")
	}
	if o.Instrument == "" || (o.Side != "buy" && o.Side != "sell") {
		return nil, fmt.Errorf("kraken: order needs pair and type buy or sell")
	}
	price, price2 := get("price"), get("price2")
	switch o.Type {
	case "settle-position":
		// Settles a margin position at its original price: what it
		// moves depends on the position, not on this request.
		return nil, fmt.Errorf("%w: settle-position", ErrUnreadableOrder)
	case "market":
		o.Market = true
	case "limit", "iceberg":
		o.Price = price
	case "stop-loss", "take-profit", "trailing-stop":
		o.Market, o.TriggerPrice = true, price
	case "stop-loss-limit", "take-profit-limit", "trailing-stop-limit":
		o.TriggerPrice, o.Price = price, price2
	default:
		o.Market, o.Price = true, price
		if price2 != "" {
			o.LegPrices = []string{price2}
		}
	}
	if strings.Contains(get("oflags"), "viqc") {
		// Volume in quote currency: the amount is a notional.
		o.Notional, o.Quantity = o.Quantity, ""
	}
	return o, nil
}

// parseEdit reads EditOrder's pair, new volume and prices. The request
// names neither the side nor the type of the order it edits, so it is
// judged at the worst it could be: every price it names, and the market.
func parseEdit(rawQuery string, body []byte) (*venue.Order, error) {
	f, err := forms(rawQuery, body)
	if err != nil {
		return nil, err
	}
	o := &venue.Order{Instrument: f("pair"), Type: "edit", Quantity: f("volume"), Price: f("price"), ClientOrderID: f("cl_ord_id"), Market: true}
	if p2 := f("price2"); p2 != "" {
		o.LegPrices = []string{p2}
	}
	if strings.Contains(f("oflags"), "viqc") {
		o.Notional, o.Quantity = o.Quantity, ""
	}
	if o.Instrument == "" {
		return nil, fmt.Errorf("kraken: edit order needs pair")
	}
	return o, nil
}
