package bybit

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Bybit reports rate limiting in the answer ("Rate Limit Rules", v5):
//   - retCode 10006 "Too many visits!" (HTTP 200): the UID's limit of that
//     endpoint is used up until X-Bapi-Limit-Reset-Timestamp;
//   - HTTP 403 "access too frequent": the IP is banned for at least 10
//     minutes.
const (
	codeTooManyVisits = 10006
	// ipBan is the back-off of an IP ban: Bybit says to wait at least
	// 10 minutes.
	ipBan = 10 * time.Minute
)

var (
	// successes are how Bybit writes a successful answer's code; any
	// other answer is decoded (a code spelled otherwise is read too).
	successes       = [][]byte{[]byte(`"retCode":0,`), []byte(`"retCode":0}`)}
	markTooFrequent = []byte("too frequent")
)

// ObserveAnswer implements venue.AnswerObserver. A retCode 10006 blocks
// its operation until the reset time the answer gives (1 s without one;
// the usage headers, when present, have usually done so already); an
// HTTP 403 "access too frequent" blocks every operation for 10 minutes.
// Neither is shared with other replicas (it returns 0): the endpoint's
// usage headers already count every replica's calls, and an IP ban is
// the banned host's.
func (v *Venue) ObserveAnswer(resp *http.Response, body []byte, now time.Time) time.Duration {
	if resp == nil {
		return 0
	}
	if resp.StatusCode == http.StatusForbidden && bytes.Contains(bytes.ToLower(body), markTooFrequent) {
		v.mu.Lock()
		if u := now.Add(ipBan); u.After(v.until) {
			v.until = u
		}
		v.mu.Unlock()
		return 0
	}
	for _, m := range successes {
		if bytes.Contains(body, m) {
			return 0
		}
	}
	var a struct {
		RetCode json.Number `json:"retCode"`
	}
	if json.Unmarshal(body, &a) != nil {
		return 0
	}
	if code, err := strconv.ParseFloat(a.RetCode.String(), 64); err != nil || code != codeTooManyVisits {
		return 0
	}
	until := now.Add(time.Second)
	if ms, err := strconv.ParseInt(resp.Header.Get(HeaderLimitReset), 10, 64); err == nil {
		if t := time.UnixMilli(ms); t.After(now) {
			until = t
		}
	}
	if until.Sub(now) > maxBlock {
		until = now.Add(maxBlock)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	op, ok := "", false
	if resp.Request != nil && resp.Request.URL != nil {
		op, ok = Operations.Lookup(resp.Request.Method, resp.Request.URL.Path)
	}
	switch {
	case !ok && until.After(v.until): // an endpoint keystile does not know: all of them
		v.until = until
	case ok && until.After(v.blocked[op]):
		v.blocked[op] = until
	}
	return 0
}
