package cli

import (
	"errors"
	"testing"
	"time"
)

func TestExecFlagsParse(t *testing.T) {
	tests := []struct {
		name  string
		f     execFlags
		n     int
		usage bool
	}{
		{"defaults", execFlags{tokenEnv: envToken, mint: mintFlags{ttl: time.Hour}}, 0, false},
		{"two refs", execFlags{tokenEnv: envToken, mint: mintFlags{ttl: time.Hour}, envs: []string{"A=env:X", "B=vault:binance-main#secret"}}, 2, false},
		{"bad token env", execFlags{tokenEnv: "1X", mint: mintFlags{ttl: time.Hour}}, 0, true},
		{"bad token-from-env", execFlags{tokenEnv: envToken, tokenFromEnv: "a-b", mint: mintFlags{ttl: time.Hour}}, 0, true},
		{"zero ttl", execFlags{tokenEnv: envToken}, 0, true},
		{"no equals", execFlags{tokenEnv: envToken, mint: mintFlags{ttl: time.Hour}, envs: []string{"A"}}, 0, true},
		{"bad ref", execFlags{tokenEnv: envToken, mint: mintFlags{ttl: time.Hour}, envs: []string{"A=aws:x"}}, 0, true},
		{"duplicate", execFlags{tokenEnv: envToken, mint: mintFlags{ttl: time.Hour}, envs: []string{"A=env:X", "A=env:Y"}}, 0, true},
		{"overrides token var", execFlags{tokenEnv: "BOT_TOKEN", mint: mintFlags{ttl: time.Hour}, envs: []string{"BOT_TOKEN=env:X"}}, 0, true},
		{"master key var", execFlags{tokenEnv: envToken, mint: mintFlags{ttl: time.Hour}, envs: []string{"KEYSTILE_MASTER_KEY=env:X"}}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.f.parse()
			var ue usageError
			if tt.usage {
				if !errors.As(err, &ue) {
					t.Fatalf("parse = %v, want a usage error", err)
				}
				return
			}
			if err != nil || len(got) != tt.n {
				t.Fatalf("parse = %v, %v", got, err)
			}
		})
	}
}
