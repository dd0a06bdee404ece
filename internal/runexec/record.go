package runexec

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// InjectionsFile is the file in the data directory that records exec
// injections. It holds names, references and times, never values.
const InjectionsFile = "exec-injections.json"

// MaxInjections bounds the records kept (the newest win).
const MaxInjections = 200

// Injection records that a real secret was given to a child process.
type Injection struct {
	Var     string    `json:"var"`     // the child's variable name
	Ref     string    `json:"ref"`     // the secretref it came from
	Command string    `json:"command"` // base name of the command run
	At      time.Time `json:"at"`
}

type injectionsFile struct {
	Injections []Injection `json:"injections"`
}

// RecordInjections appends recs to the data directory's record, keeping
// the newest MaxInjections. The file is written 0600, atomically.
func RecordInjections(dataDir string, recs []Injection) error {
	if len(recs) == 0 {
		return nil
	}
	all, err := ReadInjections(dataDir)
	if err != nil {
		all = nil // a corrupt record is replaced rather than blocking exec
	}
	all = append(all, recs...)
	if len(all) > MaxInjections {
		all = all[len(all)-MaxInjections:]
	}
	b, err := json.MarshalIndent(injectionsFile{Injections: all}, "", "  ")
	if err != nil {
		return fmt.Errorf("runexec: record: %w", err)
	}
	tmp, err := os.CreateTemp(dataDir, ".exec-injections-*")
	if err != nil {
		return fmt.Errorf("runexec: record: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("runexec: record: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("runexec: record: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dataDir, InjectionsFile)); err != nil {
		return fmt.Errorf("runexec: record: %w", err)
	}
	return nil
}

// ReadInjections returns the recorded injections, oldest first; none if
// the file does not exist.
func ReadInjections(dataDir string) ([]Injection, error) {
	b, err := os.ReadFile(filepath.Join(dataDir, InjectionsFile)) // #nosec G304 -- data dir
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("runexec: read record: %w", err)
	}
	var f injectionsFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("runexec: read record: %w", err)
	}
	return f.Injections, nil
}
