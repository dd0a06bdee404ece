package app

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/keystile/keystile/internal/config"
	"github.com/keystile/keystile/internal/policy"
)

// Environment variables read by keystile itself.
const (
	EnvDataDir = "KEYSTILE_DATA_DIR"
	EnvConfig  = "KEYSTILE_CONFIG"
)

// File names inside the data directory.
const (
	DBFile     = "keystile.db"
	KeyFile    = "master.key"
	SocketFile = "admin.sock"
	ConfigFile = "keystile.yaml"
)

// ErrDataDir marks problems with the data directory.
var ErrDataDir = errors.New("data directory")

// ResolveDataDir picks the data directory: the flag, then
// $KEYSTILE_DATA_DIR, then data_dir from the config, then
// $XDG_DATA_HOME/keystile, then ~/.local/share/keystile.
func ResolveDataDir(flag string, getenv func(string) string, cfg *config.Config) (string, error) {
	pick := flag
	if pick == "" {
		pick = getenv(EnvDataDir)
	}
	if pick == "" && cfg != nil {
		pick = cfg.DataDir
	}
	if pick == "" {
		if x := getenv("XDG_DATA_HOME"); x != "" {
			pick = filepath.Join(x, "keystile")
		}
	}
	if pick == "" {
		home := getenv("HOME")
		if home == "" {
			return "", fmt.Errorf("%w: cannot pick a default (no $HOME); pass --data-dir", ErrDataDir)
		}
		pick = filepath.Join(home, ".local", "share", "keystile")
	}
	abs, err := filepath.Abs(pick)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrDataDir, err)
	}
	return abs, nil
}

// CheckDataDir verifies that dir exists, is a directory owned by this user,
// is not accessible by group or others, is readable and holds a keystile
// database.
func CheckDataDir(dir string) error { return checkDataDir(dir, true) }

// CheckDataDirFor is CheckDataDir for cfg's store: with store.postgres
// the data dir holds the key file and the admin socket, not the database.
func CheckDataDirFor(dir string, cfg *config.Config) error {
	return checkDataDir(dir, cfg == nil || !cfg.Store.Shared())
}

func checkDataDir(dir string, needDB bool) error {
	st, err := os.Stat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w %s does not exist (run `keystile init --data-dir %s`)", ErrDataDir, dir, dir)
	}
	if err != nil {
		return fmt.Errorf("%w %s: %v", ErrDataDir, dir, err)
	}
	if !st.IsDir() {
		return fmt.Errorf("%w %s is not a directory", ErrDataDir, dir)
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok && int(sys.Uid) != os.Getuid() {
		return fmt.Errorf("%w %s is owned by uid %d, not by you (uid %d)", ErrDataDir, dir, sys.Uid, os.Getuid())
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("%w %s is accessible by group or others (mode %04o): run chmod 700 %s", ErrDataDir, dir, st.Mode().Perm(), dir)
	}
	f, err := os.Open(dir) // #nosec G304 -- operator's data dir
	if err != nil {
		return fmt.Errorf("%w %s is not readable: %v", ErrDataDir, dir, err)
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != nil && !errors.Is(err, fs.ErrNotExist) && err.Error() != "EOF" {
		return fmt.Errorf("%w %s is not readable: %v", ErrDataDir, dir, err)
	}
	if !needDB {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, DBFile)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%w %s holds no keystile database (run `keystile init --data-dir %s`)", ErrDataDir, dir, dir)
		}
		return fmt.Errorf("%w %s: %v", ErrDataDir, dir, err)
	}
	return nil
}

// LoadConfig reads the config file: the flag, $KEYSTILE_CONFIG, or
// <dataDir>/keystile.yaml if present; else the defaults. explicit reports
// whether a file was named (a named file must exist).
func LoadConfig(flag string, getenv func(string) string, dataDir string) (*config.Config, string, error) {
	path := flag
	if path == "" {
		path = getenv(EnvConfig)
	}
	if path != "" {
		c, err := loadChecked(path)
		return c, path, err
	}
	if dataDir != "" {
		p := filepath.Join(dataDir, ConfigFile)
		if _, err := os.Stat(p); err == nil {
			c, err := loadChecked(p)
			return c, p, err
		}
	}
	return config.Default(), "", nil
}

// loadChecked loads the config and compiles its policies, so that every
// command refuses a file serve would refuse.
func loadChecked(path string) (*config.Config, error) {
	c, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	if _, err := policy.Compile(c); err != nil {
		return nil, err
	}
	return c, nil
}
