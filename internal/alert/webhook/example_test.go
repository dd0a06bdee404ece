package webhook_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/keystile/keystile/internal/alert/webhook"
)

// ExampleVerify shows a receiver checking keystile's webhook requests:
// read the exact body, verify the Keystile-Signature header with the
// shared key, and only then trust the JSON.
func ExampleVerify() {
	key := []byte("the-shared-webhook-key") // from your secret store
	receiver := func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if err := webhook.Verify(key, r.Header.Get(webhook.HeaderSignature), body, time.Now(), 5*time.Minute); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// Also: drop a repeated r.Header.Get("Idempotency-Key").
		w.WriteHeader(http.StatusNoContent)
	}

	// What keystile sends:
	body := `{"type":"keystile.alert","version":1,"alert":{"id":"alr_x"}}`
	ts := time.Now().Unix()
	for _, sig := range []string{
		webhook.SignatureHeader(ts, webhook.Sign(key, ts, []byte(body))),
		webhook.SignatureHeader(ts, webhook.Sign([]byte("someone else's key"), ts, []byte(body))),
	} {
		req := httptest.NewRequest(http.MethodPost, "/keystile", strings.NewReader(body))
		req.Header.Set(webhook.HeaderSignature, sig)
		rec := httptest.NewRecorder()
		receiver(rec, req)
		fmt.Println(rec.Code)
	}
	// Output:
	// 204
	// 401
}
