package app

import (
	"context"
	"fmt"
	"reflect"
	"sort"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/detect"
	"github.com/keystile/keystile/internal/gateway"
	"github.com/keystile/keystile/internal/policy"
)

// What `serve` applies from a changed configuration file, on SIGHUP or when
// the file changes: venues, policies, alert sinks and the detect section
// (but its queue_size), together. A file that does not load, compile or
// build keeps the running venues, policies, alert sinks and detector
// settings, and the log says why. Every other section is read once at
// start; a change there is logged
// and listed by RestartNeeded until the server restarts.

// restartSections are the configuration's sections that only a restart
// applies, by their YAML key.
var restartSections = []struct {
	key string
	get func(*config.Config) any
}{
	{"data_dir", func(c *config.Config) any { return c.DataDir }},
	{"log", func(c *config.Config) any { return c.Log }},
	{"master_key", func(c *config.Config) any { return c.MasterKey }},
	{"admin", func(c *config.Config) any { return c.Admin }},
	{"gateway", func(c *config.Config) any { return c.Gateway }},
	{"tokens", func(c *config.Config) any { return c.Tokens }},
	{"audit", func(c *config.Config) any { return c.Audit }},
	{"idempotency", func(c *config.Config) any { return c.Idempotency }},
	{"metrics", func(c *config.Config) any { return c.Metrics }},
	{"console", func(c *config.Config) any { return c.Console }},
	// The rest of alerts: reloads; its queue sizes are fixed at start.
	{"alerts.queue_size", func(c *config.Config) any { return c.Alerts.QueueSize }},
	{"proxy", func(c *config.Config) any { return c.Proxy }},
	{"local_ca", func(c *config.Config) any { return c.LocalCA }},
	{"killswitch", func(c *config.Config) any { return c.KillSwitch }},
	{"store", func(c *config.Config) any { return c.Store }},
	{"detect.queue_size", func(c *config.Config) any { return c.Detect.Resolve().QueueSize }},
}

// restartNeeded lists the sections of next that differ from the running
// configuration and that only a restart applies.
func restartNeeded(running, next *config.Config) []string {
	var out []string
	for _, s := range restartSections {
		if !reflect.DeepEqual(s.get(running), s.get(next)) {
			out = append(out, s.key)
		}
	}
	return out
}

// Config returns the configuration in force: the one serve started with,
// with the venues and policies of the last successful reload.
func (s *Server) Config() *config.Config { return s.cfgNow.Load() }

// RestartNeeded lists the configuration sections that changed in the file
// since start but take effect only after a restart (nil if none).
func (s *Server) RestartNeeded() []string {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	return append([]string(nil), s.restart...)
}

// reload loads the configuration file, compiles its policies and builds
// its venues; only when all of that succeeds are the new venues put in
// service (the policies follow as soon as it returns, see policy.Watch).
// Venues whose entry did not change keep their running instance: rate-limit
// state, sessions and nonce sequencing carry on. Sessions of removed or
// replaced venues are logged out after the swap.
func (s *Server) reload(path string) (*policy.Set, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	set, err := policy.Compile(cfg)
	if err != nil {
		return nil, err
	}
	ab := s.alertBuilder(s.alertEnv)
	alertSinks, alertPolicy, alertSecrets, err := ab.build(cfg.Alerts)
	if err != nil {
		return nil, fmt.Errorf("alerts: %w", err)
	}
	detectSet, err := detect.Compile(cfg)
	if err != nil {
		return nil, err
	}
	next := make(map[string]builtVenue, len(cfg.Venues))
	var added, changed, removed []string
	var fresh []builtVenue
	abort := func(err error) (*policy.Set, error) {
		for _, b := range fresh {
			if b.closer != nil {
				_ = b.closer.Close(context.Background())
			}
		}
		return nil, err
	}
	for id, vc := range cfg.Venues {
		if cur, ok := s.venues[id]; ok && reflect.DeepEqual(cur.cfg, vc) {
			next[id] = cur
			continue
		}
		b, err := buildVenue(id, vc, s.vault, s.db, s.log)
		if err != nil {
			return abort(err)
		}
		b = s.gated(id, s.sharedLimits(id, b))
		fresh = append(fresh, b)
		next[id] = b
		if _, ok := s.venues[id]; ok {
			changed = append(changed, id)
		} else {
			added = append(added, id)
		}
	}
	for id := range s.venues {
		if _, ok := next[id]; !ok {
			removed = append(removed, id)
		}
	}
	if len(added)+len(changed)+len(removed) > 0 {
		ids := make([]string, 0, len(next))
		for id := range next {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		gvs := make([]gateway.Venue, 0, len(ids))
		for _, id := range ids {
			gvs = append(gvs, next[id].gv)
		}
		if err := s.gateway.SetVenues(gvs); err != nil {
			return abort(fmt.Errorf("reload: %w", err))
		}
		for _, id := range append(changed, removed...) {
			if c := s.venues[id].closer; c != nil {
				if err := c.Close(context.Background()); err != nil {
					s.log.Warn("keystile: close the replaced venue's session", "venue", id, "err", err)
				}
			}
		}
		s.venues = next
		s.setProxyRoutes(cfg)
		sort.Strings(added)
		sort.Strings(changed)
		sort.Strings(removed)
		s.log.Info("keystile: venues reloaded", "file", path, "added", added, "changed", changed, "removed", removed)
	}
	if err := s.alerts.Reconfigure(alertSinks, alertPolicy); err != nil {
		s.log.Warn("keystile: alert sinks not reloaded", "err", err)
	} else {
		ab.prefetch(alertSecrets)
		if !reflect.DeepEqual(s.Config().Alerts, cfg.Alerts) {
			s.log.Info("keystile: alert sinks reloaded", "file", path, "sinks", len(alertSinks))
		}
	}
	s.restart = restartNeeded(s.cfg, cfg)
	if len(s.restart) > 0 {
		s.log.Warn("keystile: these settings changed in the file and take effect only after a restart", "file", path, "sections", s.restart)
	}
	if s.detect != nil {
		s.detect.SetSettings(detectSet)
	}
	now := *s.cfg
	now.Venues, now.Policies, now.Alerts, now.Detect = cfg.Venues, cfg.Policies, cfg.Alerts, cfg.Detect
	s.cfgNow.Store(&now)
	return set, nil
}
