package logging_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/keystile/keystile/internal/logging"
	"github.com/keystile/keystile/internal/secret"
)

func ExampleNew() {
	r := logging.NewRedactor() // owned by the app; the vault registers credentials
	r.Register(secret.FromString("hunter2-api-secret"))

	var buf bytes.Buffer
	log := logging.New(&buf, logging.Options{Level: slog.LevelDebug, Format: "text", Redactor: r})
	log.Debug("upstream said: bad key hunter2-api-secret", "X-Api-Key", "abc", "symbol", "BTCUSDT")

	_, rest, _ := strings.Cut(buf.String(), "level=")
	fmt.Print("level=" + rest)
	// Output:
	// level=DEBUG msg="upstream said: bad key REDACTED" X-Api-Key=REDACTED symbol=BTCUSDT
}

func ExampleNewHandler() {
	r := logging.NewRedactor()
	r.Register(secret.FromString("hunter2-api-secret"))
	noTime := func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	log := slog.New(logging.NewHandler(slog.NewJSONHandler(os.Stdout, &slog.HandlerOptions{ReplaceAttr: noTime}), r))
	log.Info("signed", "body", []byte(`{"key":"hunter2-api-secret"}`))
	// Output:
	// {"level":"INFO","msg":"signed","body":"{\"key\":\"REDACTED\"}"}
}
