package admin

import (
	"time"

	"github.com/keystile/keystile/internal/buildinfo"
	"github.com/keystile/keystile/internal/detect"
)

// Status is the answer of GET /v1/status: what the server is and holds,
// as metadata only (names, counts, sizes, hash prefixes; never a value or
// a token). A part the server could not read carries its error instead of
// figures; the rest is still answered.
type Status struct {
	Version       string         `json:"version"`
	Build         buildinfo.Info `json:"build"`
	PID           int            `json:"pid"`
	StartedAt     time.Time      `json:"started_at"`
	UptimeSeconds int64          `json:"uptime_seconds"`
	DataDir       string         `json:"data_dir"`
	Config        string         `json:"config,omitempty"` // the file venues and policies reload from; "" = built-in defaults
	Gateway       string         `json:"gateway,omitempty"`
	GatewaySocket string         `json:"gateway_socket,omitempty"`
	Venues        []VenueStatus  `json:"venues"`
	Store         *StoreStatus   `json:"store,omitempty"`
	Audit         *AuditStatus   `json:"audit,omitempty"`
	Tokens        *TokenCounts   `json:"tokens,omitempty"`
	Alerts        *AlertsStatus  `json:"alerts,omitempty"`
	// KillSwitch is the kill switch's state (keystile panic).
	KillSwitch *KillSwitchStatus `json:"killswitch,omitempty"`
	// Metrics is the Prometheus listener's address ("" if none).
	Metrics string `json:"metrics,omitempty"`
	// Console is the web console's base URL ("" if none).
	Console string `json:"console,omitempty"`
	// RestartNeeded names the configuration sections that changed in the
	// file since start and take effect only after a restart.
	RestartNeeded []string `json:"restart_needed,omitempty"`
}

// VenueStatus is one configured venue.
type VenueStatus struct {
	ID   string `json:"id"`
	Type string `json:"type"`
	// Mode is "sandbox" (venues.<id>.sandbox: loopback emulator, kst_test_
	// tokens only) or "live"; TestEndpoint says whether kst_test_ tokens
	// have their own endpoint (test_base_url).
	Mode         string `json:"mode"`
	TestEndpoint bool   `json:"test_endpoint"`
	// Credential is the vault credential's name; CredentialState is its
	// state in the vault ("active", "revoked", ...) or "missing".
	Credential      string `json:"credential"`
	CredentialState string `json:"credential_state"`
	// CredentialPresent is true when the credential exists and is active.
	CredentialPresent bool `json:"credential_present"`
}

// StoreStatus is the main database: the embedded SQLite file, or the
// shared PostgreSQL server (Path is then host:port/database, never the
// DSN) and, with it, Redis.
type StoreStatus struct {
	// Backend is "sqlite" or "postgres".
	Backend       string `json:"backend"`
	Path          string `json:"path"`
	SizeBytes     int64  `json:"size_bytes"`
	WALBytes      int64  `json:"wal_bytes"`
	SchemaVersion int    `json:"schema_version"`
	// Reachable says PostgreSQL answered a ping (postgres only).
	Reachable bool `json:"reachable,omitempty"`
	// ReplicaID names this replica (postgres only).
	ReplicaID string `json:"replica_id,omitempty"`
	// Redis is the Redis accelerator's state (postgres with store.redis
	// only).
	Redis *RedisStatus `json:"redis,omitempty"`
	Error string       `json:"error,omitempty"`
}

// RedisStatus is the state of Redis next to a PostgreSQL store.
type RedisStatus struct {
	Addr string `json:"addr"`
	// State is "ok" or "down".
	State string `json:"state"`
	// RateLimitFallback is what shared rate limits do while Redis is
	// down: "fail_closed" or "local_share".
	RateLimitFallback string `json:"rate_limit_fallback"`
	// FanOut is how revocations reach the other replicas now: "redis",
	// or "polling" (every store.poll_interval) while Redis is down.
	FanOut string `json:"fan_out"`
	Error  string `json:"error,omitempty"`
}

// AuditStatus is the head of the stored audit log, as read from the store.
// Checkpoint signatures are not verified here (keystile audit verify).
type AuditStatus struct {
	Sink string `json:"sink"`
	Path string `json:"path,omitempty"`
	// Records is the number of stored records (the last record's seq).
	Records uint64 `json:"records"`
	// LastHash is the first 16 hex digits of the last record's hash.
	LastHash string `json:"last_hash,omitempty"`
	// LastCheckpointSeq and LastCheckpointAt are the last stored
	// checkpoint's record and time; Unsigned counts the records after it.
	LastCheckpointSeq uint64    `json:"last_checkpoint_seq"`
	LastCheckpointAt  time.Time `json:"last_checkpoint_at,omitzero"`
	Unsigned          uint64    `json:"unsigned"`
	// Healthy is false while the server cannot write the log (writes are
	// then refused with 503 audit_unavailable); WriteError says why.
	Healthy    bool   `json:"healthy"`
	WriteError string `json:"write_error,omitempty"`
	// Note explains a log that is not stored (audit.sink: stdout).
	Note  string `json:"note,omitempty"`
	Error string `json:"error,omitempty"`
}

// TokenCounts counts tokens by state (see TokenState).
type TokenCounts struct {
	Total   int `json:"total"`
	Active  int `json:"active"`
	Grace   int `json:"grace"`
	Frozen  int `json:"frozen"`
	Revoked int `json:"revoked"`
	Expired int `json:"expired"`
	Rotated int `json:"rotated"`
	// Error is set when the tokens could not be listed.
	Error string `json:"error,omitempty"`
}

// AlertsStatus says what watches for anomalies and where alerts go:
// Detector is "detect" (the anomaly detector, internal/detect), "detect
// (disabled)" or "none"; Note summarises its counters (keystile detect
// status has the details). OpenFindings counts the findings of the last
// RecentWindow (since the server started), OpenCritical the critical ones
// among them, Findings lists the newest few; Holds counts the detector's
// throttles and freezes in force.
type AlertsStatus struct {
	Detector     string               `json:"detector"`
	Note         string               `json:"note"`
	Detectors    int                  `json:"detectors"`
	OpenFindings int                  `json:"open_findings"`
	OpenCritical int                  `json:"open_critical"`
	Findings     []detect.FindingView `json:"recent_findings,omitempty"`
	Holds        int                  `json:"holds"`
	// Dropped events the detector could not analyse (its queue was full).
	EventsDropped uint64 `json:"events_dropped"`
	// Sinks is the number of alert sinks configured; Unhealthy names
	// those whose last delivery failed; Dropped counts alerts lost to
	// full queues since start (details: GET /v1/alerts).
	Sinks     int      `json:"sinks"`
	Unhealthy []string `json:"unhealthy_sinks,omitempty"`
	Dropped   uint64   `json:"dropped"`
}

// Add counts a token state to the counts.
func (c *TokenCounts) Add(state string) {
	c.Total++
	switch state {
	case "active":
		c.Active++
	case "grace":
		c.Grace++
	case "frozen":
		c.Frozen++
	case "revoked":
		c.Revoked++
	case "expired":
		c.Expired++
	case "rotated":
		c.Rotated++
	}
}
