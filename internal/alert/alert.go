package alert

import (
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/keystile/keystile/internal/secret"
)

// Severity ranks alerts. The zero Severity is invalid; Send treats an
// invalid one as SeverityHigh (a detector bug must not silence an alert).
type Severity uint8

// Severities, lowest first.
const (
	SeverityInfo Severity = iota + 1
	SeverityLow
	SeverityMedium
	SeverityHigh
	SeverityCritical
)

var severityNames = [...]string{"", "info", "low", "medium", "high", "critical"}

// ErrSeverity is returned by ParseSeverity for an unknown name.
var ErrSeverity = errors.New("alert: unknown severity (want info, low, medium, high or critical)")

// ParseSeverity parses info, low, medium, high or critical.
func ParseSeverity(s string) (Severity, error) {
	for i := SeverityInfo; i <= SeverityCritical; i++ {
		if severityNames[i] == s {
			return i, nil
		}
	}
	return 0, ErrSeverity
}

// Valid reports whether s is one of the defined severities.
func (s Severity) Valid() bool { return s >= SeverityInfo && s <= SeverityCritical }

// String returns the severity's name ("invalid" for an undefined one).
func (s Severity) String() string {
	if !s.Valid() {
		return "invalid"
	}
	return severityNames[s]
}

// MarshalText encodes the severity as its name.
func (s Severity) MarshalText() ([]byte, error) {
	if !s.Valid() {
		return nil, ErrSeverity
	}
	return []byte(s.String()), nil
}

// UnmarshalText parses a severity name.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Subject is what an alert is about. Every field is optional; together
// with the detector it is the key of deduplication and rate limiting.
type Subject struct {
	// Token is a client token's public id (tok_...), never the token.
	Token string `json:"token,omitempty"`
	// Venue is a venue id.
	Venue string `json:"venue,omitempty"`
	// Credential is a vault credential's name.
	Credential string `json:"credential,omitempty"`
}

// String describes the subject, e.g. "token tok_ab12, venue binance";
// "keystile" for the empty subject.
func (s Subject) String() string {
	var parts []string
	if s.Token != "" {
		parts = append(parts, "token "+s.Token)
	}
	if s.Venue != "" {
		parts = append(parts, "venue "+s.Venue)
	}
	if s.Credential != "" {
		parts = append(parts, "credential "+s.Credential)
	}
	if len(parts) == 0 {
		return "keystile"
	}
	return strings.Join(parts, ", ")
}

// Field is one piece of evidence: a key and a non-secret value.
type Field struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Kinds of message.
const (
	KindAlert   = "alert"   // one alert (Count > 1 when repeats are folded in)
	KindDigest  = "digest"  // the daily digest; Items holds the alerts
	KindDropped = "dropped" // keystile dropped or failed to deliver alerts
	KindTest    = "test"    // `keystile alert test`
)

// Detectors used by this package itself.
const (
	DetectorTest    = "alert.test"
	DetectorDigest  = "alert.digest"
	DetectorDropped = "alert.dropped"
)

// Alert is one notification. Callers fill Detector, Severity, Subject,
// Summary, Evidence and Action; Send fills the rest.
type Alert struct {
	// ID identifies the alert across every delivery attempt (the
	// webhook's Idempotency-Key, the e-mail's Message-ID). Send assigns one
	// ("alr_" + 26 base32 characters) if it is empty or malformed.
	ID string `json:"id"`
	// Kind is alert, digest, dropped or test.
	Kind string `json:"kind"`
	// Time is when the alert was raised; Send sets it if zero.
	Time time.Time `json:"time"`
	// Detector names what raised the alert, e.g. "detect.order_size"
	// (lower-case letters, digits, '.', '_', '-'; at most 64).
	Detector string `json:"detector"`
	// Severity ranks it.
	Severity Severity `json:"severity"`
	// Subject is what it is about.
	Subject Subject `json:"subject"`
	// Summary is one human sentence.
	Summary string `json:"summary"`
	// Evidence lists the non-secret facts behind it, in order.
	Evidence []Field `json:"evidence,omitempty"`
	// Action is the suggested response, e.g. "keystile token freeze tok_ab12".
	Action string `json:"suggested_action,omitempty"`
	// Count is how many alerts of this (detector, subject) the message
	// stands for (1 when nothing was folded in); FirstSeen is the time of
	// the first of them.
	Count     int       `json:"count"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
	// Items are the alerts of a digest (Kind digest).
	Items []Alert `json:"items,omitempty"`
}

// Key is the deduplication key: detector and subject.
func (a *Alert) Key() string {
	return a.Detector + "\x00" + a.Subject.Token + "\x00" + a.Subject.Venue + "\x00" + a.Subject.Credential
}

// Scrubber removes secret values and client tokens from text.
// *logging.Redactor satisfies it (also when nil: it then still masks kst_
// tokens). It must be safe for concurrent use.
type Scrubber interface {
	ScrubString(s string) string
}

// Bounds on an alert's fields (bytes, after scrubbing).
const (
	MaxSummary       = 1000
	MaxAction        = 300
	MaxSubjectField  = 128
	MaxEvidence      = 32
	MaxEvidenceKey   = 64
	MaxEvidenceValue = 300
	maxDetector      = 64
)

// sensitiveKeys are evidence keys whose values are always replaced: a
// detector must never put a credential in evidence, and if one does by
// mistake under such a key, the value does not travel.
var sensitiveKeys = []string{
	"authorization", "cookie", "password", "passphrase", "secret", "api_key", "apikey", "api_secret",
	"signature", "client_secret", "access_token", "refresh_token", "private_key", "secret_key",
	"token", "bearer", "session", "session_token", "credential_value",
}

func sensitiveKey(k string) bool {
	k = strings.ToLower(strings.ReplaceAll(k, "-", "_"))
	for _, s := range sensitiveKeys {
		if k == s {
			return true
		}
	}
	return false
}

// NewID returns a fresh alert id: "alr_" and 26 base32 characters (130 bits).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "alr_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

func validID(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// cleanDetector keeps [a-z0-9._-], lower-casing letters and replacing
// anything else with '_'.
func cleanDetector(d string) string {
	if d == "" {
		return "unknown"
	}
	b := make([]byte, 0, min(len(d), maxDetector))
	for i := 0; i < len(d) && len(b) < maxDetector; i++ {
		c := d[i]
		switch {
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			c = '_'
		}
		b = append(b, c)
	}
	return string(b)
}

// clean scrubs s, replaces control characters (and other characters that
// could reorder or hide text: bidi controls, zero-width, line separators)
// with spaces, makes it valid UTF-8 and truncates it to max bytes on a
// rune boundary. Scrubbing comes first, so that truncation cannot cut a
// secret into a piece the scrubber would no longer recognise.
func clean(sc Scrubber, s string, maxLen int) string {
	if s == "" {
		return ""
	}
	s = sc.ScrubString(s)
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029' {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "\uFFFD"))
	s = strings.TrimSpace(s)
	if len(s) > maxLen {
		s = strings.TrimSpace(truncateUTF8(s, maxLen-len("…"))) + "…"
	}
	return s
}

// normalize makes a an alert that is safe to queue, store and render:
// every text field scrubbed and bounded, id, time, kind and count set.
func normalize(a Alert, sc Scrubber, now time.Time) Alert {
	out := Alert{
		ID: a.ID, Kind: a.Kind, Time: a.Time.UTC(), Severity: a.Severity, Count: a.Count, FirstSeen: a.FirstSeen.UTC(),
		Detector: cleanDetector(sc.ScrubString(a.Detector)),
		Subject: Subject{
			Token:      clean(sc, a.Subject.Token, MaxSubjectField),
			Venue:      clean(sc, a.Subject.Venue, MaxSubjectField),
			Credential: clean(sc, a.Subject.Credential, MaxSubjectField),
		},
		Summary: clean(sc, a.Summary, MaxSummary),
		Action:  clean(sc, a.Action, MaxAction),
	}
	if !validID(out.ID) {
		out.ID = NewID()
	}
	switch out.Kind {
	case KindAlert, KindDigest, KindDropped, KindTest:
	default:
		out.Kind = KindAlert
	}
	if a.Time.IsZero() {
		out.Time = now.UTC()
	}
	if !out.Severity.Valid() {
		out.Severity = SeverityHigh
	}
	if out.Count < 1 {
		out.Count = 1
	}
	if out.Summary == "" {
		out.Summary = "(no summary)"
	}
	for i, f := range a.Evidence {
		if i == MaxEvidence {
			out.Evidence = append(out.Evidence, Field{Key: "evidence_truncated", Value: fmt.Sprintf("%d more", len(a.Evidence)-MaxEvidence)})
			break
		}
		k := clean(sc, f.Key, MaxEvidenceKey)
		v := clean(sc, f.Value, MaxEvidenceValue)
		if sensitiveKey(k) {
			v = secret.Redacted
		}
		if k == "" {
			k = "_"
		}
		out.Evidence = append(out.Evidence, Field{Key: k, Value: v})
	}
	for _, it := range a.Items {
		out.Items = append(out.Items, normalize(it, sc, now))
	}
	return out
}
