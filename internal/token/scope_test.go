package token

import (
	"errors"
	"testing"
)

func TestScopeMatches(t *testing.T) {
	tests := []struct {
		name    string
		pattern string
		op      string
		want    bool
	}{
		{"exact", "order.place", "order.place", true},
		{"exact other", "order.place", "order.cancel", false},
		{"segment glob", "order.*", "order.place", true},
		{"segment glob cancel", "order.*", "order.cancel", true},
		{"glob is one segment", "order.*", "order.batch.place", false},
		{"glob needs a segment", "order.*", "order", false},
		{"leading glob", "*.read", "market.read", true},
		{"leading glob account", "*.read", "account.read", true},
		{"leading glob mismatch", "*.read", "order.place", false},
		{"star matches all", "*", "order.place", true},
		{"star matches deep", "*", "a.b.c", true},
		{"prefix is not a match", "order", "order.place", false},
		{"empty op", "*", "", false},
		{"empty segment op", "order.*", "order.", false},
		{"star never grants withdraw", "*", "wallet.withdraw", false},
		{"star never grants transfer", "*", "wallet.transfer", false},
		{"glob never grants wallet read", "*.read", "wallet.read", false},
		{"glob never grants apikey", "*.manage", "apikey.manage", false},
		{"star never grants apikey", "*", "apikey.manage", false},
		{"wallet exact", "wallet.withdraw", "wallet.withdraw", true},
		{"apikey exact", "apikey.manage", "apikey.manage", true},
		{"wallet exact other", "wallet.withdraw", "wallet.transfer", false},
		{"walletx is not wallet", "*.read", "walletx.read", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ScopeMatches(tt.pattern, tt.op); got != tt.want {
				t.Fatalf("ScopeMatches(%q, %q) = %v, want %v", tt.pattern, tt.op, got, tt.want)
			}
		})
	}
}

func TestValidateScope(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"exact", "order.place", true},
		{"glob", "order.*", true},
		{"leading glob", "*.read", true},
		{"star", "*", true},
		{"wallet exact", "wallet.withdraw", true},
		{"apikey exact", "apikey.manage", true},
		{"underscore dash digits", "v2_api-x.read", true},
		{"empty", "", false},
		{"empty segment", "order..place", false},
		{"trailing dot", "order.", false},
		{"partial glob", "order.pl*", false},
		{"upper case", "Order.place", false},
		{"space", "order place", false},
		{"wallet glob", "wallet.*", false},
		{"apikey glob", "apikey.*", false},
		{"too long", string(make([]byte, 129)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateScope(tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidateScope(%q) = %v, want ok=%v", tt.in, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestAllowsDefaultScopes(t *testing.T) {
	tok := &Token{Scopes: DefaultScopes()}
	for op, want := range map[string]bool{
		"market.read": true, "account.read": true, "order.place": true, "order.cancel": true,
		"wallet.withdraw": false, "wallet.transfer": false, "apikey.manage": false, "account.write": false,
	} {
		if got := tok.Allows(op); got != want {
			t.Errorf("default scopes Allows(%q) = %v, want %v", op, got, want)
		}
	}
	if (&Token{}).Allows("market.read") {
		t.Error("a token without scopes allows something")
	}
}

func FuzzScopeMatches(f *testing.F) {
	f.Add("order.*", "order.place")
	f.Add("*", "wallet.withdraw")
	f.Add("*.read", "wallet.read")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, p, op string) {
		got := ScopeMatches(p, op)
		// The security rule, as a property: a match on a wallet./apikey.
		// operation only ever comes from the identical pattern.
		if got && p != op {
			if seg, _, _ := cut(op); sensitiveSegment(seg) {
				t.Fatalf("%q grants %q", p, op)
			}
		}
		if got && op == "" {
			t.Fatal("matched empty operation")
		}
	})
}

func cut(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}
