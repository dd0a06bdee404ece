package config_test

import (
	"strings"
	"testing"
	"time"

	"github.com/keystile/keystile/internal/config"
)

func TestAuditAndIdempotencyKeys(t *testing.T) {
	c, err := config.Parse("keystile.yaml", []byte("audit:\n  sink: jsonl\n  path: /var/log/ks.jsonl\n  checkpoint_every: 50\n  mirror: stdout\nidempotency:\n  window: 1h\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Audit.Sink != "jsonl" || c.Audit.Path != "/var/log/ks.jsonl" || c.Audit.CheckpointEvery != 50 || c.Audit.MaxBatch != 512 ||
		c.Audit.Mirror != "stdout" || c.Idempotency.Window != time.Hour {
		t.Fatalf("parsed %+v %+v", c.Audit, c.Idempotency)
	}
	d := config.Default()
	if d.Audit.Sink != "sqlite" || d.Audit.CheckpointEvery != 1000 || d.Idempotency.Window != 24*time.Hour {
		t.Fatalf("defaults %+v %+v", d.Audit, d.Idempotency)
	}
	for _, tc := range []struct{ yaml, want string }{
		{"audit:\n  sink: kafka\n", `keystile.yaml:2:3: audit.sink: must be one of sqlite|jsonl|stdout, got "kafka"`},
		{"audit:\n  sink: stdout\n  path: x\n", `keystile.yaml:3:3: audit.path: not used with audit.sink stdout`},
		{"audit:\n  mirror: syslog\n", `keystile.yaml:2:3: audit.mirror: must be one of stdout`},
		{"audit:\n  checkpoint_every: -1\n", `keystile.yaml:2:3: audit.checkpoint_every: must be between 1 and 1000000, got -1`},
		{"audit:\n  max_batch: 100000\n", `keystile.yaml:2:3: audit.max_batch: must be between 1 and 65536`},
		{"idempotency:\n  window: 0s\n", `keystile.yaml:2:3: idempotency.window: must be positive`},
		{"idempotency:\n  window: 1000h\n", `keystile.yaml:2:3: idempotency.window: must be at most 720h`},
	} {
		_, err := config.Parse("keystile.yaml", []byte(tc.yaml))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want prefix %q", tc.yaml, err, tc.want)
		}
	}
}
