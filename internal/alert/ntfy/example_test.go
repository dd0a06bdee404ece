package ntfy_test

import (
	"fmt"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/ntfy"
)

// ExamplePriority maps severities to ntfy priorities.
func ExamplePriority() {
	for _, s := range []alert.Severity{alert.SeverityInfo, alert.SeverityMedium, alert.SeverityHigh, alert.SeverityCritical} {
		fmt.Println(s, ntfy.Priority(s))
	}
	// Output:
	// info 2
	// medium 3
	// high 4
	// critical 5
}
