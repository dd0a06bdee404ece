package binance_test

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/binance"
)

func ExampleVenue_Authenticate() {
	// The key pair of Binance's documentation examples.
	creds := func(_ context.Context, fn func(venue.Credential) error) error {
		return fn(cred{
			"api_key": "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A",
			"secret":  "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j",
		})
	}
	v, err := binance.New(binance.Options{Credentials: creds, Now: func() time.Time { return time.UnixMilli(1499827319559) }})
	if err != nil {
		panic(err)
	}
	req, _ := http.NewRequest("POST", "https://api.binance.com/api/v3/order?symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1", nil)
	if err := v.Authenticate(context.Background(), req, nil); err != nil {
		panic(err)
	}
	fmt.Println(req.URL.RawQuery)
	// Output: symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559&signature=c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71
}
