// Package buildinfo describes the running keystile binary: its version and
// what the Go toolchain recorded when it was built (module version, VCS
// revision, time and dirty flag, Go version, target platform).
package buildinfo
