package config_test

import (
	"fmt"

	"github.com/keystile/keystile/internal/config"
)

func ExampleParse() {
	cfg, err := config.Parse("keystile.yaml", []byte(`
venues:
  dmarket:
    type: dmarket
    credential: dmarket-main
    base_url: https://api.dmarket.com
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.Gateway.Listen, cfg.Venues["dmarket"].Timeouts.Total)

	_, err = config.Parse("keystile.yaml", []byte(`
venues:
  betfair:
    type: betfair
    credential: betfair-main
    base_url: http://api.betfair.com
    timeouts: {totl: 5s}
`))
	for _, e := range config.Errors(err) {
		fmt.Println(e)
	}
	// Output:
	// 127.0.0.1:7878 30s
	// keystile.yaml:6:5: venues.betfair.base_url: must be https:// (plain http only with sandbox: true to a loopback host)
	// keystile.yaml:7:16: venues.betfair.timeouts.totl: unknown key "totl" (did you mean "total"?)
}
