package alert_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/alert"
	"github.com/keystile/keystile/internal/alert/webhook"
	"github.com/keystile/keystile/internal/secret"
)

var testKey = []byte("0123456789abcdef-webhook-test-key")

// receiver is a real webhook receiver on loopback: it verifies every
// request's signature with webhook.Verify and records what it accepted.
// fail makes the next requests answer that status; stall makes them hang
// until release is closed.
type receiver struct {
	t   *testing.T
	srv *httptest.Server

	mu       sync.Mutex
	got      []received
	attempts map[string]int // idempotency key -> attempts seen
	fail     []int          // statuses to answer next, in order
	stall    bool
	release  chan struct{}
	bad      int // requests whose signature did not verify
	arrived  chan struct{}
}

type received struct {
	Alert       alert.Alert
	Idempotency string
	Timestamp   string
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	r := &receiver{t: t, attempts: map[string]int{}, release: make(chan struct{}), arrived: make(chan struct{}, 1000)}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(func() {
		r.mu.Lock()
		select {
		case <-r.release:
		default:
			close(r.release)
		}
		r.mu.Unlock()
		r.srv.CloseClientConnections()
		r.srv.Close()
	})
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	stall := r.stall
	release := r.release
	r.mu.Unlock()
	if stall {
		select {
		case <-release:
		case <-req.Context().Done():
			return
		}
	}
	if err := webhook.Verify(testKey, req.Header.Get(webhook.HeaderSignature), body, time.Now(), time.Minute); err != nil {
		r.mu.Lock()
		r.bad++
		r.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	var p webhook.Payload
	if err := json.Unmarshal(body, &p); err != nil {
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	key := req.Header.Get(webhook.HeaderIdempotency)
	r.mu.Lock()
	r.attempts[key]++
	if len(r.fail) > 0 {
		st := r.fail[0]
		r.fail = r.fail[1:]
		r.mu.Unlock()
		w.Header().Set("Retry-After", "0")
		http.Error(w, "try later", st)
		return
	}
	r.got = append(r.got, received{Alert: p.Alert, Idempotency: key, Timestamp: req.Header.Get(webhook.HeaderTimestamp)})
	r.mu.Unlock()
	select {
	case r.arrived <- struct{}{}:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) setStall(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stall = on
	if !on {
		close(r.release)
		r.release = make(chan struct{})
	}
}

func (r *receiver) setFail(statuses ...int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = statuses
}

func (r *receiver) alerts() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// waitFor polls until cond holds over the received alerts, or fails.
func (r *receiver) waitFor(what string, cond func([]received) bool) []received {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if got := r.alerts(); cond(got) {
			return got
		}
		select {
		case <-r.arrived:
		case <-time.After(20 * time.Millisecond):
		}
	}
	kinds := map[string]int{}
	for _, g := range r.alerts() {
		kinds[g.Alert.Kind]++
	}
	r.t.Fatalf("timed out waiting for %s; received %d by kind: %v", what, len(r.alerts()), kinds)
	return nil
}

func (r *receiver) sink(t *testing.T, name string) alert.SinkConfig {
	t.Helper()
	s, err := webhook.New(webhook.Options{URL: r.srv.URL + "/hook", Key: func(context.Context) (secret.Value, error) {
		return secret.New(append([]byte(nil), testKey...)), nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	return alert.SinkConfig{Name: name, Type: "webhook", Sink: s, Timeout: 2 * time.Second}
}

// fastRetry retries quickly so that tests stay short.
var fastRetry = alert.Retry{MaxAttempts: 4, InitialBackoff: 5 * time.Millisecond, MaxBackoff: 20 * time.Millisecond, MaxRetryAfter: 50 * time.Millisecond}

func newDispatcher(t *testing.T, o alert.Options) *alert.Dispatcher {
	t.Helper()
	if o.Policy.Retry == (alert.Retry{}) {
		o.Policy.Retry = fastRetry
	}
	d, err := alert.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = d.Close(ctx)
	})
	return d
}

func sinkStatus(t *testing.T, d *alert.Dispatcher, name string) alert.SinkStatus {
	t.Helper()
	for _, s := range d.Status(context.Background()).Sinks {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no sink %s in status", name)
	return alert.SinkStatus{}
}

// waitStatus polls the sink's status until cond holds, or fails.
func waitStatus(t *testing.T, d *alert.Dispatcher, name string, cond func(alert.SinkStatus) bool) alert.SinkStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := sinkStatus(t, d, name)
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting on sink %s: %+v", name, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func byKind(got []received, kind string) []received {
	var out []received
	for _, r := range got {
		if r.Alert.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}
