package policy

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"github.com/shopspring/decimal"
)

// CEL limits: expressions are operator-written, but a typo must not turn
// into a request path that burns CPU.
const (
	maxExprLen     = 4096
	celCostLimit   = 10_000
	celParserDepth = 64
)

// newCELEnv declares the variables and helpers an expr may use:
//
//	request: map(string, dyn) with venue, operation, method, path, query,
//	         token (the public token id) as strings and time as a timestamp
//	order:   map(string, string) with instrument, side, type, quantity,
//	         price, trigger_price, notional (as charged), currency,
//	         client_order_id ("" when absent)
//	dec_lt, dec_le, dec_gt, dec_ge, dec_eq(string, string) -> bool compare
//	         plain decimal strings exactly (an unparsable one is an error,
//	         which denies)
func newCELEnv() (*cel.Env, error) {
	opts := []cel.EnvOption{
		cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("order", cel.MapType(cel.StringType, cel.StringType)),
		cel.ParserRecursionLimit(celParserDepth),
		cel.ParserExpressionSizeLimit(maxExprLen),
	}
	cmp := map[string]func(c int) bool{
		"dec_lt": func(c int) bool { return c < 0 },
		"dec_le": func(c int) bool { return c <= 0 },
		"dec_gt": func(c int) bool { return c > 0 },
		"dec_ge": func(c int) bool { return c >= 0 },
		"dec_eq": func(c int) bool { return c == 0 },
	}
	for name, ok := range cmp {
		opts = append(opts, cel.Function(name, cel.Overload(name+"_string_string",
			[]*cel.Type{cel.StringType, cel.StringType}, cel.BoolType,
			cel.BinaryBinding(func(a, b ref.Val) ref.Val {
				x, err := celDecimal(a)
				if err != nil {
					return types.NewErr("%s: %v", name, err)
				}
				y, err := celDecimal(b)
				if err != nil {
					return types.NewErr("%s: %v", name, err)
				}
				return types.Bool(ok(x.Cmp(y)))
			}))))
	}
	return cel.NewEnv(opts...)
}

func celDecimal(v ref.Val) (decimal.Decimal, error) {
	s, ok := v.Value().(string)
	if !ok {
		return decimal.Decimal{}, errors.New("not a string")
	}
	return parsePlain(s)
}

// compileExpr type-checks src: it must be a bool expression.
func compileExpr(env *cel.Env, src string) (cel.Program, error) {
	if len(src) > maxExprLen {
		return nil, fmt.Errorf("longer than %d characters", maxExprLen)
	}
	ast, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		// One line per problem, "col N: message", without CEL's source
		// excerpt (the expression is in the file already).
		var msgs []string
		for _, e := range iss.Errors() {
			msgs = append(msgs, fmt.Sprintf("column %d: %s", e.Location.Column()+1, e.Message))
		}
		return nil, errors.New(strings.Join(msgs, "; "))
	}
	if !ast.OutputType().IsExactType(types.BoolType) {
		return nil, fmt.Errorf("must evaluate to bool, not %s", ast.OutputType())
	}
	return env.Program(ast, cel.CostLimit(celCostLimit))
}

// orderView is an order as the engine read it: the venue's fields plus the
// computed notional and currency.
type orderView struct {
	Instrument, Side, Type, Quantity, Price, TriggerPrice, Notional, Currency, ClientOrderID string
}

// celVars builds the activation of an expr: the request and order maps
// documented at newCELEnv. It never fails; absent values are "".
func celVars(in *Input, o *orderView) map[string]any {
	var ov orderView
	if o != nil {
		ov = *o
	}
	t := in.Time
	if t.IsZero() {
		t = time.Unix(0, 0)
	}
	return map[string]any{
		"request": map[string]any{
			"venue":     in.Venue,
			"operation": in.Operation,
			"method":    in.Method,
			"path":      in.Path,
			"query":     in.RawQuery,
			"token":     in.TokenID,
			"time":      t.UTC(),
		},
		"order": map[string]string{
			"instrument":      ov.Instrument,
			"side":            ov.Side,
			"type":            ov.Type,
			"quantity":        ov.Quantity,
			"price":           ov.Price,
			"trigger_price":   ov.TriggerPrice,
			"notional":        ov.Notional,
			"currency":        ov.Currency,
			"client_order_id": ov.ClientOrderID,
		},
	}
}

// evalExpr runs p over the request; an error or a non-bool result is
// reported as an error (the caller denies).
func evalExpr(p cel.Program, vars map[string]any) (bool, error) {
	out, _, err := p.Eval(vars)
	if err != nil {
		return false, err
	}
	b, ok := out.Value().(bool)
	if !ok {
		return false, fmt.Errorf("result is %s, not bool", out.Type())
	}
	return b, nil
}
