package sandbox_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/keystile/keystile/internal/sandbox"
)

func ExampleStart() {
	s, err := sandbox.Start(context.Background(), sandbox.Options{Venues: []string{sandbox.VenueStake}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	stake := s.Info().Venues[sandbox.VenueStake]

	req, _ := http.NewRequest("POST", stake.BaseURL+"/graphql",
		strings.NewReader(`{"query":"query UserBalances { user { balances { available { amount currency } } } }"}`))
	req.Header.Set("x-access-token", stake.Credentials["api_token"])
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()

	st := s.Stats(sandbox.VenueStake)
	fmt.Println(res.StatusCode, st.Requests, st.Operations["UserBalances"], st.AuthFailures)
	// Output: 200 1 1 0
}
