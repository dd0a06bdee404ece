package binance

import (
	"fmt"
	"strings"

	"github.com/keystile/keystile/internal/venue"
)

// orderKind names the order.place endpoint of path: "" for a single order
// (order, order/test, sor/order, sor/order/test, order/cancelReplace),
// "oco" for the legacy POST /api/v3/order/oco, and the list type of
// /api/v3/orderList/<type>.
func orderKind(path string) (string, bool) {
	p := strings.TrimRight(path, "/")
	switch {
	case strings.HasSuffix(p, "/api/v3/order"), strings.HasSuffix(p, "/api/v3/order/test"),
		strings.HasSuffix(p, "/api/v3/sor/order"), strings.HasSuffix(p, "/api/v3/sor/order/test"),
		strings.HasSuffix(p, "/api/v3/order/cancelReplace"):
		return "", true
	case strings.Contains(p, "/api/v3/orderList/"):
		return "list:" + strings.ToLower(p[strings.LastIndexByte(p, '/')+1:]), true
	case strings.HasSuffix(p, "/api/v3/order/oco"):
		return "oco", true
	}
	return "", false
}

// Normalize implements venue.Normalizer: a single order (ParseOrder), a
// one-cancels-the-other list (either leg may fill: the order is judged at
// the worse of its legs), or, for the lists that place two orders that may
// both fill (OTO, OTOCO, OPO, OPOCO), ErrUnreadableOrder.
func (v *Venue) Normalize(r *venue.Request) (*venue.Order, error) {
	if op, _ := v.Classify(r); op != venue.OpOrderPlace {
		return nil, nil
	}
	kind, ok := orderKind(r.Path)
	if !ok {
		return nil, nil
	}
	switch kind {
	case "":
		return ParseOrder(r.RawQuery, r.Body)
	case "oco":
		return parseLegacyOCO(r.RawQuery, r.Body)
	case "list:oco":
		return parseListOCO(r.RawQuery, r.Body)
	}
	// The parameters are still checked for duplicates: that refusal
	// applies whatever the policy.
	if _, err := params(r.RawQuery, r.Body); err != nil {
		return nil, err
	}
	return nil, ErrUnreadableOrder
}

// orderParams are the parameters of order placements keystile reads.
var orderParams = []string{
	"symbol", "side", "type", "quantity", "quoteOrderQty", "price", "stopPrice", "trailingDelta",
	"pegPriceType", "newClientOrderId",
	"stopLimitPrice", "aboveType", "abovePrice", "aboveStopPrice", "belowType", "belowPrice", "belowStopPrice",
}

// params reads orderParams from the query and form body: a parameter
// given twice, in both, or in another letter case is a
// venue.ErrDuplicateParam.
func params(rawQuery string, body []byte) (map[string]string, error) {
	if isJSON(body) {
		return nil, ErrBody
	}
	f, err := venue.FormFields(rawQuery, body, botParam, orderParams...)
	if err != nil {
		return nil, fmt.Errorf("binance: order: %w", err)
	}
	m := make(map[string]string, len(orderParams))
	for i, n := range orderParams {
		m[n] = f[i]
	}
	return m, nil
}

// base fills the fields every order kind shares. The client order id is
// newClientOrderId for lists too (which name their orders otherwise), so
// that keystile never mistakes a list for a single order it could look up.
func base(p map[string]string, clientIDField string) (*venue.Order, error) {
	o := &venue.Order{Instrument: p["symbol"], Side: strings.ToLower(p["side"]), ClientOrderID: p[clientIDField]}
	if o.Instrument == "" || (o.Side != "buy" && o.Side != "sell") {
		return nil, ErrOrder
	}
	return o, nil
}

// ParseOrder reads a single order (POST /api/v3/order and its test,
// smart-order-routing and cancel-replace forms) as Binance executes it
// (its documented order types):
//
//   - MARKET: quantity in base or quoteOrderQty in quote; a price is not a
//     MARKET parameter and is ignored: the order is judged at the market.
//     Both sizes at once is refused, since Binance documents "quantity or
//     quoteOrderQty" and not which one it would read.
//   - LIMIT, LIMIT_MAKER: quantity at price.
//   - STOP_LOSS, TAKE_PROFIT: a MARKET order once stopPrice is reached
//     (or a trailingDelta moves it): judged at the worse of the trigger and
//     the market.
//   - STOP_LOSS_LIMIT, TAKE_PROFIT_LIMIT: quantity at price once stopPrice
//     is reached: the worse of the two.
//   - a pegged order (pegPriceType) takes its price from the book: the
//     market.
//   - any other type: every price it names, and the market.
func ParseOrder(rawQuery string, body []byte) (*venue.Order, error) {
	p, err := params(rawQuery, body)
	if err != nil {
		return nil, err
	}
	o, err := base(p, "newClientOrderId")
	if err != nil {
		return nil, err
	}
	typ := strings.ToUpper(p["type"])
	o.Type = strings.ToLower(typ)
	o.Quantity, o.Notional = p["quantity"], p["quoteOrderQty"]
	switch typ {
	case "MARKET":
		o.Market = true
		if o.Quantity != "" && o.Notional != "" {
			return nil, fmt.Errorf("%w: a MARKET order with both quantity and quoteOrderQty", ErrOrder)
		}
	case "LIMIT", "LIMIT_MAKER":
		o.Price = p["price"]
	case "STOP_LOSS", "TAKE_PROFIT":
		o.Market, o.TriggerPrice = true, p["stopPrice"]
	case "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT":
		o.Price, o.TriggerPrice = p["price"], p["stopPrice"]
	default:
		o.Market, o.Price, o.TriggerPrice = true, p["price"], p["stopPrice"]
	}
	if p["pegPriceType"] != "" {
		o.Market = true
	}
	return o, nil
}

// parseLegacyOCO reads POST /api/v3/order/oco: a LIMIT_MAKER leg at price
// and a stop leg triggered at stopPrice, executed at stopLimitPrice if
// given, else at the market; both of quantity, and either may fill.
func parseLegacyOCO(rawQuery string, body []byte) (*venue.Order, error) {
	p, err := params(rawQuery, body)
	if err != nil {
		return nil, err
	}
	o, err := base(p, "newClientOrderId")
	if err != nil {
		return nil, err
	}
	o.Type, o.Quantity, o.Price, o.TriggerPrice = "oco", p["quantity"], p["price"], p["stopPrice"]
	if lp := p["stopLimitPrice"]; lp != "" {
		o.LegPrices = []string{lp}
	} else {
		o.Market = true
	}
	return o, nil
}

// parseListOCO reads POST /api/v3/orderList/oco: an above and a below leg
// of one quantity, each of its own type (LIMIT_MAKER, STOP_LOSS,
// STOP_LOSS_LIMIT, TAKE_PROFIT, TAKE_PROFIT_LIMIT) with a price and/or a
// stop price; either may fill.
func parseListOCO(rawQuery string, body []byte) (*venue.Order, error) {
	p, err := params(rawQuery, body)
	if err != nil {
		return nil, err
	}
	o, err := base(p, "newClientOrderId")
	if err != nil {
		return nil, err
	}
	o.Type, o.Quantity = "oco", p["quantity"]
	for _, leg := range []string{"above", "below"} {
		switch strings.ToUpper(p[leg+"Type"]) {
		case "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT":
		default: // STOP_LOSS, TAKE_PROFIT (market once triggered), or unknown
			o.Market = true
		}
		for _, f := range []string{leg + "Price", leg + "StopPrice"} {
			if v := p[f]; v != "" {
				if o.Price == "" && f == leg+"Price" {
					o.Price = v
				} else {
					o.LegPrices = append(o.LegPrices, v)
				}
			}
		}
	}
	return o, nil
}
