package sandbox

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
)

func FuzzGraphQLOperation(f *testing.F) {
	f.Add("query UserBalances { user { balances { available { amount currency } } } }", "")
	f.Add("mutation($a: Float!) { bet: sportBet(amount: $a) { id } }", "PlaceBet")
	f.Add("{ user { id } }", "")
	f.Add("# comment\nquery Q(\"s\\\"\" : [Int]) @dir { a }", "1bad")
	f.Add("query (", "")
	f.Fuzz(func(t *testing.T, query, opName string) {
		op, field, _ := GraphQLOperation(GraphQLRequest{Query: query, OperationName: opName})
		if op != "" && !isGQLName(op) {
			t.Fatalf("operation %q is not a GraphQL name", op)
		}
		if field != "" && !isGQLName(field) {
			t.Fatalf("field %q is not a GraphQL name", field)
		}
		if isGQLName(opName) && op != opName {
			t.Fatalf("operationName %q ignored for %q", opName, op)
		}
	})
}

func FuzzParseJSONRPC(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","method":"SportsAPING/v1.0/placeOrders","params":{"marketId":"1.2"},"id":1}`))
	f.Add([]byte(`[{"jsonrpc":"2.0","method":"SportsAPING/v1.0/listEventTypes","params":{},"id":1},{"jsonrpc":"2.0","method":"m","id":"x"}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"jsonrpc":"1.0","method":"m"}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		calls, batch, err := ParseJSONRPC(body)
		if err != nil {
			return
		}
		// Round trip: re-encoding the parsed calls parses to the same calls.
		var enc []byte
		if batch {
			enc, err = json.Marshal(calls)
		} else {
			enc, err = json.Marshal(calls[0])
		}
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		again, batch2, err := ParseJSONRPC(enc)
		if err != nil || batch2 != batch || len(again) != len(calls) {
			t.Fatalf("round trip: %v %v %d/%d", err, batch2, len(again), len(calls))
		}
		for i := range calls {
			// IDs compare as JSON values: json.Marshal HTML-escapes
			// strings ("&" becomes "\u0026"), which is the same value.
			if again[i].Method != calls[i].Method || !sameJSON(again[i].ID, calls[i].ID) {
				t.Fatalf("call %d changed: %+v -> %+v", i, calls[i], again[i])
			}
		}
	})
}

func compact(b []byte) []byte {
	var out bytes.Buffer
	if err := json.Compact(&out, b); err != nil {
		return b
	}
	return out.Bytes()
}

func FuzzParseDMarketSign(f *testing.F) {
	f.Add("dmar ed25519 " + string(bytes.Repeat([]byte("ab"), 64)))
	f.Add("dmar ed25519 zz")
	f.Add("")
	f.Fuzz(func(t *testing.T, v string) {
		sig, err := ParseDMarketSign(v)
		if err != nil {
			return
		}
		if len(sig) != 64 {
			t.Fatalf("signature of %d bytes accepted", len(sig))
		}
		if again, err := ParseDMarketSign(FormatDMarketSign(sig)); err != nil || !bytes.Equal(again, sig) {
			t.Fatalf("round trip failed: %v", err)
		}
	})
}

// sameJSON reports whether a and b encode the same JSON value (both empty
// counts as the same).
func sameJSON(a, b []byte) bool {
	if len(bytes.TrimSpace(a)) == 0 || len(bytes.TrimSpace(b)) == 0 {
		return len(bytes.TrimSpace(a)) == len(bytes.TrimSpace(b))
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return bytes.Equal(compact(a), compact(b))
	}
	return reflect.DeepEqual(va, vb)
}
