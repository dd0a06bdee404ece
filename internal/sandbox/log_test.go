package sandbox

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestLogsNeverHoldCredentials(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := startSandbox(t, Options{Venues: []string{VenueStake}, Logger: log,
		Credentials: map[string]map[string]string{"stake": {"api_token": canaryToken}}})
	base := s.Info().Venues[VenueStake].BaseURL
	do(t, nil, "POST", base+"/graphql", []byte(`{"query":"{user{id}}"}`), map[string]string{"x-access-token": canaryToken})
	do(t, nil, "POST", base+"/graphql", []byte(`{"query":"{user{id}}"}`), map[string]string{"x-access-token": strings.Repeat("e", 64)})
	if !strings.Contains(buf.String(), "sandbox request") {
		t.Fatalf("no request log: %s", buf.String())
	}
	if strings.Contains(buf.String(), canaryToken) || strings.Contains(buf.String(), strings.Repeat("e", 64)) {
		t.Fatalf("log holds a credential: %s", buf.String())
	}
}
