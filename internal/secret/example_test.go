package secret_test

import (
	"fmt"

	"github.com/keystile/keystile/internal/secret"
)

func ExampleValue() {
	key := secret.FromString("hunter2")
	fmt.Println(key)
	fmt.Printf("%x %q\n", key, key)
	fmt.Println(key.Equal(secret.FromString("hunter2")))
	// Output:
	// REDACTED
	// REDACTED REDACTED
	// true
}
