package sign_test

import (
	"fmt"
	"net/http"
	"time"

	"github.com/keystile/keystile/internal/secret"
	"github.com/keystile/keystile/internal/sign"
)

// A venue described in configuration: Binance-style HMAC over the query and
// body, timestamp added by keystile, signature appended as the last
// parameter. Values from the Binance API documentation.
func ExampleHMAC_Sign() {
	h := sign.HMAC{
		Template:            "{query}{body}",
		KeyHeader:           "X-MBX-APIKEY",
		TimestampQueryParam: "timestamp",
		SignatureQueryParam: "signature",
	}
	if err := h.Validate(); err != nil {
		fmt.Println(err)
		return
	}
	r, _ := http.NewRequest(http.MethodPost, "https://api.binance.com/api/v3/order?symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000", nil)
	apiKey := secret.FromString("vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A")
	secretKey := secret.FromString("NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j")
	if err := h.Sign(r, nil, apiKey, secretKey, time.UnixMilli(1499827319559), ""); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.URL.RawQuery)
	// Output:
	// symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71
}

func ExampleMessageSigner_Sign() {
	r, _ := http.NewRequest(http.MethodGet, "https://example.com/foo?x=1", nil)
	s := sign.MessageSigner{Label: "sig1", Components: []string{"@method", "@authority", "@path", "@query"}, Algorithm: sign.AlgHMACSHA256, KeyID: "k1"}
	if err := s.Sign(r, nil, secret.FromString("shared-secret"), time.Unix(1618884473, 0), ""); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Header.Get("Signature-Input"))
	// Output:
	// sig1=("@method" "@authority" "@path" "@query");created=1618884473;keyid="k1"
}
