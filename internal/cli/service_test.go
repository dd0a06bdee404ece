package cli

import (
	"strings"
	"testing"
)

func TestServiceCommands(t *testing.T) {
	env := map[string]string{"HOME": t.TempDir()}
	code, out, stderr := run(t, env, "", "service", "unit", "--binary", "/usr/local/bin/keystile")
	if code != 0 || !strings.Contains(out, "ExecStart=/usr/local/bin/keystile serve\n") || !strings.Contains(out, "User=keystile\n") {
		t.Fatalf("service unit: %d %s %s", code, out, stderr)
	}
	// The test binary lives under /tmp, which the service cannot see.
	if code, _, stderr := run(t, env, "", "service", "unit"); code != ExitUsage || !strings.Contains(stderr, "--binary") {
		t.Fatalf("service unit with a binary in /tmp: %d %s", code, stderr)
	}
	if code, _, stderr := run(t, env, "", "service", "unit", "--binary", "/usr/local/bin/keystile", "--user", "root"); code != ExitUsage || !strings.Contains(stderr, "root") {
		t.Fatalf("service unit --user root: %d %s", code, stderr)
	}
	code, out, stderr = run(t, env, "", "service", "install", "--dry-run", "--binary", "/bin/true", "--user", "keystile-test-nouser")
	if code != 0 {
		t.Fatalf("service install --dry-run: %d %s", code, stderr)
	}
	for _, want := range []string{"would: create system user: useradd --system", "would: write /etc/systemd/system/keystile.service", "nothing was changed",
		"sudo -u keystile-test-nouser /bin/true --data-dir /var/lib/keystile init", "sudo systemctl enable --now keystile"} {
		if !strings.Contains(out, want) {
			t.Errorf("install --dry-run lacks %q:\n%s", want, out)
		}
	}
}
