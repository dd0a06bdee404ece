package scan

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// ErrHookExists is returned by InstallHook when a pre-commit hook is
// already there and force is false.
var ErrHookExists = errors.New("scan: a pre-commit hook already exists (use --force to replace it)")

// HookScript is the pre-commit hook InstallHook writes: it scans what is
// staged and fails the commit on any finding.
const HookScript = `#!/bin/sh
# Installed by "keystile hooks install": refuse commits that add secrets.
# Bypass once (after checking!) with: git commit --no-verify
if ! command -v keystile >/dev/null 2>&1; then
	echo "pre-commit: keystile not found in PATH; cannot scan for secrets" >&2
	exit 1
fi
exec keystile scan --staged
`

// InstallHook writes HookScript as the pre-commit hook of the git
// repository containing dir (honouring core.hooksPath) and returns its path.
// An existing hook is replaced only when force is true.
func InstallHook(ctx context.Context, dir string, force bool) (string, error) {
	if err := checkRepo(ctx, dir); err != nil {
		return "", err
	}
	hooks, err := gitOutput(ctx, dir, "rev-parse", "--git-path", "hooks")
	if err != nil {
		return "", err
	}
	if !filepath.IsAbs(hooks) {
		hooks = filepath.Join(dir, hooks)
	}
	if err := os.MkdirAll(hooks, 0o750); err != nil {
		return "", fmt.Errorf("scan: hooks dir: %w", err)
	}
	path := filepath.Join(hooks, "pre-commit")
	flags := os.O_WRONLY | os.O_CREATE | os.O_EXCL
	if force {
		flags = os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	}
	f, err := os.OpenFile(path, flags, 0o750) // #nosec G302 G304 -- a hook must be executable; path from git
	if errors.Is(err, os.ErrExist) {
		return path, ErrHookExists
	}
	if err != nil {
		return "", fmt.Errorf("scan: write hook: %w", err)
	}
	if _, err := f.WriteString(HookScript); err != nil {
		_ = f.Close()
		return "", fmt.Errorf("scan: write hook: %w", err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("scan: write hook: %w", err)
	}
	if err := os.Chmod(path, 0o750); err != nil { // #nosec G302 -- a hook must be executable
		return "", fmt.Errorf("scan: chmod hook: %w", err)
	}
	return path, nil
}
