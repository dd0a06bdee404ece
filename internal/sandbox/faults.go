package sandbox

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// FaultKind names a fault.
type FaultKind string

// Fault kinds.
const (
	// FaultStatus answers with Status (default 503) without reaching the venue.
	FaultStatus FaultKind = "status"
	// FaultDelay waits Delay, then serves the request normally.
	FaultDelay FaultKind = "delay"
	// FaultReset closes the TCP connection (RST) without reading the body or
	// answering: the request provably did nothing.
	FaultReset FaultKind = "reset"
	// FaultResetAfterRead reads and fully processes the request (an order is
	// placed and counted), then closes the connection without answering.
	FaultResetAfterRead FaultKind = "reset_after_read"
	// FaultSlowProcess reads the request, then takes Delay to process it,
	// even if the client has gone away meanwhile (the order is placed and
	// counted; the answer may reach no one): a venue slower than keystile's
	// timeouts.
	FaultSlowProcess FaultKind = "slow_process"
	// FaultRateLimit answers 429 with Retry-After: RetryAfter seconds (default 1).
	FaultRateLimit FaultKind = "rate_limit"
	// FaultExpireSessions invalidates every Betfair session / STAPI access
	// token at once; it is not queued.
	FaultExpireSessions FaultKind = "expire_sessions"
	// FaultEchoCredentials serves the request normally but copies its
	// credential headers into the response headers (X-Sandbox-Echo-<Header>)
	// and into a top-level "sandbox_echo" member of a JSON object body, to
	// test that keystile scrubs them.
	FaultEchoCredentials FaultKind = "echo_credentials"
)

// Duration is a time.Duration that reads and writes JSON as "1.5s" (or a
// number of nanoseconds).
type Duration time.Duration

// MarshalJSON implements json.Marshaler.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON implements json.Unmarshaler.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		var n int64
		if err2 := json.Unmarshal(b, &n); err2 != nil {
			return fmt.Errorf("sandbox: duration: %w", err)
		}
		*d = Duration(n)
		return nil
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("sandbox: duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// Fault is a fault to inject into the next Count requests of a venue whose
// path starts with PathPrefix. JSON form, for POST /-/sandbox/faults:
//
//	{"kind":"status","status":502,"count":2,"path_prefix":"/api/"}
//	{"kind":"delay","delay":"1.5s"}
//	{"kind":"rate_limit","retry_after":3}
//
// "5xx" and "429" are accepted as aliases of "status" and "rate_limit".
type Fault struct {
	Kind FaultKind `json:"kind"`
	// Count is how many requests the fault applies to: 0 means 1, a negative
	// value means every request until the faults are cleared.
	Count int `json:"count,omitempty"`
	// PathPrefix restricts the fault to request paths with this prefix.
	PathPrefix string `json:"path_prefix,omitempty"`
	// Status for FaultStatus, 500-599; default 503.
	Status int `json:"status,omitempty"`
	// Delay for FaultDelay, at most one minute.
	Delay Duration `json:"delay,omitempty"`
	// RetryAfter in seconds for FaultRateLimit; default 1.
	RetryAfter int `json:"retry_after,omitempty"`
}

type queuedFault struct {
	f         Fault
	remaining int // < 0: forever
}

// normalize validates f and fills defaults.
func (f Fault) normalize() (Fault, error) {
	switch f.Kind {
	case "5xx":
		f.Kind = FaultStatus
	case "429":
		f.Kind = FaultRateLimit
	}
	switch f.Kind {
	case FaultStatus:
		if f.Status == 0 {
			f.Status = http.StatusServiceUnavailable
		}
		if f.Status < 500 || f.Status > 599 {
			return f, fmt.Errorf("%w: status %d is not 5xx", ErrBadFault, f.Status)
		}
	case FaultDelay, FaultSlowProcess:
		if f.Delay <= 0 || time.Duration(f.Delay) > time.Minute {
			return f, fmt.Errorf("%w: delay must be in (0, 1m]", ErrBadFault)
		}
	case FaultRateLimit:
		if f.RetryAfter == 0 {
			f.RetryAfter = 1
		}
		if f.RetryAfter < 0 || f.RetryAfter > 3600 {
			return f, fmt.Errorf("%w: retry_after out of range", ErrBadFault)
		}
	case FaultReset, FaultResetAfterRead, FaultExpireSessions, FaultEchoCredentials:
	default:
		return f, fmt.Errorf("%w: unknown kind %q", ErrBadFault, f.Kind)
	}
	if f.Count == 0 {
		f.Count = 1
	}
	return f, nil
}

func (vs *venueServer) inject(f Fault) error {
	f, err := f.normalize()
	if err != nil {
		return err
	}
	if f.Kind == FaultExpireSessions {
		vs.emu.expireSessions()
		return nil
	}
	vs.mu.Lock()
	vs.faults = append(vs.faults, &queuedFault{f: f, remaining: f.Count})
	vs.mu.Unlock()
	return nil
}

// takeFaults consumes at most one disruptive fault and one echo fault that
// match path, in the order they were queued.
func (vs *venueServer) takeFaults(path string) (Fault, bool) {
	vs.mu.Lock()
	defer vs.mu.Unlock()
	var got Fault
	echo := false
	for _, q := range vs.faults {
		if !strings.HasPrefix(path, q.f.PathPrefix) || q.remaining == 0 {
			continue
		}
		if q.f.Kind == FaultEchoCredentials {
			if echo {
				continue
			}
			echo = true
		} else {
			if got.Kind != "" {
				continue
			}
			got = q.f
			vs.stats.FaultsInjected++
		}
		if q.remaining > 0 {
			q.remaining--
		}
	}
	kept := vs.faults[:0]
	for _, q := range vs.faults {
		if q.remaining != 0 {
			kept = append(kept, q)
		}
	}
	vs.faults = kept
	return got, echo
}

// control serves the reserved endpoints:
//
//	GET    /-/sandbox/stats   Stats as JSON
//	GET    /-/sandbox/orders  []Order as JSON
//	GET    /-/sandbox/faults  queued faults
//	POST   /-/sandbox/faults  queue a Fault (or an array of them)
//	DELETE /-/sandbox/faults  clear the queue
func (vs *venueServer) control(w http.ResponseWriter, r *http.Request) {
	switch path := strings.TrimPrefix(r.URL.Path, ControlPrefix); {
	case path == "stats" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, vs.snapshot())
	case path == "orders" && r.Method == http.MethodGet:
		vs.mu.Lock()
		out := make([]Order, 0, len(vs.orders))
		for _, o := range vs.orders {
			out = append(out, *o)
		}
		vs.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	case path == "faults" && r.Method == http.MethodGet:
		vs.mu.Lock()
		out := make([]Fault, 0, len(vs.faults))
		for _, q := range vs.faults {
			f := q.f
			f.Count = q.remaining
			out = append(out, f)
		}
		vs.mu.Unlock()
		writeJSON(w, http.StatusOK, out)
	case path == "faults" && r.Method == http.MethodDelete:
		vs.mu.Lock()
		vs.faults = nil
		vs.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case path == "faults" && r.Method == http.MethodPost:
		b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body too large"})
			return
		}
		faults, err := ParseFaults(b)
		if err == nil {
			for _, f := range faults {
				if err = vs.inject(f); err != nil {
					break
				}
			}
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no such sandbox control endpoint"})
	}
}

// ParseFaults decodes one Fault object or an array of them and validates each.
func ParseFaults(b []byte) ([]Fault, error) {
	var faults []Fault
	t := strings.TrimSpace(string(b))
	if strings.HasPrefix(t, "[") {
		if err := json.Unmarshal(b, &faults); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadFault, err)
		}
	} else {
		var f Fault
		if err := json.Unmarshal(b, &f); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadFault, err)
		}
		faults = []Fault{f}
	}
	for i, f := range faults {
		n, err := f.normalize()
		if err != nil {
			return nil, err
		}
		faults[i] = n
	}
	return faults, nil
}
