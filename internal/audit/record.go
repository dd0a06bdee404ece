package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Record kinds.
const (
	// KindIntent is written, and made durable, before a write operation is
	// forwarded to the venue.
	KindIntent = "intent"
	// KindOutcome is the final decision of a request (allowed or not).
	KindOutcome = "outcome"
	// KindAction is a lever pulled by an operator, a bot or keystile
	// itself (kill switch, order cancellation, token freeze), made durable
	// before the lever's caller hears back (Log.Action).
	KindAction = "action"
	// KindDetect is a finding of the anomaly detector or an action it
	// took (internal/detect); its evidence field says why.
	KindDetect = "detect"
)

// timeLayout is the canonical time format: UTC, always nine fractional
// digits, so every instant has exactly one spelling.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// zeroHash is the prev of the first record of a log.
var zeroHash = strings.Repeat("0", 64)

// Record is one entry of the hash-chained log. Identifiers are HMAC'd;
// order fields stay readable. Its JSON form (MarshalJSON) is its canonical
// encoding; see the package documentation.
type Record struct {
	Seq           uint64
	Time          time.Time
	Kind          string // KindIntent, KindOutcome, KindAction or KindDetect
	RequestID     string
	Token         string // hex HMAC-SHA256 of the token public id ("" when none)
	Source        string // hex HMAC-SHA256 of the source address ("" when none)
	Venue         string
	Operation     string
	Method        string
	Path          string
	Instrument    string
	Side          string
	Type          string
	Quantity      string
	Price         string
	Notional      string
	ClientOrderID string
	Decision      string
	Rule          string
	Status        int
	Upstream      int
	VenueOrderID  string
	Latency       time.Duration
	Error         string
	// Actor, Reason and Detail are set on action records (see Event);
	// encoded only when not empty, so records written before they existed
	// keep their canonical bytes.
	Actor  string
	Reason string
	Detail string
	// Evidence is a detect record's evidence (JSON text; see
	// internal/detect). It is encoded only in KindDetect records.
	Evidence string
	Prev     string // hex SHA-256 of the previous record's canonical bytes
	Hash     string // hex SHA-256 of this record's canonical bytes

	// Raw is the record exactly as the store holds it (set by readers).
	// Verify recomputes everything from Raw, never from the fields.
	Raw []byte
}

// recordJSON is the decoding shape of a record; field names are those of
// the canonical encoding.
type recordJSON struct {
	Seq           uint64 `json:"seq"`
	Time          string `json:"time"`
	Kind          string `json:"kind"`
	RequestID     string `json:"request_id"`
	Token         string `json:"token"`
	Source        string `json:"source"`
	Venue         string `json:"venue"`
	Operation     string `json:"operation"`
	Method        string `json:"method"`
	Path          string `json:"path"`
	Instrument    string `json:"instrument"`
	Side          string `json:"side"`
	Type          string `json:"type"`
	Quantity      string `json:"quantity"`
	Price         string `json:"price"`
	Notional      string `json:"notional"`
	ClientOrderID string `json:"client_order_id"`
	Decision      string `json:"decision"`
	Rule          string `json:"rule"`
	Status        int    `json:"status"`
	Upstream      int    `json:"upstream_status"`
	VenueOrderID  string `json:"venue_order_id"`
	Latency       int64  `json:"latency_ns"`
	Error         string `json:"error"`
	Actor         string `json:"actor"`
	Reason        string `json:"reason"`
	Detail        string `json:"detail"`
	Evidence      string `json:"evidence"`
	Prev          string `json:"prev"`
	Hash          string `json:"hash"`
}

// appendRecord appends r's canonical encoding to b: the hash field is
// included only when withHash is set (the hash covers the bytes without
// it).
func appendRecord(b []byte, r *Record, withHash bool) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, r.Seq, 10)
	b = append(b, `,"time":"`...)
	b = r.Time.UTC().AppendFormat(b, timeLayout)
	b = append(b, '"')
	b = appendField(b, "kind", r.Kind)
	b = appendField(b, "request_id", r.RequestID)
	b = appendField(b, "token", r.Token)
	b = appendField(b, "source", r.Source)
	b = appendField(b, "venue", r.Venue)
	b = appendField(b, "operation", r.Operation)
	b = appendField(b, "method", r.Method)
	b = appendField(b, "path", r.Path)
	b = appendField(b, "instrument", r.Instrument)
	b = appendField(b, "side", r.Side)
	b = appendField(b, "type", r.Type)
	b = appendField(b, "quantity", r.Quantity)
	b = appendField(b, "price", r.Price)
	b = appendField(b, "notional", r.Notional)
	b = appendField(b, "client_order_id", r.ClientOrderID)
	b = appendField(b, "decision", r.Decision)
	b = appendField(b, "rule", r.Rule)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(r.Status), 10)
	b = append(b, `,"upstream_status":`...)
	b = strconv.AppendInt(b, int64(r.Upstream), 10)
	b = appendField(b, "venue_order_id", r.VenueOrderID)
	b = append(b, `,"latency_ns":`...)
	b = strconv.AppendInt(b, int64(r.Latency), 10)
	b = appendField(b, "error", r.Error)
	for _, f := range [...]struct{ name, v string }{{"actor", r.Actor}, {"reason", r.Reason}, {"detail", r.Detail}} {
		if f.v != "" {
			b = appendField(b, f.name, f.v)
		}
	}
	if r.Kind == KindDetect {
		b = appendField(b, "evidence", r.Evidence)
	}
	b = appendField(b, "prev", r.Prev)
	if withHash {
		b = appendField(b, "hash", r.Hash)
	}
	return append(b, '}')
}

func appendField(b []byte, name, v string) []byte {
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string: `"` and `\` are backslash
// escaped, bytes below 0x20 become \u00xx, everything else (valid UTF-8)
// is copied as is.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// sealRecord sets r.Prev to prev and r.Hash to the hash of its canonical
// bytes, and returns the canonical bytes with the hash (what stores keep):
// the hash field is last, so they are the hashed bytes with
// `,"hash":"HEX"` inserted before the closing brace.
func sealRecord(r *Record, prev string) []byte {
	r.Prev = prev
	body := appendRecord(make([]byte, 0, 1024), r, false)
	sum := sha256.Sum256(body)
	r.Hash = hex.EncodeToString(sum[:])
	body = append(body[:len(body)-1], `,"hash":"`...)
	body = append(body, r.Hash...)
	return append(body, '"', '}')
}

// MarshalJSON returns the record's canonical bytes (with its hash).
func (r Record) MarshalJSON() ([]byte, error) {
	return appendRecord(nil, &r, true), nil
}

// errMalformed marks stored bytes that do not decode as a record.
var errMalformed = errors.New("malformed record")

// DecodeRecord parses stored canonical bytes. It checks the shape only;
// Verify checks canonicity and the hash. The returned record's Raw is raw.
func DecodeRecord(raw []byte) (Record, error) {
	var j recordJSON
	if err := json.Unmarshal(raw, &j); err != nil {
		return Record{Raw: raw}, fmt.Errorf("%w: %v", errMalformed, err)
	}
	t, err := time.Parse(timeLayout, j.Time)
	if err != nil {
		return Record{Raw: raw}, fmt.Errorf("%w: time: %v", errMalformed, err)
	}
	return Record{
		Seq: j.Seq, Time: t, Kind: j.Kind, RequestID: j.RequestID, Token: j.Token, Source: j.Source,
		Venue: j.Venue, Operation: j.Operation, Method: j.Method, Path: j.Path,
		Instrument: j.Instrument, Side: j.Side, Type: j.Type, Quantity: j.Quantity, Price: j.Price,
		Notional: j.Notional, ClientOrderID: j.ClientOrderID, Decision: j.Decision, Rule: j.Rule,
		Status: j.Status, Upstream: j.Upstream, VenueOrderID: j.VenueOrderID,
		Latency: time.Duration(j.Latency), Error: j.Error, Actor: j.Actor, Reason: j.Reason, Detail: j.Detail,
		Evidence: j.Evidence, Prev: j.Prev, Hash: j.Hash, Raw: raw,
	}, nil
}

// checkRecord verifies that raw is a canonical record whose hash matches
// its contents. It returns the decoded record.
func checkRecord(raw []byte) (Record, error) {
	r, err := DecodeRecord(raw)
	if err != nil {
		return r, err
	}
	canon := appendRecord(make([]byte, 0, len(raw)), &r, true)
	if !bytes.Equal(canon, raw) {
		return r, errors.New("stored bytes are not the record's canonical encoding (altered)")
	}
	body := appendRecord(canon[:0], &r, false)
	sum := sha256.Sum256(body)
	if hex.EncodeToString(sum[:]) != r.Hash {
		return r, errors.New("hash does not match the record's contents (altered)")
	}
	return r, nil
}

// clean makes s valid UTF-8 and replaces anything shaped like a keystile
// token with a marker, so a caller's mistake cannot put one in the log.
func clean(s string) string {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if strings.Contains(s, "kst_") {
		s = scrubTokens(s)
	}
	return s
}

// scrubTokens replaces kst_live_… / kst_test_… runs with kst_REDACTED.
func scrubTokens(s string) string {
	var b strings.Builder
	for {
		i := strings.Index(s, "kst_")
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		rest := s[i+4:]
		var body string
		switch {
		case strings.HasPrefix(rest, "live_"):
			body = rest[5:]
		case strings.HasPrefix(rest, "test_"):
			body = rest[5:]
		default:
			b.WriteString(s[:i+4])
			s = rest
			continue
		}
		n := 0
		for n < len(body) && isBase62(body[n]) {
			n++
		}
		b.WriteString(s[:i])
		b.WriteString("kst_REDACTED")
		s = body[n:]
	}
}

func isBase62(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}
