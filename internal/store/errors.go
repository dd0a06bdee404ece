package store

import "errors"

// ErrNotFound is returned (wrapped) when a record does not exist.
var ErrNotFound = errors.New("not found")

// ErrExists is returned (wrapped) when creating a record that already exists.
var ErrExists = errors.New("already exists")

// ErrConflict is returned (wrapped) when an optimistic update lost a race.
var ErrConflict = errors.New("conflict")
