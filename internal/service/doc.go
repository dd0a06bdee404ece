// Package service renders keystile's hardened systemd unit and installs it:
// the unit file, the dedicated system user and the state directory.
package service
