package service

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestUnitHasEveryHardeningDirective(t *testing.T) {
	u, err := Unit(Params{Binary: "/usr/local/bin/keystile", User: "keystile"})
	if err != nil {
		t.Fatal(err)
	}
	lines := map[string]bool{}
	for _, l := range strings.Split(u, "\n") {
		lines[strings.TrimSpace(l)] = true
	}
	for _, want := range []string{
		"User=keystile",
		"Group=keystile",
		"ExecStart=/usr/local/bin/keystile serve",
		"ExecReload=/bin/kill -HUP $MAINPID",
		"Restart=on-failure",
		"Environment=KEYSTILE_DATA_DIR=/var/lib/keystile",
		"Environment=KEYSTILE_CONFIG=/var/lib/keystile/keystile.yaml",
		"StateDirectory=keystile",
		"StateDirectoryMode=0700",
		"RuntimeDirectory=keystile",
		"UMask=0077",
		"LimitCORE=0",
		"NoNewPrivileges=yes",
		"CapabilityBoundingSet=",
		"AmbientCapabilities=",
		"ProtectSystem=strict",
		"ProtectHome=yes",
		"PrivateTmp=yes",
		"PrivateDevices=yes",
		"PrivateMounts=yes",
		"MemoryDenyWriteExecute=yes",
		"LockPersonality=yes",
		"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
		"RestrictNamespaces=yes",
		"RestrictSUIDSGID=yes",
		"SystemCallFilter=@system-service",
		"SystemCallArchitectures=native",
		"WantedBy=multi-user.target",
	} {
		t.Run(want, func(t *testing.T) {
			if !lines[want] {
				t.Errorf("unit lacks the line %q", want)
			}
		})
	}
	for _, bad := range []string{"DynamicUser=", "PrivateUsers=", "{{", "<no value>"} {
		if strings.Contains(u, bad) && !strings.Contains(u, "No "+bad) {
			t.Errorf("unit contains %q", bad)
		}
	}
}

func TestUnitRefusesBadParams(t *testing.T) {
	for _, p := range []Params{
		{Binary: "/usr/local/bin/keystile", User: "root"},
		{Binary: "/usr/local/bin/keystile", User: "Key Stile"},
		{Binary: "/usr/local/bin/keystile", User: "keystile", Group: "a;b"},
		{Binary: "keystile", User: "keystile"},
		{Binary: "/usr/local/bin/key stile", User: "keystile"},
		{Binary: "/usr/local/bin/ks%n", User: "keystile"},
		{Binary: "/usr/local/bin/$ks", User: "keystile"},
		{Binary: "/usr/local/bin/ks\nExecStartPre=/bin/sh", User: "keystile"},
		{Binary: "/usr/local/../bin/ks", User: "keystile"},
		{Binary: "/home/op/go/bin/keystile", User: "keystile"},
		{Binary: "/root/go/bin/keystile", User: "keystile"},
		{Binary: "/tmp/go-build1/exe/keystile", User: "keystile"},
	} {
		if _, err := Unit(p); !errors.Is(err, ErrInput) {
			t.Errorf("Unit(%+v) = %v, want an input error", p, err)
		}
	}
}

// TestSystemdAnalyzeVerify has systemd parse the rendered unit. verify
// exits 0 on unknown keys and bad values (it only logs them), so its
// output is checked too.
func TestSystemdAnalyzeVerify(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd): the unit is not verified by systemd here")
	}
	u, err := Unit(Params{Binary: "/bin/true", User: "keystile"}) // ExecStart must exist
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), UnitName)
	if err := os.WriteFile(f, []byte(u), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", "--man=no", f).CombinedOutput() // #nosec G204 -- test
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "ignoring") || strings.Contains(l, "Unknown") || strings.Contains(l, "Failed") || strings.Contains(l, "not executable") {
			t.Errorf("systemd-analyze verify: %s", l)
		}
	}
}

func TestInstallDryRunChangesNothing(t *testing.T) {
	root := t.TempDir()
	var out bytes.Buffer
	ran := 0
	in := Installer{Root: root, DryRun: true, Out: &out, SystemdRunning: func() bool { return true },
		Run: func(string, ...string) error { ran++; return nil }}
	if err := in.Install(Params{Binary: "/bin/true", User: "keystile-test-nouser"}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"would: create system user: useradd --system --user-group --home-dir /var/lib/keystile --no-create-home --shell ",
		"would: create data dir /var/lib/keystile (mode 0700, owner keystile-test-nouser)",
		"would: write /etc/systemd/system/keystile.service",
		"would: systemctl daemon-reload",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("dry run lacks %q:\n%s", want, out.String())
		}
	}
	if ran != 0 {
		t.Errorf("dry run ran %d commands", ran)
	}
	if ents, _ := os.ReadDir(root); len(ents) != 0 {
		t.Errorf("dry run wrote %v", ents)
	}
}

// TestInstall installs for an existing user into a temporary root: the
// data dir is created 0700 and owned by the user, the unit is written
// 0644, a second install keeps it, a different one needs Force.
func TestInstall(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root to chown the data dir to another user")
	}
	uid, gid, group, err := lookupUser("nobody")
	if err != nil {
		t.Skipf("no user nobody: %v", err)
	}
	root := t.TempDir()
	var out bytes.Buffer
	in := Installer{Root: root, Out: &out, SystemdRunning: func() bool { return false }}
	p := Params{Binary: "/bin/true", User: "nobody"}
	if err := in.Install(p); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(root, DataDir))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("data dir: %v %v", fi, err)
	}
	unitFile := filepath.Join(root, UnitPath)
	b, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "User=nobody\nGroup="+group+"\n") {
		t.Errorf("unit user/group:\n%s", b)
	}
	if fi, _ := os.Stat(unitFile); fi.Mode().Perm() != 0o644 {
		t.Errorf("unit mode %v", fi.Mode())
	}
	if !strings.Contains(out.String(), "skipping systemctl daemon-reload") {
		t.Errorf("no note about systemd: %s", out.String())
	}
	assertOwner(t, filepath.Join(root, DataDir), uid, gid)

	out.Reset()
	if err := in.Install(p); err != nil || !strings.Contains(out.String(), "(unchanged)") {
		t.Fatalf("reinstall: %v %s", err, out.String())
	}
	p.Binary = "/bin/false"
	if err := in.Install(p); !errors.Is(err, ErrInput) {
		t.Fatalf("differing unit without force: %v", err)
	}
	in.Force = true
	if err := in.Install(p); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(unitFile); !strings.Contains(string(b), "ExecStart=/bin/false serve") {
		t.Errorf("forced unit not written:\n%s", b)
	}
}
