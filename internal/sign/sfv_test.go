package sign

import (
	"errors"
	"testing"
)

func TestParseSignatureInput(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		accept bool
	}{
		{"rfc b.2.5", `sig-b25=("date" "@authority" "content-type");created=1618884473;keyid="test-shared-secret"`, true},
		{"order kept and escapes", `sig1=("@method" "@path");keyid="k\"1\\";created=0;expires=1, sig2=()`, true},
		{"all params", `a=();tag="x";alg="ed25519";nonce="n"`, true},
		{"star label", `*x=("a");created=999999999999999`, true},
		{"double space", `sig1=("@method"  "@path")`, false},
		{"negative", `sig1=("@method");created=-1`, false},
		{"leading zero", `sig1=();created=01`, false},
		{"16 digits", `sig1=();created=1000000000000000`, false},
		{"unknown param", `sig1=();foo=1`, false},
		{"duplicate param", `sig1=();created=1;created=2`, false},
		{"duplicate label", `s=(), s=()`, false},
		{"empty string param", `s=();keyid=""`, false},
		{"uppercase component", `s=("Date")`, false},
		{"component params", `s=("@query-param";name="a")`, false},
		{"missing space after comma", `s=(),t=()`, false},
		{"trailing garbage", `s=() `, false},
		{"empty", ``, false},
		{"bad escape", `s=();keyid="\x"`, false},
		{"control in string", "s=();keyid=\"a\tb\"", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ins, err := ParseSignatureInput(tt.in)
			if tt.accept != (err == nil) {
				t.Fatalf("accept = %v, err = %v", err == nil, err)
			}
			if err != nil {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("err %v is not ErrMalformed", err)
				}
				return
			}
			out, err := FormatSignatureInput(ins)
			if err != nil || out != tt.in {
				t.Fatalf("round trip = %q, %v", out, err)
			}
		})
	}
}
