package fanout_test

import (
	"context"
	"fmt"
	"time"

	"github.com/keystile/keystile/internal/fanout"
)

// A replica without Redis: it polls the store's version of "tokens" and
// reloads when another replica changed a token.
func ExampleBus_Watch() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	versions := &memSource{} // PostgreSQL's per-topic versions in package app
	bus, err := fanout.New(fanout.Options{Source: versions, PollInterval: 10 * time.Millisecond})
	if err != nil {
		panic(err)
	}
	reloaded := make(chan int64)
	done := bus.Watch(ctx, fanout.TopicTokens, func(v int64) {
		// tokens.Reload(ctx) in package app
		reloaded <- v
	})
	versions.bump(fanout.TopicTokens) // another replica revoked a token
	fmt.Println("tokens reloaded at version", <-reloaded)
	cancel()
	<-done
	// Output: tokens reloaded at version 1
}
