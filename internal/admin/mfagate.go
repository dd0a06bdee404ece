package admin

import (
	"net/http"
)

// requireMFA gates the admin actions that need the admin's second factor
// (today: keystile panic clear). It answers the refusal itself and
// reports whether the request may go on.
//
// Today it checks only the normal admin authentication: the request came
// over the admin socket from an allowed uid (checkPeer refused any other
// before the mux ran), so PeerUID is known. It is the one place where the
// TOTP gate (internal/admin MFA, issue #16 item 5) plugs in: a valid,
// unreplayed code or a live MFA session becomes required here.
func requireMFA(w http.ResponseWriter, r *http.Request) bool {
	if PeerUID(r.Context()) < 0 {
		WriteError(w, http.StatusForbidden, "forbidden", "this action needs an authenticated admin")
		return false
	}
	return true
}
