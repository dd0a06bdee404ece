package sandboxconf_test

import (
	"fmt"

	"github.com/keystile/keystile/internal/sandbox"
	"github.com/keystile/keystile/internal/sandbox/sandboxconf"
)

func ExampleMerge() {
	in := sandbox.Info{Venues: map[string]sandbox.VenueInfo{
		"binance": {BaseURL: "http://127.0.0.1:7885", Credentials: map[string]string{"api_key": "k", "secret": "s"}},
	}}
	vs, err := sandboxconf.Venues(in)
	if err != nil {
		panic(err)
	}
	out, changes, err := sandboxconf.Merge([]byte("log:\n  level: info\n"), vs, false)
	if err != nil {
		panic(err)
	}
	fmt.Print(string(out))
	fmt.Println(changes[0].ID, changes[0].Action)
	// Output:
	// log:
	//   level: info
	// venues:
	//   binance:
	//     type: binance
	//     credential: sandbox-binance
	//     base_url: http://127.0.0.1:7885
	//     sandbox: true
	//     proxy_hosts: [api.binance.com, fapi.binance.com, dapi.binance.com]
	// binance added
}
