package app

import (
	"context"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/keystile/keystile/internal/admin"
	"github.com/keystile/keystile/internal/audit"
	"github.com/keystile/keystile/internal/detect"
)

// statusTimeout bounds the reads behind one status answer.
const statusTimeout = 5 * time.Second

// statusFindings is how many recent findings status lists.
const statusFindings = 5

// alertsStatus says what watches for anomalies: the detector's state,
// counters, holds and the findings of the last admin.RecentWindow.
func (s *Server) alertsStatus() *admin.AlertsStatus {
	if s.detect == nil {
		return &admin.AlertsStatus{Detector: "none", Note: "no detector is running; nothing watches for anomalies"}
	}
	st := s.detect.Stats()
	a := &admin.AlertsStatus{Detector: "detect", Detectors: st.Detectors, Holds: st.Holds, EventsDropped: st.Dropped}
	if !st.Enabled {
		a.Detector = "detect (disabled)"
	}
	recent := s.detect.Recent(time.Now().Add(-admin.RecentWindow))
	a.OpenFindings = len(recent)
	for _, f := range recent {
		if f.Severity == detect.SeverityCritical {
			a.OpenCritical++
		}
	}
	a.Findings = recent[:min(len(recent), statusFindings)]
	a.Note = fmt.Sprintf("%d detectors on; %d findings (%d held back by cooldown); %d actions (%d failed); %d events analysed, %d dropped; %d holds in force (keystile detect status)",
		st.Detectors, st.Findings, st.Suppressed, st.Actions, st.Failed, st.Processed, st.Dropped, st.Holds)
	return a
}

// status answers GET /v1/status: metadata about the running server, its
// venues, stores, audit log and tokens. Each part that cannot be read
// carries its error; no part holds a secret value or a token.
func (s *Server) status(ctx context.Context) admin.Status {
	ctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	b := Build()
	st := admin.Status{
		Version: b.Version, Build: b, PID: os.Getpid(), StartedAt: s.started.UTC().Truncate(time.Second),
		UptimeSeconds: int64(time.Since(s.started) / time.Second), DataDir: s.dataDir, Config: s.cfgPath,
		Gateway: s.GatewayAddr(), GatewaySocket: s.gatewaySocket(),
		Venues: s.venueStatus(ctx), Store: s.storeStatus(ctx), Audit: s.auditStatus(ctx), Tokens: s.tokenCounts(ctx),
		Alerts:  s.alertsSummary(ctx),
		Metrics: s.MetricsAddr(), Console: s.ConsoleURL(), RestartNeeded: s.RestartNeeded(),
	}
	if s.kill != nil {
		trips := s.kill.Active()
		st.KillSwitch = &admin.KillSwitchStatus{Engaged: len(trips) > 0, Trips: trips}
	}
	return st
}

// gatewaySocket is the gateway's unix socket path ("" if none).
func (s *Server) gatewaySocket() string {
	for _, l := range s.ln {
		if l.Addr().Network() == "unix" {
			return l.Addr().String()
		}
	}
	return ""
}

func (s *Server) venueStatus(ctx context.Context) []admin.VenueStatus {
	states := map[string]string{}
	infos, err := s.vault.List(ctx)
	for _, i := range infos {
		states[i.Name] = i.State
	}
	cfg := s.Config()
	out := make([]admin.VenueStatus, 0, len(cfg.Venues))
	for id, vc := range cfg.Venues {
		v := admin.VenueStatus{ID: id, Type: vc.Type, Mode: "live", TestEndpoint: vc.TestBaseURL != "", Credential: vc.Credential}
		if vc.Sandbox {
			v.Mode = "sandbox"
		}
		switch state, ok := states[vc.Credential]; {
		case err != nil:
			v.CredentialState = "unknown: " + err.Error()
		case !ok:
			v.CredentialState = "missing"
		default:
			v.CredentialState = state
			v.CredentialPresent = state == "active"
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

func (s *Server) storeStatus(ctx context.Context) *admin.StoreStatus {
	st := s.db.status(ctx)
	if st.Backend == BackendPostgres {
		st.ReplicaID = s.replicaID
		st.Redis = s.redisStatus()
	}
	return st
}

func (s *Server) auditStatus(ctx context.Context) *admin.AuditStatus {
	st := &admin.AuditStatus{Healthy: true}
	if s.audit != nil {
		if err := s.audit.Healthy(); err != nil {
			st.Healthy, st.WriteError = false, err.Error()
		}
	}
	sink, path, err := AuditSink(s.cfg, s.dataDir)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.Sink, st.Path = sink, path
	if sink == AuditSinkStdout {
		st.Note = "audit.sink is stdout: records are written out, nothing is stored here to read back"
		return st
	}
	r, err := s.auditReader(ctx)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	defer r.Close()
	h, err := r.Head(ctx)
	if err != nil {
		st.Error = err.Error()
		return st
	}
	st.Records = h.Seq
	if len(h.Hash) > 16 {
		st.LastHash = h.Hash[:16]
	} else {
		st.LastHash = h.Hash
	}
	err = r.Checkpoints(ctx, func(c audit.Checkpoint) error {
		if c.Seq >= st.LastCheckpointSeq && c.Seq > 0 {
			st.LastCheckpointSeq, st.LastCheckpointAt = c.Seq, c.Time.UTC()
		}
		return nil
	})
	if err != nil {
		st.Error = err.Error()
	}
	if st.Records > st.LastCheckpointSeq {
		st.Unsigned = st.Records - st.LastCheckpointSeq
	}
	return st
}

func (s *Server) tokenCounts(ctx context.Context) *admin.TokenCounts {
	c := &admin.TokenCounts{}
	l, err := s.tokens.List(ctx)
	if err != nil {
		c.Error = err.Error()
		return c
	}
	now := time.Now()
	for _, t := range l {
		c.Add(admin.TokenState(t, now))
	}
	return c
}

// alertsSummary is the alerts part of status: the detector note and a
// summary of the sinks (GET /v1/alerts has the details).
func (s *Server) alertsSummary(ctx context.Context) *admin.AlertsStatus {
	st := s.alertsStatus()
	if s.alerts == nil {
		return st
	}
	as := s.alerts.Status(ctx)
	st.Sinks, st.Dropped = len(as.Sinks), as.Dropped
	for _, k := range as.Sinks {
		st.Dropped += k.Dropped
		if !k.Healthy {
			st.Unhealthy = append(st.Unhealthy, k.Name)
		}
	}
	return st
}
