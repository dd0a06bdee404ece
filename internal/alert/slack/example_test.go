package slack_test

import (
	"fmt"

	"github.com/keystile/keystile/internal/alert/slack"
)

// ExampleEscape: text from an alert cannot become a mention or a link.
func ExampleEscape() {
	fmt.Println(slack.Escape("<!channel> see <https://evil.example|here> & more"))
	// Output: &lt;!channel&gt; see &lt;https://evil.example|here&gt; &amp; more
}
