package service

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"text/template"
)

//go:embed keystile.service
var unitText string

var unitTemplate = template.Must(template.New("keystile.service").Option("missingkey=error").Parse(unitText))

// Fixed locations of the installed service.
const (
	DefaultUser = "keystile"
	DataDir     = "/var/lib/keystile" // StateDirectory=keystile
	UnitPath    = "/etc/systemd/system/keystile.service"
	UnitName    = "keystile.service"
)

// Params fill the unit.
type Params struct {
	// Binary is the absolute path of the keystile binary.
	Binary string
	// User and Group run the server; Group "" means User.
	User, Group string
}

var (
	nameRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	// pathRE: characters that need no quoting or escaping in a unit file.
	pathRE = regexp.MustCompile(`^/[A-Za-z0-9/._+@-]*$`)
)

// hiddenDirs are invisible or empty under the unit's ProtectHome=yes and
// PrivateTmp=yes: a binary there cannot be executed by the service.
var hiddenDirs = []string{"/home", "/root", "/run/user", "/tmp", "/var/tmp"}

// ErrInput marks invalid parameters (a usage error).
var ErrInput = errors.New("service")

// Check validates p: names systemd and useradd accept, and a binary path
// that needs no quoting and is visible to the hardened service.
func (p Params) Check() error {
	if !nameRE.MatchString(p.User) {
		return fmt.Errorf("%w: user %q: want a system user name (lower case letters, digits, _ and -; at most 32)", ErrInput, p.User)
	}
	if p.Group != "" && !nameRE.MatchString(p.Group) {
		return fmt.Errorf("%w: group %q: want a group name (lower case letters, digits, _ and -; at most 32)", ErrInput, p.Group)
	}
	if p.User == "root" {
		return fmt.Errorf("%w: refusing to run keystile as root: use a dedicated user (default %s)", ErrInput, DefaultUser)
	}
	if !pathRE.MatchString(p.Binary) || filepath.Clean(p.Binary) != p.Binary {
		return fmt.Errorf("%w: binary path %q: want a clean absolute path of letters, digits and /._+@- (no spaces, quotes, %% or $)", ErrInput, p.Binary)
	}
	for _, d := range hiddenDirs {
		if p.Binary == d || strings.HasPrefix(p.Binary, d+"/") {
			return fmt.Errorf("%w: binary %s is under %s, which the service cannot see (ProtectHome=yes, PrivateTmp=yes): install it first, e.g. `install -m 0755 %s /usr/local/bin/keystile`, and pass --binary /usr/local/bin/keystile",
				ErrInput, p.Binary, d, p.Binary)
		}
	}
	return nil
}

// Unit renders the unit file for p.
func Unit(p Params) (string, error) {
	if p.Group == "" {
		p.Group = p.User
	}
	if err := p.Check(); err != nil {
		return "", err
	}
	var b bytes.Buffer
	err := unitTemplate.Execute(&b, struct {
		Params
		DataDir string
	}{p, DataDir})
	return b.String(), err
}

// Installer installs the unit. Zero fields mean the real system.
type Installer struct {
	// Root prefixes every path written (tests use a temporary directory).
	Root string
	// Run runs a command (useradd, systemctl); nil means exec it.
	Run func(name string, args ...string) error
	// LookupUser finds a user: its uid, gid and primary group name; nil
	// means os/user. It returns an error wrapping user.UnknownUserError
	// when there is none.
	LookupUser func(name string) (uid, gid int, group string, err error)
	// SystemdRunning reports whether systemd is the init system; nil
	// means /run/systemd/system exists.
	SystemdRunning func() bool
	// Force overwrites a unit file that differs from the rendered one.
	Force bool
	// DryRun only reports what would be done.
	DryRun bool
	// Out receives one line per step.
	Out io.Writer
}

// Install creates the user if it does not exist, the state directory
// (0700, owned by the user) if it does not exist, writes the unit file and
// reloads systemd. With DryRun it only prints these steps.
func (in Installer) Install(p Params) error {
	in.defaults()
	if err := p.Check(); err != nil {
		return err
	}
	step := func(format string, args ...any) {
		prefix := ""
		if in.DryRun {
			prefix = "would: "
		}
		fmt.Fprintf(in.Out, prefix+format+"\n", args...)
	}
	if fi, err := os.Stat(p.Binary); err != nil {
		return fmt.Errorf("service: binary: %w", err)
	} else if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%w: binary %s is not an executable file", ErrInput, p.Binary)
	}
	uid, gid, group, err := in.LookupUser(p.User)
	var unknown user.UnknownUserError
	switch {
	case errors.As(err, &unknown):
		if p.Group != "" && p.Group != p.User {
			return fmt.Errorf("%w: user %s does not exist; create it yourself in group %s, or drop --group to have it created with its own group", ErrInput, p.User, p.Group)
		}
		args := []string{"--system", "--user-group", "--home-dir", DataDir, "--no-create-home", "--shell", nologin(), p.User}
		step("create system user: useradd %s", strings.Join(args, " "))
		if !in.DryRun {
			if err := in.Run("useradd", args...); err != nil {
				return fmt.Errorf("service: useradd: %w", err)
			}
			if uid, gid, group, err = in.LookupUser(p.User); err != nil {
				return fmt.Errorf("service: user %s after useradd: %w", p.User, err)
			}
		}
		if group == "" {
			group = p.User
		}
	case err != nil:
		return fmt.Errorf("service: user %s: %w", p.User, err)
	default:
		step("use existing user %s (uid %d, group %s)", p.User, uid, group)
	}
	if p.Group == "" {
		p.Group = group
	}
	unit, err := Unit(p)
	if err != nil {
		return err
	}

	dir := filepath.Join(in.Root, DataDir)
	switch _, err := os.Lstat(dir); {
	case errors.Is(err, fs.ErrNotExist):
		step("create data dir %s (mode 0700, owner %s)", DataDir, p.User)
		if !in.DryRun {
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return fmt.Errorf("service: %w", err)
			}
			if err := os.Chown(dir, uid, gid); err != nil {
				return fmt.Errorf("service: chown %s: %w", dir, err)
			}
		}
	case err != nil:
		return fmt.Errorf("service: %w", err)
	default:
		step("keep existing data dir %s (systemd gives it to %s at start)", DataDir, p.User)
	}

	path := filepath.Join(in.Root, UnitPath)
	old, err := os.ReadFile(path) // #nosec G304 -- fixed unit path
	switch {
	case err == nil && string(old) == unit:
		step("keep %s (unchanged)", UnitPath)
	case err == nil && !in.Force:
		return fmt.Errorf("%w: %s exists and differs from this keystile's unit: compare with `keystile service unit`, then pass --force to overwrite", ErrInput, UnitPath)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("service: %w", err)
	default:
		step("write %s (mode 0644; ExecStart=%s serve, User=%s, Group=%s)", UnitPath, p.Binary, p.User, p.Group)
		if !in.DryRun {
			if err := writeFile(path, []byte(unit)); err != nil {
				return err
			}
		}
	}

	if in.SystemdRunning() {
		step("systemctl daemon-reload")
		if !in.DryRun {
			if err := in.Run("systemctl", "daemon-reload"); err != nil {
				return fmt.Errorf("service: systemctl daemon-reload: %w", err)
			}
		}
	} else {
		fmt.Fprintln(in.Out, "note: systemd is not running here (no /run/systemd/system): skipping systemctl daemon-reload")
	}
	return nil
}

// Next is what the operator runs after Install.
func Next(binary, usr string) []string {
	as := "sudo -u " + usr + " " + binary + " --data-dir " + DataDir
	return []string{
		as + " init                 # once: master key, database, keystile.yaml",
		"sudo systemctl enable --now keystile",
		as + " status",
		"sudo systemctl reload keystile     # after editing policies in " + DataDir + "/keystile.yaml",
		"journalctl -u keystile -f          # the server's logs",
	}
}

func (in *Installer) defaults() {
	if in.Run == nil {
		in.Run = func(name string, args ...string) error {
			cmd := exec.Command(name, args...) // #nosec G204 -- fixed commands, validated arguments
			cmd.Stdout, cmd.Stderr = in.Out, in.Out
			return cmd.Run()
		}
	}
	if in.LookupUser == nil {
		in.LookupUser = lookupUser
	}
	if in.SystemdRunning == nil {
		in.SystemdRunning = func() bool {
			fi, err := os.Stat("/run/systemd/system")
			return err == nil && fi.IsDir()
		}
	}
	if in.Out == nil {
		in.Out = io.Discard
	}
}

func lookupUser(name string) (int, int, string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, "", err
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, "", fmt.Errorf("uid %q: %w", u.Uid, err)
	}
	gid, err := strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, "", fmt.Errorf("gid %q: %w", u.Gid, err)
	}
	group := u.Gid
	if g, err := user.LookupGroupId(u.Gid); err == nil {
		group = g.Name
	}
	return uid, gid, group, nil
}

func nologin() string {
	for _, p := range []string{"/usr/sbin/nologin", "/sbin/nologin"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "/bin/false"
}

// writeFile writes the unit atomically (temporary file, rename).
func writeFile(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil { // #nosec G301 -- /etc/systemd/system is world-readable
		return fmt.Errorf("service: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keystile.service.*")
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }() // after the rename: nothing left
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("service: write %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil { // #nosec G302 -- unit files are world-readable and hold no secret
		_ = tmp.Close()
		return fmt.Errorf("service: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("service: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	return nil
}
