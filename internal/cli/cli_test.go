package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, env map[string]string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Run(context.Background(), args, IO{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb,
		Getenv: func(k string) string { return env[k] }})
	return code, out.String(), errb.String()
}

func TestExitCodes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	env := map[string]string{"KEYSTILE_DATA_DIR": dir, "HOME": t.TempDir()}
	tests := []struct {
		name string
		args []string
		want int
		msg  string
	}{
		{"version", []string{"version"}, ExitOK, ""},
		{"help", []string{"--help"}, ExitOK, ""},
		{"unknown command", []string{"frobnicate"}, ExitUsage, "unknown command"},
		{"unknown flag", []string{"secret", "list", "--nope"}, ExitUsage, "unknown flag"},
		{"extra args", []string{"version", "x"}, ExitUsage, "takes no arguments"},
		{"value in argv", []string{"secret", "set", "x", "secret=CANARY-1234567"}, ExitUsage, "values never go on the command line"},
		{"bad master key source", []string{"init", "--master-key", "hsm"}, ExitUsage, "must be one of"},
		{"init", []string{"init"}, ExitOK, ""},
		{"init again", []string{"init"}, ExitFailure, "already initialised"},
		{"server not running", []string{"secret", "list"}, ExitFailure, "not running"},
		{"token create without name", []string{"token", "create"}, ExitUsage, "--name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(t, env, "", tt.args...)
			if code != tt.want {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tt.want, stderr)
			}
			if !strings.Contains(stderr, tt.msg) {
				t.Fatalf("stderr %q lacks %q", stderr, tt.msg)
			}
			if strings.Contains(stderr, "CANARY") {
				t.Fatalf("stderr echoes a value: %s", stderr)
			}
		})
	}
}
