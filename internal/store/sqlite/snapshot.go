package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Snapshot writes a consistent copy of the SQLite database at src to the
// new file dst (VACUUM INTO: one read transaction, so writes committed by
// a running server before it are in the copy and none after; the copy is
// a standalone database without WAL). src may be any SQLite file (the
// vault database, the audit log); it is opened without migrations and
// only read. dst must not exist; it is left 0600.
func Snapshot(ctx context.Context, src, dst string) error {
	if strings.ContainsAny(src, "?#") {
		return fmt.Errorf("sqlite: snapshot %s: path holds '?' or '#'", src)
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("sqlite: snapshot %s: %w", src, err)
	}
	if _, err := os.Lstat(dst); !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("sqlite: snapshot to %s: %w", dst, fs.ErrExist)
	}
	db, err := sql.Open("sqlite", "file:"+src+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return fmt.Errorf("sqlite: snapshot %s: %w", src, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// Created empty and 0600 first, so the copy is never readable by others.
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) // #nosec G304 -- a path the operator chose
	if err != nil {
		return fmt.Errorf("sqlite: snapshot to %s: %w", dst, err)
	}
	_ = f.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		_ = os.Remove(dst)
		return fmt.Errorf("sqlite: snapshot %s: %w", src, err)
	}
	if err := os.Chmod(dst, 0o600); err != nil {
		return fmt.Errorf("sqlite: snapshot to %s: %w", dst, err)
	}
	return nil
}
