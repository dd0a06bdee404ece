package kraken_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/venue"
	"github.com/keystile/keystile/internal/venue/kraken"
)

func ExampleVenue_Authenticate() {
	creds := func(_ context.Context, fn func(venue.Credential) error) error {
		return fn(cred{"api_key": "my-api-key", "secret": "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="})
	}
	v, err := kraken.New(kraken.Options{Credentials: creds, Now: func() time.Time { return time.UnixMicro(1616492376594) }})
	if err != nil {
		panic(err)
	}
	body := "ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
	req, _ := http.NewRequest("POST", "https://api.kraken.com/0/private/AddOrder", strings.NewReader(body))
	if err := v.Authenticate(context.Background(), req, []byte(body)); err != nil {
		panic(err)
	}
	fmt.Println(req.Header.Get("API-Sign"))
	// Output: 4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ==
}
