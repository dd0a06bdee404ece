package session

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
)

// BetfairSessionExpired reports whether a Betfair API answer says the
// session is missing or no longer valid (APINGException errorCode
// INVALID_SESSION_INFORMATION or NO_SESSION), so the caller should
// Invalidate the token it used and retry once.
//
// It recognises the REST form (HTTP 400, {"detail":{"APINGException":
// {"errorCode":...}}}; AccountAPINGException and other *APINGException
// names too) and the JSON-RPC form ({"error":{"data":{"APINGException":
// {...}}}}), alone or in a batch array, at any HTTP status.
func BetfairSessionExpired(status int, body []byte) bool {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return false
	}
	if body[0] == '[' {
		var batch []json.RawMessage
		if json.Unmarshal(body, &batch) != nil {
			return false
		}
		for _, m := range batch {
			if rpcExpired(m) {
				return true
			}
		}
		return false
	}
	if rpcExpired(body) {
		return true
	}
	if status != http.StatusBadRequest {
		return false
	}
	var rest struct {
		Detail map[string]json.RawMessage `json:"detail"`
	}
	if json.Unmarshal(body, &rest) != nil {
		return false
	}
	return exceptionExpired(rest.Detail)
}

func rpcExpired(msg []byte) bool {
	var rpc struct {
		Error *struct {
			Data map[string]json.RawMessage `json:"data"`
		} `json:"error"`
	}
	if json.Unmarshal(msg, &rpc) != nil || rpc.Error == nil {
		return false
	}
	return exceptionExpired(rpc.Error.Data)
}

// exceptionExpired looks at every "...APINGException" member of m.
func exceptionExpired(m map[string]json.RawMessage) bool {
	for k, v := range m {
		if !strings.HasSuffix(k, "APINGException") {
			continue
		}
		var ex struct {
			ErrorCode string `json:"errorCode"`
		}
		if json.Unmarshal(v, &ex) != nil {
			continue
		}
		if ex.ErrorCode == "INVALID_SESSION_INFORMATION" || ex.ErrorCode == "NO_SESSION" {
			return true
		}
	}
	return false
}
