package app

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/keystile/keystile/internal/secret"
)

// ErrKeyFileMismatch marks a data dir whose master key file is ambiguous:
// the database records one key file and another one, holding a different
// key, is either named by master_key.file or sits in the data dir itself.
var ErrKeyFileMismatch = errors.New("master key file mismatch")

// KeyFileMismatchError names both key files of an ErrKeyFileMismatch.
type KeyFileMismatchError struct {
	Recorded string // the key file the data dir's database records
	Other    string // the other key file
	Why      string // where Other comes from
}

func (e *KeyFileMismatchError) Error() string {
	return fmt.Sprintf("%v: this data dir's database was initialised with key file %s, but %s names %s, which holds a different key;"+
		" point master_key.file at the right one, or remove the wrong one", ErrKeyFileMismatch, e.Recorded, e.Why, e.Other)
}

func (e *KeyFileMismatchError) Unwrap() error { return ErrKeyFileMismatch }

// recordKeyPath is how init records a key file: relative to the data dir
// when it is inside it ("master.key"), so that a copied, moved or
// restored data dir keeps using its own key file; absolute otherwise.
func recordKeyPath(dataDir, keyFile string) string {
	if rel, ok := inside(dataDir, keyFile); ok {
		return rel
	}
	return keyFile
}

// inside returns p relative to dir when p is dir or below it.
func inside(dir, p string) (string, bool) {
	rel, err := filepath.Rel(filepath.Clean(dir), filepath.Clean(p))
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) || filepath.IsAbs(rel) {
		return "", false
	}
	return rel, true
}

// ResolveKeyFile returns the master key file a file-source vault in
// dataDir uses, from the path init recorded and master_key.file
// (configured; relative to the data dir when not absolute):
//
//   - a recorded relative path is inside the data dir, wherever it now is;
//   - an absolute recorded path outside the data dir (recorded by older
//     versions, or a key kept elsewhere on purpose) is used as is — unless
//     the data dir holds a key file of the same name of its own: the data
//     dir was copied or moved, and its own key file is used if the
//     recorded one is gone or holds the same key, and is an
//     ErrKeyFileMismatch if they differ;
//   - master_key.file, when set and not the same file, wins if the
//     recorded one is gone (the key was moved) or holds the same key, and
//     is an ErrKeyFileMismatch if both exist and differ, or if it names a
//     file that does not exist while the recorded one does.
//
// Nothing is written; the key bytes compared are wiped.
func ResolveKeyFile(dataDir, configured, recorded string) (string, error) {
	local := filepath.Join(dataDir, KeyFile)
	path := local
	if recorded != "" {
		path = recorded
		if !filepath.IsAbs(path) {
			path = filepath.Join(dataDir, path)
		}
	}
	if _, in := inside(dataDir, path); !in && filepath.Base(path) == KeyFile && exists(local) {
		switch same, err := sameKey(path, local); {
		case err != nil && !errors.Is(err, fs.ErrNotExist):
			return "", err
		case err == nil && !same:
			return "", &KeyFileMismatchError{Recorded: path, Other: local, Why: "the data dir"}
		}
		path = local
	}
	if configured == "" {
		return path, nil
	}
	cfg := configured
	if !filepath.IsAbs(cfg) {
		cfg = filepath.Join(dataDir, cfg)
	}
	if filepath.Clean(cfg) == filepath.Clean(path) {
		return path, nil
	}
	switch same, err := sameKey(path, cfg); {
	case errors.Is(err, fs.ErrNotExist) && !exists(path):
		return cfg, nil // the key file was moved where the config says
	case errors.Is(err, fs.ErrNotExist):
		return "", fmt.Errorf("%w: master_key.file names %s, which does not exist; this data dir's database was initialised with key file %s",
			ErrKeyFileMismatch, cfg, path)
	case err != nil:
		return "", err
	case err == nil && !same:
		return "", &KeyFileMismatchError{Recorded: path, Other: cfg, Why: "master_key.file"}
	}
	return cfg, nil
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// sameKey reports whether two key files hold the same key (ignoring
// surrounding white space), in constant time. A missing file is an
// fs.ErrNotExist error.
func sameKey(a, b string) (bool, error) {
	ka, err := os.ReadFile(a) // #nosec G304 -- the operator's key file
	if err != nil {
		return false, fmt.Errorf("app: key file %s: %w", a, err)
	}
	defer secret.Wipe(ka)
	kb, err := os.ReadFile(b) // #nosec G304 -- the operator's key file
	if err != nil {
		return false, fmt.Errorf("app: key file %s: %w", b, err)
	}
	defer secret.Wipe(kb)
	ta, tb := bytes.TrimSpace(ka), bytes.TrimSpace(kb)
	return len(ta) == len(tb) && subtle.ConstantTimeCompare(ta, tb) == 1, nil
}
