package admin

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/keystile/keystile/internal/detect"
)

// PathDetect is the prefix of the anomaly detector's endpoints.
const PathDetect = "/v1/detect"

// Detector is what the admin API needs of the anomaly detector.
// *detect.Detector satisfies it.
type Detector interface {
	Stats() detect.Stats
	Holds() []detect.Hold
	// Release lifts a hold (detect.ErrNoHold if none).
	Release(ctx context.Context, kind, subject string) error
	// Profile returns what was learned about a token.
	Profile(ctx context.Context, id string) (detect.ProfileView, bool, error)
	// Recent returns the findings reported since a time, newest first.
	Recent(since time.Time) []detect.FindingView
}

// RecentWindow is how far back status answers list findings.
const RecentWindow = 24 * time.Hour

// DetectStatus is the answer of GET /v1/detect: the detector's counters,
// the holds (throttles, venue and credential freezes) in force and the
// findings of the last RecentWindow (newest first; since the server
// started, at most 64).
type DetectStatus struct {
	Stats  detect.Stats         `json:"stats"`
	Holds  []detect.Hold        `json:"holds"`
	Recent []detect.FindingView `json:"recent_findings"`
}

func detectStatus(d Detector) DetectStatus {
	return DetectStatus{Stats: d.Stats(), Holds: nonNilHolds(d.Holds()), Recent: d.Recent(time.Now().Add(-RecentWindow))}
}

// DetectRoutes registers the detector's endpoints on mux:
//
//	GET    /v1/detect                          counters and holds
//	DELETE /v1/detect/holds/{kind}/{subject}   release a hold
//	GET    /v1/detect/profiles/{id}            what was learned about a token
func DetectRoutes(mux *http.ServeMux, d Detector, log interface {
	Warn(msg string, args ...any)
}) {
	mux.HandleFunc("GET "+PathDetect, func(w http.ResponseWriter, _ *http.Request) {
		WriteJSON(w, http.StatusOK, detectStatus(d))
	})
	mux.HandleFunc("DELETE "+PathDetect+"/holds/{kind}/{subject}", func(w http.ResponseWriter, r *http.Request) {
		kind, subject := r.PathValue("kind"), r.PathValue("subject")
		switch kind {
		case detect.HoldThrottle, detect.HoldFreezeVenue, detect.HoldFreezeCredential:
		default:
			WriteError(w, http.StatusBadRequest, "invalid", "hold kind must be throttle, freeze_venue or freeze_credential")
			return
		}
		if err := d.Release(r.Context(), kind, subject); err != nil {
			if errors.Is(err, detect.ErrNoHold) {
				WriteError(w, http.StatusNotFound, "not_found", err.Error())
				return
			}
			log.Warn("admin: release hold failed", "kind", kind, "subject", subject, "err", err)
			WriteError(w, http.StatusInternalServerError, "internal", "the hold could not be released; see the server log")
			return
		}
		WriteJSON(w, http.StatusOK, detectStatus(d))
	})
	mux.HandleFunc("GET "+PathDetect+"/profiles/{id}", func(w http.ResponseWriter, r *http.Request) {
		p, ok, err := d.Profile(r.Context(), r.PathValue("id"))
		switch {
		case err != nil:
			log.Warn("admin: detector profile failed", "err", err)
			WriteError(w, http.StatusServiceUnavailable, "unavailable", "the detector did not answer; see the server log")
		case !ok:
			WriteError(w, http.StatusNotFound, "not_found", "nothing learned about that token (unknown id, never used, or forgotten)")
		default:
			WriteJSON(w, http.StatusOK, p)
		}
	})
}

func nonNilHolds(h []detect.Hold) []detect.Hold {
	if h == nil {
		return []detect.Hold{}
	}
	return h
}

// DetectStatus fetches the detector's counters and holds.
func (c *Client) DetectStatus(ctx context.Context) (DetectStatus, error) {
	var s DetectStatus
	return s, c.Do(ctx, http.MethodGet, PathDetect, nil, &s)
}

// ReleaseHold lifts a throttle or a venue or credential freeze.
func (c *Client) ReleaseHold(ctx context.Context, kind, subject string) (DetectStatus, error) {
	var s DetectStatus
	return s, c.Do(ctx, http.MethodDelete, PathDetect+"/holds/"+url.PathEscape(kind)+"/"+url.PathEscape(subject), nil, &s)
}

// DetectProfile fetches what the detector learned about a token.
func (c *Client) DetectProfile(ctx context.Context, id string) (detect.ProfileView, error) {
	var p detect.ProfileView
	return p, c.Do(ctx, http.MethodGet, PathDetect+"/profiles/"+url.PathEscape(id), nil, &p)
}

var _ Detector = (*detect.Detector)(nil)
