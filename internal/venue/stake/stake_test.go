package stake

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/venue"
)

func TestClassify(t *testing.T) {
	v, err := New(Options{Credentials: func(context.Context, func(venue.Credential) error) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		body string
		want string
		ok   bool
	}{
		{"balances", `{"query":"query UserBalances { user { id balances { available { amount currency } } } }"}`, venue.OpAccountRead, true},
		{"active bets", `{"query":"query { user { activeSportBets { id } } }"}`, venue.OpOrderRead, true},
		{"bet", `{"operationName":"SportBet","query":"mutation SportBet($a: Float!) { sportBet(amount: $a, outcomeIds: [\"x\"]) { id } }"}`, venue.OpOrderPlace, true},
		{"alias", `{"query":"mutation { b: sportBet(amount: 1) { id } }"}`, venue.OpOrderPlace, true},
		{"declared name lies", `{"operationName":"UserBalances","query":"mutation UserBalances { createWithdrawal(amount: 1, address: \"x\") { id } }"}`, venue.OpWalletWithdraw, true},
		{"withdrawal hidden behind a read", `{"query":"mutation { user: sportBet(amount:1){id} createWithdrawal(amount: 1){ id } }"}`, venue.OpWalletWithdraw, true},
		{"two operations", `{"operationName":"A","query":"query A { user { id } } mutation B { createApiKey { key } }"}`, venue.OpAPIKeyManage, true},
		{"string with braces", `{"query":"mutation { sportBet(identifier: \"} createWithdrawal {\") { id } }"}`, venue.OpOrderPlace, true},
		{"comment", `{"query":"# createWithdrawal\nquery { user { id } }"}`, venue.OpAccountRead, true},
		{"fragment definitions skipped", `{"query":"query { user { ...F } } fragment F on User { id }"}`, venue.OpAccountRead, true},
		{"top-level spread refused", `{"query":"query { ...F } fragment F on Query { user { id } }"}`, "", false},
		{"subscription refused", `{"query":"subscription { bets { id } }"}`, "", false},
		{"unknown field refused", `{"query":"mutation { transferEverything { id } }"}`, "", false},
		{"batch refused", `[{"query":"query { user { id } }"}]`, "", false},
		{"not json", `query { user { id } }`, "", false},
		{"unbalanced", `{"query":"query { user { id }"}`, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			op, ok := v.Classify(&venue.Request{Method: "POST", Path: "/graphql", Body: []byte(tt.body)})
			if op != tt.want || ok != tt.ok {
				t.Fatalf("Classify = %q, %v; want %q, %v", op, ok, tt.want, tt.ok)
			}
		})
	}
	if _, ok := v.Classify(&venue.Request{Method: "GET", Path: "/graphql"}); ok {
		t.Fatal("GET classified")
	}
}

func TestAuthenticateMatchesSandbox(t *testing.T) {
	const tok = "ca0a1e0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
	v, _ := New(Options{Credentials: func(ctx context.Context, fn func(venue.Credential) error) error {
		return fn(cred{FieldToken: secret.FromString(tok)})
	}})
	r, _ := http.NewRequest("POST", "https://api.stake.com/graphql", strings.NewReader("{}"))
	if err := v.Authenticate(context.Background(), r, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := sandbox.VerifyStake(r.Header, secret.FromString(tok)); err != nil {
		t.Fatalf("sandbox refuses: %v", err)
	}
}

type cred map[string]secret.Value

func (c cred) Field(n string) (secret.Value, error) {
	v, ok := c[n]
	if !ok {
		return secret.Value{}, http.ErrMissingFile
	}
	return v, nil
}

// FuzzTopLevelFields: never panics; every field returned is a GraphQL name.
func FuzzTopLevelFields(f *testing.F) {
	for _, s := range []string{"query { user { id } }", "mutation A($x: Int) { a: b(x: $x) @skip(if: true) { c } }",
		`{ a(s: """x""") }`, "fragment F on T { a } query { b }", "{ ...F }", `{ a(s: "\"") }`, "query (", "{{{"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, doc string) {
		fields, err := TopLevelFields(doc)
		if err != nil {
			return
		}
		for _, fl := range fields {
			if !isName(fl.Name) || (fl.OpType != "query" && fl.OpType != "mutation") {
				t.Fatalf("bad field %+v", fl)
			}
		}
	})
}
