package masterkey

import (
	"errors"

	"github.com/zalando/go-keyring"
)

// OSKeyring is the operating system's keyring (Secret Service over D-Bus on
// Linux, Keychain on macOS, Credential Manager on Windows).
type OSKeyring struct{}

// Get implements Keyring.
func (OSKeyring) Get(service, user string) (string, error) {
	v, err := keyring.Get(service, user)
	if errors.Is(err, keyring.ErrNotFound) {
		return "", ErrKeyringMissing
	}
	if err != nil {
		return "", ErrKeyringUnavailable
	}
	return v, nil
}

// Set implements Keyring.
func (OSKeyring) Set(service, user, value string) error {
	if err := keyring.Set(service, user, value); err != nil {
		return ErrKeyringUnavailable
	}
	return nil
}

var _ Keyring = OSKeyring{}
